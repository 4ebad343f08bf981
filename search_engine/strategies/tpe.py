"""Tree-structured Parzen Estimator through Optuna's TPESampler, in ask/tell mode.

TPE itself is Optuna's; this module only translates. Every `ask()` builds a throw-away
in-memory study from the history (scored trials as COMPLETE/PRUNED, pending ones as
RUNNING), asks it with fixed categorical distributions and reads the parameters back.
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
from ..types import PRUNED, Architecture, Candidate, TrialRecord
from .base import Strategy

# Retries of study.ask() when TPE proposes an architecture already in the history, before
# falling back to a random unseen one (a converged TPE on a small space repeats itself).
_DUPLICATE_RETRIES = 20


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

    def frozen_trial(self, record: TrialRecord) -> FrozenTrial | None:
        params = self.params(record.arch)
        if not params:
            return None
        distributions = {label: self.distributions[label] for label in params}
        if record.scored:
            value = float(record.objective)
            if not math.isfinite(value):
                return None
            if record.state == PRUNED:
                # Optuna ranks pruned trials below completed ones by their last intermediate
                # value, which is how a stopped-early objective should count.
                return create_trial(state=TrialState.PRUNED, params=params, distributions=distributions,
                                    intermediate_values={0: value})
            return create_trial(state=TrialState.COMPLETE, value=value, params=params,
                                distributions=distributions)
        if not record.finished:
            return create_trial(state=TrialState.RUNNING, params=params, distributions=distributions)
        return None  # failed / infeasible / cancelled: TPE ignores those anyway

    def propose(self, scored: list[TrialRecord], pending: list[TrialRecord], n: int, sampler_seed: int,
                rng: np.random.Generator, seen: set[str], fresh_sample) -> list[Architecture]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            # multivariate / group / constant_liar are flagged experimental by Optuna.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=sampler_seed,
                n_startup_trials=self.n_startup_trials,
                multivariate=self.multivariate,
                # group=True lets multivariate TPE cope with conditional choices
                # (trials whose parameter sets differ).
                group=self.multivariate,
                constant_liar=self.constant_liar,
            )
            study = optuna.create_study(direction="maximize", sampler=sampler)
            trials = [t for t in map(self.frozen_trial, [*scored, *pending]) if t is not None]
            study.add_trials(trials)
            out = []
            for _ in range(n):
                out.append(self._ask_unseen(study, seen) or fresh_sample(rng, seen))
            return out

    def _ask_unseen(self, study: optuna.Study, seen: set[str]) -> Architecture | None:
        for _ in range(_DUPLICATE_RETRIES):
            trial = study.ask(self.distributions)
            arch = self.space.canonical({label: self.choices[label][trial.params[label]]
                                         for label in self.choices})
            fingerprint = self.space.fingerprint(arch)
            if fingerprint not in seen:
                seen.add(fingerprint)
                # Left RUNNING on purpose: with constant_liar the next ask of this batch
                # steers away from it, so n parallel proposals spread out.
                return arch
            study.tell(trial, state=TrialState.FAIL)
        return None


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
        scored = [r for r in history if r.scored]
        pending = [r for r in history if not r.finished]
        archs = bridge.propose(scored, pending, n, sampler_seed, self.rng(history), self.seen(history),
                               self.fresh_sample)
        return [Candidate(arch=arch) for arch in archs]
