"""The one module that turns database rows into engine objects and engine results back into fields.

Actors (tasks.py) stay thin: they fetch rows, call a function here, and hand the result to a
model verb. Nothing in search_engine/ knows about Django; nothing else in experiments/ builds
engine objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.core.files.storage import default_storage

import search_engine
from search_engine import data as engine_data
from search_engine import export as engine_export
from search_engine.constraints import Constraints
from search_engine.loop import Outcome, build_model, trial_seed
from search_engine.registry import ESTIMATORS, create_estimator, create_space, create_strategy
from search_engine.runtime import resolve_device
from search_engine.task import Task
from search_engine.types import Candidate, TrialRecord

from .choices import DatasetSource

# Loading and splitting a dataset costs from milliseconds (iris) to seconds (an image ZIP); a
# worker runs many trials of the same experiment, so it keeps the last few tasks in memory.
TASK_CACHE_SIZE = 4
_task_cache: OrderedDict[tuple, Task] = OrderedDict()
_task_cache_lock = threading.Lock()

# Trial fields a strategy reads, in TrialRecord's order.
HISTORY_FIELDS = ("number", "arch", "state", "objective", "metrics", "budget", "meta")


# Datasets -------------------------------------------------------------------------------------
def load_task(dataset, seed: int) -> Task:
    """The Task for `dataset` split with `seed`, from the in-process cache when possible.

    The key holds the checksum, so a dataset whose file changed is never served stale.
    """
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
    return engine_data.load_dataset({dataset.source: str(local_dataset_path(dataset)), **options})


def local_dataset_path(dataset) -> Path:
    """A path on this machine for an uploaded dataset file.

    With FileSystemStorage that is the stored file itself; with remote storage (S3 and the like,
    shared by every worker machine) the file is downloaded once into the data directory's cache.
    """
    name = dataset.file.name
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        pass
    cache_dir = Path(settings.DATA_DIR) / "cache" / "datasets"
    cache_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix
    # The original file name matters to the loader (it names the task), so it is kept.
    target = cache_dir / f"{dataset.pk}-{dataset.checksum or 'nochecksum'}" / Path(name).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=suffix, delete=False) as tmp:
        with default_storage.open(name, "rb") as src:
            shutil.copyfileobj(src, tmp, length=1 << 20)
    # Rename is atomic: a concurrent reader sees either no file or the whole file.
    Path(tmp.name).replace(target)
    return target


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
        from .benchmarks import resolve_table

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
    from search_engine.oneshot import create_oneshot

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


# History and results ---------------------------------------------------------------------------
def history(experiment_id: int) -> list[TrialRecord]:
    """Every trial so far, pending ones included (a strategy must not propose them again)."""
    from .models import Trial

    rows = Trial.objects.filter(experiment_id=experiment_id).order_by("number").values(*HISTORY_FIELDS)
    return [TrialRecord(**row) for row in rows]


def candidate_of(trial) -> Candidate:
    return Candidate(arch=dict(trial.arch), budget=dict(trial.budget or {}), meta=dict(trial.meta or {}))


def jsonable(value):
    """NaN and infinities are not JSON (PostgreSQL's jsonb refuses them): they become null.
    Tensors and numpy scalars become plain numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return value


def outcome_fields(outcome: Outcome) -> dict:
    """The Trial fields `Trial.complete()` takes, from an engine Outcome."""
    objective = outcome.objective
    if objective is not None and not math.isfinite(objective):
        objective = None
    return {
        "state": outcome.state,
        "objective": objective,
        "metrics": jsonable(outcome.metrics),
        "constraint_values": jsonable(outcome.constraints),
        "error": outcome.error or "",
        "duration_s": outcome.duration_s,
    }


def infeasible_trial_fields(outcome: Outcome) -> dict:
    """Fields of a Trial row for a candidate refused before training (never started)."""
    return {
        "number": outcome.number,
        "arch": outcome.arch,
        "fingerprint": outcome.fingerprint,
        "budget": jsonable(outcome.budget),
        "meta": jsonable(outcome.meta),
        "state": outcome.state,
        "metrics": jsonable(outcome.metrics),
        "constraint_values": jsonable(outcome.constraints),
        "error": outcome.error or "",
    }


def queued_trial_fields(space, number: int, candidate: Candidate, constraint_values: dict) -> dict:
    return {
        "number": number,
        "arch": candidate.arch,
        "fingerprint": space.fingerprint(candidate.arch),
        "budget": jsonable(candidate.budget),
        "meta": jsonable(candidate.meta),
        "constraint_values": jsonable(constraint_values),
    }


# Trained weights --------------------------------------------------------------------------------
# A completed trial that is the best so far keeps its trained weights in storage, so the final
# export needs no retraining (see tasks.finalize_experiment). Only the weights are stored
# (safetensors: never unpickled); the network is rebuilt from the architecture.
def weights_path(trial) -> str:
    return f"trial-weights/{trial.experiment_id}/{trial.pk}.safetensors"


def save_weights(trial, model: torch.nn.Module) -> str:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"trial": str(trial.pk), "arch": json.dumps(trial.arch, sort_keys=True)})
    path = weights_path(trial)
    if default_storage.exists(path):
        default_storage.delete(path)
    default_storage.save(path, _named_bytes(blob, Path(path).name))
    return path


