"""The Strategy interface (ask/tell, like Optuna's samplers).

A strategy never evaluates and never touches storage. `ask(history, n)` is a pure function
of (config, seed, history): randomness comes from a Generator seeded with the seed and the
number of trials already in the history, so a worker can rebuild a strategy from the
database at any point and get the same proposals. Strategies that learn (REINFORCE) replay
the history; `state_dict()` is the JSON that rebuilds the object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..registry import Option, resolve_options
from ..spaces.base import SearchSpace
from ..types import Candidate, TrialRecord


class Strategy(ABC):
    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    max_resample = 100  # attempts to find an architecture not yet in the history
    needs_task = False  # True for strategies that score candidates on data (zc_prescreen)

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        self.space = space
        self.seed = int(seed)
        self.config = resolve_options(f"strategy {self.name!r}", self.options, config)

    def rng(self, history: list[TrialRecord], salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, len(history), salt])

    @abstractmethod
    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        """Up to `n` new candidates given every trial so far (pending ones included)."""

    def bind_task(self, task) -> Strategy:
        """Give the strategy the task's data; only data-aware strategies keep it."""
        return self

    def tell(self, record: TrialRecord) -> None:  # noqa: B027  (optional hook, not abstract)
        """Optional hook; strategies here derive everything from the history instead."""

    def state_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "config": dict(self.config)}

    @classmethod
    def from_state_dict(cls, space: SearchSpace, state: dict) -> Strategy:
        return cls(space, seed=state["seed"], **state["config"])

    def is_finished(self, history: list[TrialRecord]) -> bool:
        """True when the strategy has nothing left to propose (grid exhausted)."""
        return False

    # helpers --------------------------------------------------------------------------
    def seen(self, history: list[TrialRecord]) -> set[str]:
        return {self.space.fingerprint(r.arch) for r in history}

    def fresh_sample(self, rng: np.random.Generator, seen: set[str]) -> dict:
        """A random architecture not in `seen` (gives up after max_resample tries)."""
        arch = self.space.sample(rng)
        for _ in range(self.max_resample):
            if self.space.fingerprint(arch) not in seen:
                break
            arch = self.space.sample(rng)
        seen.add(self.space.fingerprint(arch))
        return arch
