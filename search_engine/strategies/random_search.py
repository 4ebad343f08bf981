"""Baselines: uniform random sampling and exhaustive grid search."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import ConfigError, Option, register_strategy
from ..spaces.base import SearchSpace
from ..types import Architecture, Candidate, TrialRecord
from .base import Strategy


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform random sampling, never proposing an architecture twice while unseen ones remain."""

    options = {}

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        rng = self.rng(history)
        seen = self.seen(history)
        return [Candidate(arch=self.fresh_sample(rng, seen)) for _ in range(n)]


# The grid order must not depend on the history length (unlike self.rng), or the walk
# through the grid would be reshuffled after every trial.
_GRID_ORDER_SALT = 0x67726964


@register_strategy("grid")
class GridSearch(Strategy):
    """Every architecture of a small space exactly once, in a seeded shuffled order."""

    options = {
        "shuffle": Option(bool, True, help="Visit the grid in a seeded random order instead of "
                                           "the space's enumeration order."),
        "limit": Option(int, 10000, help="Refuse spaces with more architectures than this.",
                        min=1, max=10_000_000),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        self._grid = self._enumerate_within_limit()
        if self.config["shuffle"]:
            order = np.random.default_rng([self.seed, _GRID_ORDER_SALT]).permutation(len(self._grid))
            self._grid = [self._grid[i] for i in order]
        self._fingerprints = [space.fingerprint(arch) for arch in self._grid]

    def _enumerate_within_limit(self) -> list[Architecture]:
        # Stops one past the limit: space.cardinality() would walk the whole product, which
        # never ends for spaces like mobilenet.
        limit = self.config["limit"]
        grid = []
        for arch in self.space.enumerate():
            grid.append(arch)
            if len(grid) > limit:
                raise ConfigError(
                    "limit",
                    f"space {self.space.name!r} has more than {limit} architectures; raise the "
                    f"grid limit or pick a sampling strategy (random, evolution, tpe)",
                )
        return grid

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        seen = self.seen(history)
        out = []
        for arch, fingerprint in zip(self._grid, self._fingerprints):
            if len(out) == n:
                break
            if fingerprint not in seen:
                out.append(Candidate(arch=dict(arch)))
        return out

    def is_finished(self, history: list[TrialRecord]) -> bool:
        return set(self._fingerprints) <= self.seen(history)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "grid_size": len(self._grid)}
