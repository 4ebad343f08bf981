"""The domain rules every part of NAS Studio shares, each defined once.

The engine's loop, the CLI, the web workers, the REST API and the pages (through page data) all
read these instead of keeping their own copies:

- what counts against the trial budget,
- which trial is "best" (and how ties break),
- the constraint keys (metric -> limit field),
- a failed trial's one-line error summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from .types import COMPLETED, INFEASIBLE, TERMINAL_STATES

T = TypeVar("T")

# metric name -> the limit that bounds it, in the order forms and tables show them.
CONSTRAINT_LIMITS: dict[str, str] = {
    "params": "max_params",
    "flops": "max_flops",
    "size_mb": "max_size_mb",
    "latency_ms": "max_latency_ms",
}
CONSTRAINT_KEYS: tuple[str, ...] = tuple(CONSTRAINT_LIMITS.values())
# Metrics known before training (from the untrained network); latency is measured after it.
STATIC_METRICS: tuple[str, ...] = ("params", "flops", "size_mb")

ERROR_LINE_CHARS = 300


def counts_against_budget(state: str, trained: bool) -> bool:
    """A finished trial spends one unit of the trial budget, except a candidate rejected by the
    static checks before any training (`trained` False): it cost nothing but a network build."""
    return state in TERMINAL_STATES and not (state == INFEASIBLE and not trained)


def is_scored(state: str, objective: float | None) -> bool:
    """Only completed trials with an objective compete for "best"."""
    return state == COMPLETED and objective is not None


def best_key(objective: float, params: float | None, number: int) -> tuple:
    """Sort key, smallest first: the highest objective; on a tie the smaller model (fewer
    params; unknown params count as largest), then the earlier trial."""
    return (-objective, float("inf") if params is None else params, number)


def best_of(items: Iterable[T], *, state, objective, params, number) -> T | None:
    """The best of `items` by `best_key`; the accessors read each field off an item, so the same
    rule serves engine outcomes, ORM rows and plain dicts."""
    scored = [item for item in items if is_scored(state(item), objective(item))]
    if not scored:
        return None
    return min(scored, key=lambda item: best_key(objective(item), params(item), number(item)))


def error_line(error: str | None) -> str:
    """The one-line summary of a failed trial: the last line of its traceback summary (the
    exception and its message), cut to a length a table cell can show."""
    lines = (error or "").strip().splitlines()
    return lines[-1][:ERROR_LINE_CHARS] if lines else ""


def params_of(metrics: dict[str, Any] | None) -> float | None:
    value = (metrics or {}).get("params")
    return value if isinstance(value, int | float) else None
