"""Multi-objective helpers: every result carries accuracy, params, FLOPs and latency."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def parse_objectives(objectives: Iterable[str | tuple[str, str]]) -> list[tuple[str, str]]:
    """Accepts ("val_acc", "max") pairs or "val_acc:max" strings; direction defaults to max."""
    parsed = []
    for obj in objectives:
        key, _, direction = obj.partition(":") if isinstance(obj, str) else (obj[0], ":", obj[1])
        direction = direction or "max"
        if direction not in ("max", "min"):
            raise ValueError(f"objective {key!r}: direction must be 'max' or 'min', got {direction!r}")
        parsed.append((key, direction))
    return parsed


def _metrics(item: Any) -> dict:
    return item if isinstance(item, dict) else item.metrics


def dominates(a: dict, b: dict, objectives: Sequence[tuple[str, str]]) -> bool:
    better_somewhere = False
    for key, direction in objectives:
        va, vb = (a[key], b[key]) if direction == "max" else (-a[key], -b[key])
        if va < vb:
            return False
        if va > vb:
            better_somewhere = True
    return better_somewhere


def pareto_front(results: Sequence[Any], objectives: Iterable[str | tuple[str, str]]) -> list[Any]:
    """The non-dominated items of `results` (dicts of metrics, or objects with `.metrics`).

    Items lacking any objective value are ignored; ties on every objective all stay on the
    front; the input order is kept.
    """
    objectives = parse_objectives(objectives)
    keys = [k for k, _ in objectives]
    usable = [r for r in results if all(_metrics(r).get(k) is not None for k in keys)]
    return [
        r
        for r in usable
        if not any(dominates(_metrics(o), _metrics(r), objectives) for o in usable if o is not r)
    ]
