"""The one-shot job interface: a whole search as ONE resumable job, not one estimate per trial.

A one-shot method (weight-sharing supernet, DARTS) trains a single over-parameterised network
for many epochs and only then reads architectures out of it, so it cannot run as independent
trials. `OneShotJob.run(...)` owns the epoch loop:

- after every epoch it writes ONE checkpoint file (model, optimizers, architecture parameters,
  the states of every torch.Generator it draws from, the epoch, the progress history and the
  elapsed time) atomically, then calls `report_progress(epoch, values)`;
- `run(..., resume=True)` on the same folder continues after the last checkpoint and reaches
  exactly the state an uninterrupted run would have reached (CPU, same thread count);
- `should_stop()` is polled after each checkpoint (a cancelled web job, a wall-time budget).

Checkpoint layout (`<checkpoint_dir>/checkpoint.pt`, written with torch.save, read back with
`torch.load(weights_only=True)`, so nothing but tensors and plain containers is ever unpickled):

    {"format": 1, "method": "darts", "fingerprint": "<job config + seed + space + task>",
     "epoch": 3, "elapsed_s": 12.5,
     "model": <state_dict>, "optimizers": {"weights": <state_dict>, "arch": <state_dict>},
     "generators": {"data": <ByteTensor>, ...}, "history": [<progress values>, ...]}

A method may end training before `epochs` by putting `"early_stop": "<reason>"` in an epoch's
values (DARTS' skip cap); the job then goes straight to `finish`, also when resumed.

Progress payloads (`report_progress(step, values)`) are JSON-friendly dicts; `values["phase"]` is
"train" (step = epoch, 1-based) or "search" (the supernet's post-training evolution; step = the
number of candidates scored so far). After a resume the last checkpointed epoch is reported again
(`"replayed": True`), so consumers should upsert by (phase, step).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ConfigError, Option, resolve_options
from ..runtime import DEVICES, resolve_device
from ..spaces.base import SearchSpace
from ..task import Task
from ..types import Architecture

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"

ProgressFn = Callable[[int, dict[str, Any]], None]

class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed (another configuration, a corrupt or foreign file)."""

    def __init__(self, reason: str):
        super().__init__("checkpoint", reason)


@dataclass
class OneShotResult:
    """What a one-shot job hands back.

    `top_archs` are (architecture, score) pairs, best first, to be retrained as normal trials
    (see `fixed_strategy_config`). `score_name` says what the score is: inherited-weight
    validation accuracy for the supernet, the cell's probability under the softmaxed
    architecture weights for DARTS. `completed` is False when `should_stop` ended the job early;
    a later `run(..., resume=True)` finishes it.
    """

    method: str
    top_archs: list[tuple[Architecture, float]]
    score_name: str
    history: list[dict[str, Any]]
    epochs_done: int
    completed: bool
    stopped_because: str
    cost_s: float
    final: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_archs"] = [{"arch": dict(a), "score": s} for a, s in self.top_archs]
        return d


