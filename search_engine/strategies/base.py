"""The Strategy interface (ask/tell, like Optuna's samplers).

A strategy never evaluates and never touches storage. `ask(history, n)` is a pure function
of (config, seed, history): randomness comes from a Generator seeded with the strategy's
name, the seed and the number of trials already in the history, so a worker can rebuild a
strategy from the database at any point and get the same proposals, and two strategies run
with one seed (random and hyperband, say) do not draw the same architectures. Strategies that learn (REINFORCE) replay
the history; `state_dict()` is the JSON that rebuilds the object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..registry import Option, resolve_options
from ..runtime import derive_seed
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
        return np.random.default_rng([derive_seed(self.seed, self.name), len(history), salt])

    def check_budget(self, trials: int) -> None:  # noqa: B027  (optional hook, not abstract)
        """Raise ConfigError when the configuration cannot work within `trials` trials.

        The budget is not part of a strategy's config, so whoever knows both (run_search, the
        CLI, the web form) calls this before the search starts."""

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

    def mutate_unseen(self, arch: dict, rng: np.random.Generator, seen: set[str]) -> dict | None:
        """A mutation of `arch` not in `seen`, or None after max_resample tries.

        Every one-step child may already be evaluated late in a search (nb201 has only 24
        neighbours per cell), so after half the attempts keep walking away from `arch`
        instead of retrying the same neighbourhood."""
        child = arch
        for attempt in range(self.max_resample):
            base = arch if attempt < self.max_resample // 2 else child
            child = self.space.mutate(base, rng)
            fingerprint = self.space.fingerprint(child)
            if fingerprint not in seen:
                seen.add(fingerprint)
                return child
        return None
