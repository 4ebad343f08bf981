"""Plain value types shared by every part of the engine (all JSON-friendly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Architecture = dict[str, Any]
"""A plain JSON-serialisable mapping of choice label to value."""

ReportFn = Callable[[int, dict[str, float]], None]
"""`report(step, metrics)`: called by estimators after each epoch (or step)."""

# Trial states shared with the web side's Trial model.
QUEUED, RUNNING, COMPLETED, PRUNED, INFEASIBLE, FAILED, CANCELLED = (
    "queued",
    "running",
    "completed",
    "pruned",
    "infeasible",
    "failed",
    "cancelled",
)
PENDING_STATES = (QUEUED, RUNNING)
TERMINAL_STATES = (COMPLETED, PRUNED, INFEASIBLE, FAILED, CANCELLED)


class TrialPruned(Exception):
    """Raised from `report` (or by an estimator) to stop a trial early."""


@dataclass
class Candidate:
    """What a strategy proposes: an architecture, optionally a budget override and bookkeeping."""

    arch: Architecture
    budget: dict[str, Any] = field(default_factory=dict)  # e.g. {"epochs": 9} from hyperband
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"bracket": 0, "rung": 1}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrialRecord:
    """One entry of the history a strategy reads. `objective` is higher-is-better."""

    number: int
    arch: Architecture
    state: str
    objective: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def scored(self) -> bool:
        return self.state in (COMPLETED, PRUNED) and self.objective is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrialRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Result:
    """What an estimator returns. `metrics` holds everything reported (val/test accuracy, ...)."""

    metrics: dict[str, Any]
    objective: float
    cost_s: float


@dataclass
class Budget:
    """When a search stops: after `trials` evaluated trials or `wall_time_s` seconds."""

    trials: int = 20
    wall_time_s: float | None = None
    max_infeasible: int = 200  # consecutive infeasible proposals before giving up
