"""Hyperband (Li et al. 2018) as an asynchronous-friendly multi-fidelity scheduler, and BOHB
(Falkner et al. 2018) when its new architectures come from TPE.

The scheduler keeps no state: every candidate carries meta={"iteration", "bracket", "rung"}
and budget={"epochs"}, and `ask()` rebuilds each bracket from the history's meta. A rung's
promotions (the top n_i of the previous rung, re-proposed with the larger epoch budget)
are decided once every trial of the previous rung has finished; while a bracket waits for
results the next bracket starts, and after the last bracket a new Hyperband iteration
starts, so parallel workers never sit idle.

BOHB's model (documented choice): TPE is fitted on the scored trials of the *largest*
epoch budget that has at least `min_points_in_model` of them, as in BOHB, because
objectives measured after 1 and after 9 epochs are not comparable; until some budget has
that many points, new architectures are drawn at random.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from ..registry import ConfigError, Option, register_strategy
from ..spaces.base import SearchSpace
from ..types import Candidate, TrialRecord
from .base import Strategy
from .tpe import OptunaTPE


def hyperband_schedule(min_epochs: int, max_epochs: int, eta: int) -> list[list[tuple[int, int]]]:
    """Brackets, most aggressive first; each a list of rungs (trials, epochs)."""
    s_max = 0
    while min_epochs * eta ** (s_max + 1) <= max_epochs:
        s_max += 1
    brackets = []
    for s in range(s_max, -1, -1):
        n0 = -(-(s_max + 1) * eta**s // (s + 1))  # ceil((s_max + 1) / (s + 1) * eta^s)
        rungs = []
        for i in range(s + 1):
            # The top rung always trains for max_epochs; lower rungs divide it by eta.
            epochs = max(min_epochs, math.floor(max_epochs / eta ** (s - i) + 0.5))
            rungs.append((n0 // eta**i, epochs))
        brackets.append(rungs)
    return brackets


@register_strategy("hyperband")
class Hyperband(Strategy):
    """Hyperband: successive halving over epochs in brackets (BOHB with sampler=tpe)."""

    options = {
        "min_epochs": Option(int, 1, help="Epoch budget of the cheapest rung.", min=1, max=10000),
        "max_epochs": Option(int, 9, help="Epoch budget of the top rung (fully trained).",
                             min=1, max=10000),
        "eta": Option(int, 3, help="Keep the top 1/eta of each rung and give them eta times "
                                   "the epochs.", min=2, max=100),
        "sampler": Option(str, "random", help="Where new architectures come from: random "
                                              "(Hyperband) or tpe (BOHB).",
                          choices=("random", "tpe")),
        "min_points_in_model": Option(int, 10, help="BOHB: fit TPE on the largest budget with "
                                                    "at least this many scored trials.",
                                      min=1, max=10000),
    }

    _SAMPLER_SALT = 1

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        if self.config["max_epochs"] < self.config["min_epochs"]:
            raise ConfigError(
                "max_epochs",
                f"must be >= min_epochs ({self.config['min_epochs']}), got {self.config['max_epochs']}",
            )
        self.schedule = hyperband_schedule(self.config["min_epochs"], self.config["max_epochs"],
                                           self.config["eta"])

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        rungs = self._rungs(history)
        last_iteration = max((key[0] for key in rungs), default=-1)
        out: list[Candidate] = []
        iteration = 0
        while len(out) < n:
            before = len(out)
            for bracket in range(len(self.schedule)):
                out.extend(self._bracket_work(rungs, iteration, bracket, n - len(out)))
                if len(out) == n:
                    break
            if iteration > last_iteration and len(out) == before:
                break  # a fresh iteration always has work, so this only guards the loop
            iteration += 1
        self._fill_new_architectures(history, out)
        return out

    def _rungs(self, history: list[TrialRecord]) -> dict[tuple[int, int, int], list[TrialRecord]]:
        """(iteration, bracket, rung) -> records; records without valid meta are ignored."""
        rungs = defaultdict(list)
        for record in history:
            meta = record.meta or {}
            try:
                key = (int(meta["iteration"]), int(meta["bracket"]), int(meta["rung"]))
            except (KeyError, TypeError, ValueError):
                continue
            iteration, bracket, rung = key
            if iteration >= 0 and 0 <= bracket < len(self.schedule) and 0 <= rung < len(self.schedule[bracket]):
                rungs[key].append(record)
        return rungs

    def _bracket_work(self, rungs, iteration: int, bracket: int, room: int) -> list[Candidate]:
        """What bracket (iteration, bracket) can run now: new samples, promotions, or nothing."""
        previous: list[TrialRecord] = []
        for rung, (n_trials, epochs) in enumerate(self.schedule[bracket]):
            meta = {"iteration": iteration, "bracket": bracket, "rung": rung}
            records = rungs.get((iteration, bracket, rung), [])
            if rung == 0:
                missing = n_trials - len(records)
                if missing > 0:
                    # arch is filled in later, all new ones at once (TPE proposes in batches).
                    return [Candidate(arch={}, budget={"epochs": epochs}, meta=dict(meta))
                            for _ in range(min(missing, room))]
            else:
                ranked = sorted(
                    (r for r in previous if r.scored and math.isfinite(r.objective)),
                    key=lambda r: (-r.objective, r.number),
                )
                present = {self.space.fingerprint(r.arch) for r in records}
                todo = [r for r in ranked[:n_trials] if self.space.fingerprint(r.arch) not in present]
                if todo:
                    return [Candidate(arch=dict(r.arch), budget={"epochs": epochs},
                                      meta={**meta, "parent": r.number})
                            for r in todo[:room]]
            if any(not r.finished for r in records):
                return []  # promotions wait for the whole rung: ranks need every result
            previous = records
        return []

    def _fill_new_architectures(self, history: list[TrialRecord], candidates: list[Candidate]) -> None:
        slots = [c for c in candidates if not c.arch]
        if not slots:
            return
        rng = self.rng(history)
        seen = self.seen(history)
        model_records = self._model_records(history) if self.config["sampler"] == "tpe" else []
        if model_records:
            bridge = OptunaTPE(self.space, n_startup_trials=self.config["min_points_in_model"],
                               multivariate=True, constant_liar=True)
            sampler_seed = int(self.rng(history, self._SAMPLER_SALT).integers(2**31 - 1))
            archs = [arch for arch, _ in bridge.propose(model_records, len(slots), sampler_seed, rng, seen, self)]
        else:
            archs = [self.fresh_sample(rng, seen) for _ in slots]
        for slot, arch in zip(slots, archs):
            slot.arch = arch

    def _model_records(self, history: list[TrialRecord]) -> list[TrialRecord]:
        by_epochs = defaultdict(list)
        for record in history:
            epochs = (record.budget or {}).get("epochs")
            if record.scored and isinstance(epochs, int):
                by_epochs[epochs].append(record)
        for epochs in sorted(by_epochs, reverse=True):
            if len(by_epochs[epochs]) >= self.config["min_points_in_model"]:
                return by_epochs[epochs]
        return []

    def state_dict(self) -> dict:
        schedule = [[{"trials": t, "epochs": e} for t, e in rungs] for rungs in self.schedule]
        return {**super().state_dict(), "schedule": schedule}
