"""Tree-structured Parzen Estimator through Optuna's TPESampler, in ask/tell mode.

TPE itself is Optuna's; this module only translates. Every `ask()` builds a throw-away
in-memory study from the history (scored trials as COMPLETE/PRUNED, pending ones as
RUNNING, rejected ones as infeasible through Optuna's constraints), asks it with fixed
categorical distributions and reads the parameters back. A proposal that repeats an evaluated
architecture is told that architecture's known value and the study is asked again; after
`_DUPLICATE_RETRIES` repeats in a row the proposal is an unseen mutation of the repeated one
(meta {"fallback": "mutation"}), and a random unseen one only when no mutation is left
(meta {"fallback": "random"}).

The study is rebuilt from the history on every ask rather than kept between asks: the trials
told during one ask (its own proposals, the duplicates) belong to that ask only, so the
proposals stay a pure function of (config, seed, history) and a strategy rebuilt from the
database proposes exactly what the running one would. Building the study costs a few
milliseconds at 200 trials, small beside TPE's own sampling (bench/bench_bookkeeping.py).
Parameters are choice *indices*, not values: Optuna compares choices by equality, and
`True == 1` would make a space whose choices mix bools and ints ambiguous.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from ..registry import Option, register_strategy
from ..spaces.base import SearchSpace
from ..types import INFEASIBLE, PRUNED, Architecture, Candidate, TrialRecord
from .base import Strategy

# Retries of study.ask() when TPE proposes an architecture already in the history, before
# falling back to a mutation of it (a converged TPE on a small space repeats itself).
_DUPLICATE_RETRIES = 10
# Where Optuna's samplers read a trial's constraint values (optuna.samplers._base._CONSTRAINTS_KEY).
_CONSTRAINTS_KEY = "constraints"


def _index_of(values: list, value: Any) -> int | None:
    # Exact type first, so a True is not mistaken for a 1 in a mixed list.
    for i, v in enumerate(values):
        if type(v) is type(value) and v == value:
            return i
    for i, v in enumerate(values):
        if v == value:
            return i
    return None


class OptunaTPE:
    """One-shot bridge from our history to an Optuna study; shared by `tpe` and BOHB."""

    def __init__(self, space: SearchSpace, *, n_startup_trials: int, multivariate: bool,
                 constant_liar: bool):
        self.space = space
        self.choices = space.choices()
        self.distributions = {
            label: CategoricalDistribution(tuple(range(len(values))))
            for label, values in self.choices.items()
        }
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.constant_liar = constant_liar

    def params(self, arch: Architecture) -> dict[str, int]:
        # Only active choices: an inactive one did not shape the network, so TPE must not
        # learn from its (canonical, arbitrary) value. Optuna handles conditional
        # parameters natively, like define-by-run trials.
        out = {}
        for label in self.space.active(arch):
            if label in self.choices and label in arch:
                index = _index_of(self.choices[label], arch[label])
                if index is not None:
                    out[label] = index
        return out

    def frozen_trial(self, record: TrialRecord, constraints: bool = False) -> FrozenTrial | None:
        params = self.params(record.arch)
        if not params:
            return None
        distributions = {label: self.distributions[label] for label in params}
        # With constraints on, Optuna ranks every finished trial by its violation first, so the
        # feasible ones must say 0.0 explicitly (a missing value counts as infeasible).
        attrs = {_CONSTRAINTS_KEY: [0.0]} if constraints else {}
        if record.state == INFEASIBLE and constraints:
            # A rejected proposal is told back as infeasible: its objective (if any) is moot,
            # Optuna puts it in the "bad" group by its violation. The size of the violation is
            # not in the record, so every rejection weighs the same.
            return create_trial(state=TrialState.COMPLETE, value=0.0, params=params,
                                distributions=distributions, system_attrs={_CONSTRAINTS_KEY: [1.0]})
        if record.scored:
            value = float(record.objective)
            if not math.isfinite(value):
                return None
            if record.state == PRUNED:
                # Optuna ranks pruned trials below completed ones by their last intermediate
                # value, which is how a stopped-early objective should count.
                return create_trial(state=TrialState.PRUNED, params=params, distributions=distributions,
                                    intermediate_values={0: value}, system_attrs=attrs)
            return create_trial(state=TrialState.COMPLETE, value=value, params=params,
                                distributions=distributions, system_attrs=attrs)
        if not record.finished:
            return create_trial(state=TrialState.RUNNING, params=params, distributions=distributions)
        return None  # failed / cancelled: nothing to learn from

    def study(self, records: list[TrialRecord], sampler_seed: int) -> optuna.Study:
        """A throw-away study holding `records` (history order): a function of the history only."""
        constraints = any(r.state == INFEASIBLE for r in records)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            # multivariate / group / constant_liar / constraints_func are experimental in Optuna.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=sampler_seed,
                n_startup_trials=self.n_startup_trials,
                multivariate=self.multivariate,
                # group=True lets multivariate TPE cope with conditional choices
                # (trials whose parameter sets differ).
                group=self.multivariate,
                constant_liar=self.constant_liar,
                constraints_func=_told_constraints if constraints else None,
            )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        trials = [self.frozen_trial(r, constraints) for r in records]
        study.add_trials([t for t in trials if t is not None])
        return study

    def propose(self, records: list[TrialRecord], n: int, sampler_seed: int, rng: np.random.Generator,
                seen: set[str], strategy: Strategy) -> list[tuple[Architecture, str]]:
        """n unseen architectures, each with how it was found: "" (TPE), "mutation" or "random".

        `records` are the trials TPE learns from (scored, pending, infeasible; history order).
        When TPE keeps proposing evaluated architectures it has converged on them, so the
        fallback is an unseen mutation of the one it keeps coming back to (still TPE's choice
        of region); a random architecture only when every nearby one is taken."""
        study = self.study(records, sampler_seed)
        known = {self.space.fingerprint(r.arch): float(r.objective) for r in records
                 if r.scored and math.isfinite(float(r.objective))}
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for _ in range(n):
                arch, repeated = self._ask_unseen(study, seen, known)
                if arch is not None:
                    out.append((arch, ""))
                    continue
                nearby = strategy.mutate_unseen(repeated, rng, seen)
                out.append((nearby, "mutation") if nearby is not None
                           else (strategy.fresh_sample(rng, seen), "random"))
        return out

    def _ask_unseen(self, study: optuna.Study, seen: set[str],
                    known: dict[str, float]) -> tuple[Architecture | None, Architecture]:
        """(an unseen proposal or None, the last proposal)."""
        for _ in range(_DUPLICATE_RETRIES):
            trial = study.ask(self.distributions)
            arch = self.space.canonical({label: self.choices[label][trial.params[label]]
                                         for label in self.choices})
            fingerprint = self.space.fingerprint(arch)
            if fingerprint not in seen:
                seen.add(fingerprint)
                # Left RUNNING on purpose: with constant_liar the next ask of this batch
                # steers away from it, so n parallel proposals spread out.
                return arch, arch
            # A duplicate is told the value it already has (the earlier trial's, not a new
            # measurement), so the retry is asked of a model that has seen the point again;
            # one of a pending or failed trial has no value, and a FAIL is ignored.
            if fingerprint in known:
                study.tell(trial, known[fingerprint])
            else:
                study.tell(trial, state=TrialState.FAIL)
        return None, arch


def _told_constraints(trial: FrozenTrial) -> list[float]:
    # Trials come from the history with their constraint values already set (system_attrs).
    return list(trial.system_attrs.get(_CONSTRAINTS_KEY, [0.0]))


@register_strategy("tpe")
class TPE(Strategy):
    """Tree-structured Parzen Estimator (Optuna's TPESampler) over the space's choices."""

    options = {
        "n_startup_trials": Option(int, 10, help="Random trials before TPE starts modelling.",
                                   min=0, max=10000),
        "multivariate": Option(bool, True, help="Model the choices jointly (captures interactions "
                                                "between choices) instead of independently."),
        "constant_liar": Option(bool, True, help="Treat pending trials as bad results so parallel "
                                                 "workers do not all get the same proposal."),
    }

    # Keeps the sampler's seed apart from the stream used for random fallbacks.
    _SAMPLER_SALT = 1

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        bridge = OptunaTPE(self.space, n_startup_trials=self.config["n_startup_trials"],
                           multivariate=self.config["multivariate"],
                           constant_liar=self.config["constant_liar"])
        sampler_seed = int(self.rng(history, self._SAMPLER_SALT).integers(2**31 - 1))
        learned = [r for r in history if r.scored or not r.finished or r.state == INFEASIBLE]
        proposals = bridge.propose(learned, n, sampler_seed, self.rng(history), self.seen(history), self)
        # A fallback says so in its meta, so a run can tell how often TPE repeated itself.
        return [Candidate(arch=arch, meta={"fallback": how} if how else {}) for arch, how in proposals]
