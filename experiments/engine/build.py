"""Database rows -> engine objects: the task (dataset split), space, strategy, estimator,
constraints and one-shot job of an experiment, and a trial's candidate and history records."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from search_engine import data as engine_data
from search_engine.constraints import Constraints
from search_engine.oneshot import create_oneshot
from search_engine.registry import ESTIMATORS, create_estimator, create_space, create_strategy
from search_engine.runtime import resolve_device
from search_engine.task import Task
from search_engine.types import Candidate, TrialRecord

from ..choices import DatasetSource
from .storage import dataset_file_exists, local_dataset_path
from .tables import resolve_table

# Loading and splitting a dataset costs from milliseconds (iris) to seconds (an image ZIP); a
# worker runs many trials of the same experiment, so it keeps the last few tasks in memory.
TASK_CACHE_SIZE = 4
_task_cache: OrderedDict[tuple, Task] = OrderedDict()
_task_cache_lock = threading.Lock()

# Trial fields a strategy reads, in TrialRecord's order.
HISTORY_FIELDS = ("number", "arch", "state", "objective", "metrics", "budget", "meta")


# Datasets -------------------------------------------------------------------------------------
class DatasetMissing(engine_data.DatasetError):
    """The uploaded file of a dataset is gone from storage. The message names the dataset, never
    the server's path."""

    def __init__(self, dataset):
        super().__init__(None, "dataset", f"the file of dataset \u201c{dataset.name}\u201d is gone from "
                                          "storage; upload it again and start a new experiment")

    def __str__(self):
        return self.reason


def load_task(dataset, seed: int) -> Task:
    """The Task for `dataset` split with `seed`, from the in-process cache when possible.

    The key holds the checksum, so a dataset whose file changed is never served stale. Whether an
    uploaded file still exists is asked every time, before the cache: every worker then answers
    the same for the same dataset.
    """
    if dataset.source != DatasetSource.BUILTIN and not dataset_file_exists(dataset):
        raise DatasetMissing(dataset)
    key = (dataset.pk, dataset.checksum, dataset.source, dataset.builtin_name, seed,
           json.dumps(dataset.options or {}, sort_keys=True))
    with _task_cache_lock:
        task = _task_cache.get(key)
        if task is not None:
            _task_cache.move_to_end(key)
            return task
    # Loaded outside the lock: two threads may both load once; the result is the same.
    task = _load_task_uncached(dataset, seed)
    with _task_cache_lock:
        _task_cache[key] = task
        _task_cache.move_to_end(key)
        while len(_task_cache) > TASK_CACHE_SIZE:
            _task_cache.popitem(last=False)
    return task


def clear_task_cache() -> None:
    with _task_cache_lock:
        _task_cache.clear()


def _load_task_uncached(dataset, seed: int) -> Task:
    options = dict(dataset.options or {})
    options.setdefault("seed", seed)
    if dataset.source == DatasetSource.BUILTIN:
        return engine_data.load_builtin(dataset.builtin_name, **options)
    path = str(local_dataset_path(dataset))
    try:
        return engine_data.load_dataset({dataset.source: path, **options})
    except FileNotFoundError:
        raise DatasetMissing(dataset) from None  # deleted between the check and the read
    except engine_data.DatasetError as exc:
        if path not in str(exc):
            raise
        if exc.field == "file" and "not found" in exc.reason:
            raise DatasetMissing(dataset) from None
        # The person knows the dataset by its name, not by where the server keeps it.
        raise engine_data.DatasetError(dataset.name, exc.field, exc.reason.replace(path, dataset.name)) from None


# Search configuration -------------------------------------------------------------------------
def build_space(experiment):
    return create_space(experiment.space, **(experiment.space_config or {}))


def build_strategy(experiment, space=None):
    space = space or build_space(experiment)
    return create_strategy(experiment.strategy, space, seed=experiment.seed, **(experiment.strategy_config or {}))


def estimator_config(experiment) -> dict:
    """The experiment's estimator options plus what the worker decides: the device the user
    picked and torch threads per trial from the worker's settings."""
    config = dict(experiment.estimator_config or {})
    schema = ESTIMATORS.get(experiment.estimator).options
    if "device" in schema and experiment.device:
        config["device"] = experiment.device
    if "threads" in schema:
        config["threads"] = settings.WORKER_TORCH_THREADS
    if experiment.estimator == "tabular":
        # Stored as a table name; resolved (and checked to stay inside the benchmark folder)
        # on the machine that reads it.
        config["path"] = str(resolve_table(config.get("path", "")))
    return config


def build_estimator(experiment):
    return create_estimator(experiment.estimator, **estimator_config(experiment))


def build_constraints(experiment) -> Constraints:
    limits = {k: v for k, v in (experiment.constraints or {}).items() if v is not None}
    if "latency_device" not in limits and experiment.device and experiment.device != "cpu":
        # Latency is measured where the user said the model will run.
        limits["latency_device"] = str(resolve_device(experiment.device))
    return Constraints.from_dict(limits)


def build_oneshot(experiment, space=None):
    """The experiment's one-shot job (supernet / DARTS), with the device the user picked and the
    worker's torch threads (neither changes what a checkpoint holds, so a job resumes elsewhere)."""
    space = space or build_space(experiment)
    config = dict((experiment.oneshot or {}).get("config") or {})
    if experiment.device:
        config["device"] = experiment.device
    config["threads"] = settings.WORKER_TORCH_THREADS
    return create_oneshot(experiment.oneshot["name"], space, seed=experiment.seed, **config)


@dataclass
class Search:
    """Everything one experiment needs from the engine, built from its row."""

    task: Task
    space: Any
    strategy: Any
    estimator: Any
    constraints: Constraints


def build_search(experiment, *, with_strategy: bool = True) -> Search:
    task = load_task(experiment.dataset, experiment.seed)
    space = build_space(experiment)
    return Search(
        task=task,
        space=space,
        strategy=build_strategy(experiment, space) if with_strategy else None,
        estimator=build_estimator(experiment),
        constraints=build_constraints(experiment),
    )


# Trials -------------------------------------------------------------------------------------------
def history(experiment) -> list[TrialRecord]:
    """Every trial so far, pending ones included (a strategy must not propose them again)."""
    rows = experiment.trials.order_by("number").values(*HISTORY_FIELDS)
    return [TrialRecord(**row) for row in rows]


def candidate_of(trial) -> Candidate:
    return Candidate(arch=dict(trial.arch), budget=dict(trial.budget or {}), meta=dict(trial.meta or {}))
