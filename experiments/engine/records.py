"""Engine results -> database fields: what a Trial row stores of an Outcome or a Candidate."""

from __future__ import annotations

import math

from search_engine.loop import Outcome
from search_engine.types import Candidate


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