def load_trained_model(experiment, trial, search: Search) -> torch.nn.Module | None:
    """The best trial's trained network, rebuilt from its architecture and its stored weights;
    None when no weights were stored for it."""
    from safetensors.torch import load

    path = weights_path(trial)
    if not default_storage.exists(path):
        return None
    with default_storage.open(path, "rb") as fh:
        state = load(fh.read())
    arch = search.space.validate(trial.arch)
    model = build_model(search.space, arch, search.task, trial_seed(experiment.seed, search.space, arch, trial.budget or {}))
    model.load_state_dict(state)
    return model.eval()


def delete_weights(experiment_id: int) -> None:
    folder = f"trial-weights/{experiment_id}"
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")


def _named_bytes(blob: bytes, name: str):
    from django.core.files.base import ContentFile

    return ContentFile(blob, name=name)


# One-shot checkpoints ------------------------------------------------------------------------------
# A one-shot job writes one file, checkpoint.pt, after every epoch. With FileSystemStorage it lives
# in the storage folder itself (shared by every worker machine that shares MEDIA_ROOT). With remote
# storage the job writes it to a local folder, which is copied to storage after every epoch and
# fetched from there before a resume, so a job killed on one machine resumes on another.
def checkpoint_name(experiment_id: int) -> str:
    return f"oneshot/{experiment_id}/checkpoint.pt"


def _storage_path(name: str) -> Path | None:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