def config_fingerprint(method: str, config: dict, seed: int, space: SearchSpace, task: Task) -> str:
    """What must match for a checkpoint to be resumed: the job, its seed, the space and the data.

    Options that do not change the trajectory (device, threads, what happens after training for
    the supernet) are left out by the caller, so a job may move to another worker setting."""
    data = hashlib.sha256()
    for tensor in (task.X_train, task.y_train, task.X_val, task.y_val):
        data.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    payload = {
        "method": method,
        "config": config,
        "seed": seed,
        "space": {"name": space.name, "config": space.config},
        "task": {"name": task.name, "shape": list(task.input_shape), "classes": task.num_classes,
                 "data": data.hexdigest()[:16]},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def save_checkpoint(checkpoint_dir: str | os.PathLike, state: dict) -> Path:
    """torch.save to a temporary file, then an atomic rename: a worker killed mid-write leaves
    the previous epoch's checkpoint intact, never a truncated one."""
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_NAME
    tmp = folder / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> dict | None:
    """The last checkpoint in `checkpoint_dir`, or None if there is none (weights_only=True)."""
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign pickle or a damaged file: say so rather than crash later
        raise CheckpointError(f"{path} cannot be read as a one-shot checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a format-{CHECKPOINT_FORMAT} one-shot checkpoint")
    return state


def load_progress(checkpoint_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch progress stored in the last checkpoint (for a page that re-syncs)."""
    state = load_checkpoint(checkpoint_dir)
    return list(state["history"]) if state else []


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _to_cpu(obj: Any) -> Any:
    return _to_device(obj, torch.device("cpu"))


class OneShotJob(ABC):
    """A resumable one-shot search over `space`, built from (space, seed, config) like a Strategy.

    Subclasses declare `options`, the spaces they support, and implement `setup`, `train_epoch`,
    `state`/`load_state` and `finish`; this class owns the epoch loop, checkpoints, resume,
    progress reports and stopping.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    supported_spaces: ClassVar[tuple[str, ...]] = ("nb201",)
    score_name: ClassVar[str] = ""
    # Options that do not change what the job computes, so a checkpoint may be resumed with
    # other values (another device, thread count, or post-training search settings).
    resumable_with_other: ClassVar[frozenset[str]] = frozenset({"device", "threads", "top_k"})

    common_options: ClassVar[dict[str, Option]] = {
        "epochs": Option(int, 10, "training epochs of the one-shot network", min=1, max=10000),
        "batch_size": Option(int, 64, "mini-batch size", min=2, max=65536),
        "grad_clip": Option(float, 5.0, "clip the weights' gradient norm; 0 = off", min=0.0),
        "top_k": Option(int, 5, "architectures returned for retraining as normal trials", min=1, max=1000),
        "device": Option(str, "auto", "where to train", choices=DEVICES),
        "threads": Option(int, 0, "torch CPU threads; 0 = leave torch's setting", min=0),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        if space.name not in self.supported_spaces:
            raise ConfigError(
                "space",
                f"one-shot method {self.name!r} supports {', '.join(self.supported_spaces)}, not {space.name!r}",
            )
        self.space = space
        self.seed = int(seed)
        self.config = resolve_options(f"one-shot method {self.name!r}", self.options, config)

    # -- what a method implements -----------------------------------------------------------
    @abstractmethod
    def setup(self, task: Task, device: torch.device) -> None:
        """Build the network, optimizers and generators for a fresh run (seeded)."""

    @abstractmethod
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch; returns the progress values for it (JSON-friendly)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """{"model": ..., "optimizers": {...}, "generators": {...}} for the checkpoint."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state()` returned (after `setup`, which built the objects)."""

    @abstractmethod
    def finish(self, report: ProgressFn, should_stop: Callable[[], bool]) -> tuple[list, dict]:
        """After training: (top_archs, final values)."""

    # -- the loop ---------------------------------------------------------------------------
    def fingerprint(self, task: Task) -> str:
        config = {k: v for k, v in self.config.items() if k not in self.resumable_with_other}
        return config_fingerprint(self.name, config, self.seed, self.space, task)

    def weight_step(self, logits: torch.Tensor, targets: torch.Tensor, params) -> torch.Tensor:
        """One optimizer step of the network weights on `logits`; returns the detached loss."""
        loss = F.cross_entropy(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config["grad_clip"]:
            nn.utils.clip_grad_norm_(params, self.config["grad_clip"])
        self.optimizer.step()
        return loss.detach()

    def run(
        self,
        task: Task,
        report_progress: ProgressFn | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> OneShotResult:
        """Train (resuming from `checkpoint_dir` when it holds a checkpoint of this job) and search.

        Without `checkpoint_dir` nothing is written and nothing can be resumed. With
        `resume=False` an existing checkpoint is ignored and overwritten. A checkpoint written
        by another configuration, seed, space or data raises CheckpointError rather than being
        silently continued or discarded.
        """
        report = report_progress or (lambda step, values: None)
        stop = should_stop or (lambda: False)
        if task.kind != "image":
            raise ConfigError("task", f"{self.name} needs image data; {task.name!r} is {task.kind}")
        if len(task.y_train) < 2 or len(task.y_val) < 1:
            raise ConfigError("task", "needs at least two training and one validation sample")
        device = resolve_device(self.config["device"])
        threads = self.config["threads"] or None
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            return self._run(task, report, checkpoint_dir, resume, stop, device)
        finally:
            if threads:
                torch.set_num_threads(previous_threads)

    def _run(self, task, report, checkpoint_dir, resume, stop, device) -> OneShotResult:
        started = time.perf_counter()
        fingerprint = self.fingerprint(task)
        self.task, self.device = task, device
        self.setup(task, device)
        history: list[dict[str, Any]] = []
        epoch, elapsed_before = 0, 0.0
        saved = load_checkpoint(checkpoint_dir) if (checkpoint_dir is not None and resume) else None
        if saved is not None:
            if saved.get("method") != self.name or saved.get("fingerprint") != fingerprint:
                raise CheckpointError(
                    f"the checkpoint in {checkpoint_dir} was written by another job configuration "
                    f"(method {saved.get('method')!r}); start a fresh run (resume=False) or use another folder"
                )
            # CPU tensors: load_state_dict copies onto the parameters' device, and optimizers keep
            # their step counters on the CPU (a CUDA step breaks non-capturable Adam).
            self.load_state(saved)
            epoch, elapsed_before = int(saved["epoch"]), float(saved["elapsed_s"])
            history = list(saved["history"])
            if history:
                report(epoch, {**history[-1], "replayed": True})
        # A method may end training early (DARTS' skip cap); a resumed job must not train on.
        early_stop = history[-1].get("early_stop") if history else None

        def elapsed() -> float:
            return elapsed_before + time.perf_counter() - started

        total = self.config["epochs"]
        while epoch < total and not early_stop:
            epoch += 1
            epoch_started = time.perf_counter()
            values = self.train_epoch(epoch)
            self._check_finite(values, epoch)
            values = {"phase": "train", "epoch": epoch, "epochs": total, **values,
                      "epoch_time_s": round(time.perf_counter() - epoch_started, 4)}
            history.append(values)
            if checkpoint_dir is not None:
                # Checkpoint first, report second: a reported epoch is always a resumable one.
                save_checkpoint(checkpoint_dir, {
                    "format": CHECKPOINT_FORMAT, "method": self.name, "fingerprint": fingerprint,
                    "epoch": epoch, "elapsed_s": elapsed(), "history": history,
                    **_to_cpu(self.state()),
                })
            report(epoch, values)
            early_stop = values.get("early_stop")
            if epoch < total and not early_stop and stop():
                return OneShotResult(self.name, [], self.score_name, history, epoch, False,
                                     "stopped", round(elapsed(), 4))
        top, final = self.finish(report, stop)
        stopped = bool(final.pop("stopped", False))
        return OneShotResult(
            method=self.name, top_archs=top, score_name=self.score_name, history=history,
            epochs_done=epoch, completed=not stopped,
            stopped_because="stopped" if stopped else (f"early stop: {early_stop}" if early_stop else "finished"),
            cost_s=round(elapsed(), 4), final=final,
        )

    @staticmethod
    def _check_finite(values: dict, epoch: int) -> None:
        loss = values.get("supernet_loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(f"supernet loss diverged at epoch {epoch}; lower the learning rate")


def fixed_strategy_config(result: OneShotResult, space: SearchSpace) -> dict[str, Any]:
    """The `fixed` strategy's config that retrains `result.top_archs` in order, then stops."""
    to_string = getattr(space, "to_string", None)
    archs = [to_string(a) if to_string else dict(a) for a, _ in result.top_archs]
    return {"archs": archs, "then": "stop"}
