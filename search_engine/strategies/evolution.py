"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search" (AAAI). The population is read from the history, never stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import ConfigError, Option, register_strategy
from ..spaces.base import SearchSpace
from ..types import Candidate, TrialRecord
from .base import Strategy


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Aging evolution: tournament-selected parents are mutated, the oldest member dies."""

    options = {
        "population_size": Option(int, 20, help="Population P: the last P scored trials; the first "
                                                "P proposals are random, so P must not exceed the "
                                                "trial budget (that would be random search).",
                                  min=2, max=10000),
        "sample_size": Option(int, 5, help="Tournament size S: the best of S random population "
                                           "members becomes the parent.", min=1, max=10000),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        if self.config["sample_size"] > self.config["population_size"]:
            raise ConfigError(
                "sample_size",
                f"must be <= population_size ({self.config['population_size']}), "
                f"got {self.config['sample_size']}",
            )

    def check_budget(self, trials: int) -> None:
        population_size = self.config["population_size"]
        if population_size > trials:
            # Every proposal of such a search is a warm-up sample: random search under another name.
            raise ConfigError(
                "population_size",
                f"{population_size} exceeds the trial budget ({trials}): every trial would be a random "
                f"warm-up sample; use population_size <= {trials} (and sample_size <= population_size) "
                f"or the random strategy",
            )

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        rng = self.rng(history)
        seen = self.seen(history)
        population_size = self.config["population_size"]
        # Aging: membership is by recency of the trial, not by fitness, so an old lucky
        # architecture cannot dominate forever. Failed/infeasible trials have no objective
        # and therefore never become parents.
        population = [r for r in history if r.scored][-population_size:]
        out = []
        for i in range(n):
            # Pending trials count as proposals: with parallel workers the warm-up stays
            # P random trials instead of everyone mutating the first few results.
            warming_up = len(history) + i < population_size
            if warming_up or not population:
                out.append(Candidate(arch=self.fresh_sample(rng, seen)))
                continue
            parent = self._tournament(population, rng)
            # A random architecture is the last resort when every nearby one is taken.
            child = self.mutate_unseen(parent.arch, rng, seen) or self.fresh_sample(rng, seen)
            out.append(Candidate(arch=child, meta={"parent": parent.number}))
        return out

    def _tournament(self, population: list[TrialRecord], rng: np.random.Generator) -> TrialRecord:
        size = min(self.config["sample_size"], len(population))
        picked = rng.choice(len(population), size=size, replace=False)
        # Ties go to the younger member (higher index), which favours fresh lineages.
        best = max(picked, key=lambda i: (population[i].objective, i))
        return population[best]