def checkpoint_dir(experiment_id: int) -> Path:
    """The local folder the job checkpoints into (created)."""
    local = _storage_path(checkpoint_name(experiment_id))
    folder = local.parent if local is not None else Path(settings.DATA_DIR) / "cache" / "oneshot" / str(experiment_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch_checkpoint(experiment_id: int) -> None:
    """Remote storage only: replace the local checkpoint with the stored one (the newest anywhere)."""
    name = checkpoint_name(experiment_id)
    if _storage_path(name) is not None or not default_storage.exists(name):
        return
    folder = checkpoint_dir(experiment_id)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
        with default_storage.open(name, "rb") as src:
            shutil.copyfileobj(src, tmp, length=1 << 20)
    Path(tmp.name).replace(folder / "checkpoint.pt")


def push_checkpoint(experiment_id: int) -> None:
    """Remote storage only: copy the local checkpoint (just written) to storage."""
    name = checkpoint_name(experiment_id)
    if _storage_path(name) is not None:
        return
    local = checkpoint_dir(experiment_id) / "checkpoint.pt"
    if not local.exists():
        return
    if default_storage.exists(name):
        default_storage.delete(name)
    with local.open("rb") as fh:
        default_storage.save(name, fh)


def delete_checkpoint(experiment_id: int) -> None:
    name = checkpoint_name(experiment_id)
    if default_storage.exists(name):
        default_storage.delete(name)
    local = checkpoint_dir(experiment_id)
    shutil.rmtree(local, ignore_errors=True)


# Export -------------------------------------------------------------------------------------------
@dataclass
class ModelPackage:
    zip_bytes: bytes
    sha256: str
    files: list[str]
    test_acc: float | None


def export_package(experiment, trial, model: torch.nn.Module, search: Search, *, retrained: bool,
                   title: str | None = None, provenance: str | None = None,
                   extra_results: tuple[str, ...] = ()) -> ModelPackage:
    """The downloadable ZIP of a trained model: TorchScript, ONNX, safetensors weights,
    architecture JSON (from search_engine.export) plus a MODEL_CARD.md. `title`, `provenance`
    and `extra_results` adapt the card to packages other than the search's best model
    (experiments/exports.py: any completed trial, a retrain on train+val)."""
    with tempfile.TemporaryDirectory(prefix="nas-export-") as tmp:
        folder = Path(tmp) / "model"
        engine_export.export_model(
            model=model, arch=search.space.validate(trial.arch), space_name=search.space.name,
            space_config=search.space.config, task=search.task, out_dir=folder, metrics=jsonable(trial.metrics),
        )  # fmt: skip
        test_acc = _exported_test_accuracy(folder, search.task)
        card = model_card(experiment, trial, search, test_acc=test_acc, retrained=retrained, title=title,
                          provenance=provenance, extra_results=extra_results)
        (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        buffer = io.BytesIO()
        files = []
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    arcname = path.relative_to(folder).as_posix()
                    zf.write(path, arcname)
                    files.append(arcname)
    blob = buffer.getvalue()
    return ModelPackage(blob, hashlib.sha256(blob).hexdigest(), files, test_acc)


@torch.no_grad()
def _exported_test_accuracy(folder: Path, task: Task) -> float | None:
    """Measured on the model as loaded back from the exported files, not the one in memory."""
    try:
        model = engine_export.load_model(folder)
    except Exception:  # noqa: BLE001 - the card then says the number was not re-measured
        return None
    model.eval()
    n = len(task.y_test)
    if not n:
        return None
    correct = 0
    for start in range(0, n, 512):
        logits = model(task.X_test[start : start + 512])
        correct += int((logits.argmax(dim=1) == task.y_test[start : start + 512]).sum())
    return correct / n


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def model_card(experiment, trial, search: Search, *, test_acc: float | None, retrained: bool,
               title: str | None = None, provenance: str | None = None, extra_results: tuple[str, ...] = ()) -> str:
    dataset = experiment.dataset
    metrics = trial.metrics or {}
    info = search.task.describe()
    limits = {
        "params": ("max_params", metrics.get("params")),
        "flops": ("max_flops", metrics.get("flops")),
        "size_mb": ("max_size_mb", metrics.get("size_mb")),
        "latency_ms": ("max_latency_ms", metrics.get("latency_ms")),
    }
    constraint_rows = []
    for name, (limit_key, value) in limits.items():
        limit = (experiment.constraints or {}).get(limit_key)
        ok = "-" if limit is None or value is None else ("yes" if value <= limit else "NO")
        constraint_rows.append(f"| {name} | {_fmt(value)} | {_fmt(limit)} | {ok} |")
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if getattr(search_engine, "__version__", None):
        versions["search_engine"] = search_engine.__version__
    for module in ("onnx", "onnxruntime", "safetensors", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            versions[module] = "-"
    source = f"built-in `{dataset.builtin_name}`" if dataset.source == DatasetSource.BUILTIN else (
        f"uploaded {dataset.source.upper()} `{Path(dataset.file.name).name}` (sha256 {dataset.checksum or '-'})"
    )
    weights_note = provenance or (
        "Weights were retrained with the trial's seed because the trial's own weights were not stored."
        if retrained else "Weights are the ones the trial trained (restored best-validation epoch)."
    )
    shape = ", ".join(str(d) for d in info["input_shape"])
    normalize = search.task.meta.get("normalize") or {}
    if isinstance(normalize.get("mean"), (int, float)):
        normalize_line = f"x = (x - {normalize['mean']:.6g}) / {normalize['std']:.6g}"
    elif normalize:
        normalize_line = "x = (x - mean) / std, per feature, with `normalize` from `architecture.json`"
    else:
        normalize_line = "inputs are used as they are (no normalisation)"
    lines = [
        f"# {experiment.name}: {title or f'best model (trial #{trial.number})'}",
        "",
        f"Exported by NAS Studio from experiment {experiment.pk} in project \"{experiment.project.name}\".",
        "",
        "## Data",
        f"- Dataset: {dataset.name} ({source})",
        f"- Task: {info['kind']}, input shape {tuple(info['input_shape'])}, {info['num_classes']} classes, "
        f"split train/val/test = {info['sizes']['train']}/{info['sizes']['val']}/{info['sizes']['test']} "
        f"(split seed {search.task.meta.get('split_seed', experiment.seed)})",
        f"- Classes: {', '.join(map(str, info['class_names']))}",
        "",
        "## Search",
        f"- Space `{experiment.space}` {json.dumps(experiment.space_config or {})}",
        f"- Strategy `{experiment.strategy}` {json.dumps(experiment.strategy_config or {})}",
        f"- Estimator `{experiment.estimator}` {json.dumps(experiment.estimator_config or {})}",
        f"- Trials: {experiment.counted_trials().count()} evaluated (budget {experiment.budget_trials}), "
        f"device {experiment.device}",
        f"- Search seed {experiment.seed}; trial seed "
        f"{trial_seed(experiment.seed, search.space, search.space.validate(trial.arch), trial.budget or {})}",
        f"- Architecture: `{json.dumps(trial.arch, sort_keys=True)}`",
        "",
        "## Results",
        f"- Validation accuracy (the search's objective, trial #{trial.number}): {_fmt(trial.objective)}",
        f"- Test accuracy (during the search): {_fmt(metrics.get('test_acc'))}, "
        f"test loss {_fmt(metrics.get('test_loss'))}",
        f"- Test accuracy (re-measured from the exported files): {_fmt(test_acc)}",
        *extra_results,
        f"- {weights_note}",
        "",
        "| constraint | value | limit | within |",
        "|---|---|---|---|",
        *constraint_rows,
        "",
        "## Load and run",
        "Unzip, then, with PyTorch alone (TorchScript):",
        "```python",
        "import torch",
        "model = torch.jit.load(\"model.pt\").eval()",
        f"predicted_class = model(torch.zeros(1, {shape})).argmax(1)  # a batch of normalised inputs",
        "```",
        "or with onnxruntime and NumPy alone (ONNX, any batch size):",
        "```python",
        "import numpy as np, onnxruntime as ort",
        "session = ort.InferenceSession(\"model.onnx\")",
        f"predicted_class = session.run(None, {{\"input\": np.zeros((1, {shape}), np.float32)}})[0].argmax(1)",
        "```",
        f"The model expects inputs normalised as during training: `{normalize_line}` "
        "(`normalize` in `architecture.json`, also in the ONNX metadata). `class_names` there maps class ids "
        "to labels. With NAS Studio's engine installed, `search_engine.export.load_model(folder)` rebuilds "
        "the PyTorch module from `architecture.json` and `weights.safetensors`.",
        "",
        "## Library versions",
        *[f"- {k} {v}" for k, v in versions.items()],
        "",
    ]
    return "\n".join(lines)
