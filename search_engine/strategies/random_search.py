"""Baselines: uniform random sampling and exhaustive grid search."""

from __future__ import annotations

import math
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
        # Above every shipped space's default size (mlp 49,920; mobilenet 19,683; nb201 15,625).
        "limit": Option(int, 100_000, help="Refuse spaces with more architectures than this.",
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
        limit = self.config["limit"]
        too_many = ConfigError(
            "limit",
            f"space {self.space.name!r} has more than {limit} architectures; raise the grid "
            f"limit or pick a sampling strategy (random, evolution, tpe)",
        )
        # The base class counts by enumerating the whole product, which never ends for big
        # spaces; a space that knows its own count says so by overriding cardinality().
        upper_bound = math.prod(len(values) for values in self.space.choices().values())
        counts_cheaply = type(self.space).cardinality is not SearchSpace.cardinality
        if upper_bound > limit and counts_cheaply and self.space.cardinality() > limit:
            raise too_many
        grid = []
        for arch in self.space.enumerate():
            grid.append(arch)
            if len(grid) > limit:  # stop one past the limit rather than walk everything
                raise too_many
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
