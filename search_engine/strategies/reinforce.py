"""REINFORCE over a factorised categorical policy (Williams 1992; the controller of Zoph & Le
2017 reduced to independent softmax distributions, one per choice label).

`ask()` must be a pure function of (config, seed, history), so the policy is never stored:
it is rebuilt by replaying the scored history in order, each record's architecture being
the action and its objective the reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import Option, register_strategy
from ..spaces.base import SearchSpace
from ..types import Architecture, Candidate, TrialRecord
from .base import Strategy


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


@dataclass
class Policy:
    logits: dict[str, np.ndarray]
    baseline: float | None = None
    updates: int = 0
    # Running mean/variance of rewards (Welford) for optional advantage standardisation.
    reward_count: int = 0
    reward_mean: float = 0.0
    reward_m2: float = 0.0

    def probabilities(self, label: str) -> np.ndarray:
        return _softmax(self.logits[label])

    def to_json(self) -> dict:
        return {
            "logits": {label: [float(x) for x in v] for label, v in self.logits.items()},
            "baseline": self.baseline,
            "updates": self.updates,
        }


@register_strategy("reinforce")
class Reinforce(Strategy):
    """Policy gradient (REINFORCE) on independent softmax distributions, one per choice."""

    options = {
        "learning_rate": Option(float, 0.1, help="Step size of the policy-gradient update on the "
                                                 "logits.", min=0.0, max=10.0),
        "baseline_decay": Option(float, 0.9, help="Exponential moving-average decay of the reward "
                                                  "baseline (higher = slower baseline).",
                                 min=0.0, max=1.0),
        "entropy_weight": Option(float, 0.0, help="Entropy bonus that keeps the policy exploring "
                                                  "(0 disables it).", min=0.0, max=10.0),
        "standardize": Option(bool, True, help="Divide advantages by the running standard deviation "
                                               "of rewards, so the learning rate does not depend on "
                                               "the objective's scale."),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        self._last_policy: Policy | None = None

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        policy = self.replay(history)
        self._last_policy = policy
        rng = self.rng(history)
        seen = self.seen(history)
        out = []
        for _ in range(n):
            arch = self._sample_unseen(policy, rng, seen)
            out.append(Candidate(arch=arch))
        return out

    def replay(self, history: list[TrialRecord]) -> Policy:
        """The policy after learning from every scored record of `history`, in order."""
        choices = self.space.choices()
        policy = Policy(logits={label: np.zeros(len(values)) for label, values in choices.items()})
        for record in history:
            if record.scored:
                self._update(policy, record, choices)
        return policy

    def _update(self, policy: Policy, record: TrialRecord, choices: dict[str, list]) -> None:
        reward = float(record.objective)
        if not math.isfinite(reward):
            return
        policy.reward_count += 1
        delta = reward - policy.reward_mean
        policy.reward_mean += delta / policy.reward_count
        policy.reward_m2 += delta * (reward - policy.reward_mean)

        # The baseline starts at the first reward rather than 0: objectives such as accuracy
        # sit far from 0, and a zero baseline would reinforce whatever came first.
        if policy.baseline is None:
            policy.baseline = reward
        advantage = reward - policy.baseline
        decay = self.config["baseline_decay"]
        policy.baseline = decay * policy.baseline + (1.0 - decay) * reward

        if self.config["standardize"]:
            std = math.sqrt(policy.reward_m2 / policy.reward_count)
            advantage = advantage / std if std > 1e-12 else 0.0

        lr = self.config["learning_rate"]
        entropy_weight = self.config["entropy_weight"]
        # Inactive choices did not influence the network (an MLP's width_3 at depth 2), so
        # their value carries no credit and they get no gradient.
        for label in self.space.active(record.arch):
            values = choices[label]
            try:
                index = values.index(record.arch[label])
            except (KeyError, ValueError):
                continue  # an architecture from an older version of the space
            probs = policy.probabilities(label)
            grad = -probs
            grad[index] += 1.0  # d log pi(a) / d logits
            step = advantage * grad
            if entropy_weight:
                log_probs = np.log(np.clip(probs, 1e-12, None))
                entropy = -float(np.sum(probs * log_probs))
                step = step + entropy_weight * (-probs * (log_probs + entropy))  # dH / d logits
            policy.logits[label] = policy.logits[label] + lr * step
        policy.updates += 1

    def _sample(self, policy: Policy, rng: np.random.Generator) -> Architecture:
        arch = {}
        for label, values in self.space.choices().items():
            index = int(rng.choice(len(values), p=policy.probabilities(label)))
            arch[label] = values[index]
        return self.space.canonical(arch)

    def _sample_unseen(self, policy: Policy, rng: np.random.Generator, seen: set[str]) -> Architecture:
        for _ in range(self.max_resample):
            arch = self._sample(policy, rng)
            fingerprint = self.space.fingerprint(arch)
            if fingerprint not in seen:
                seen.add(fingerprint)
                return arch
        # A converged policy keeps proposing what it already knows; explore instead.
        return self.fresh_sample(rng, seen)

    def state_dict(self) -> dict:
        # The policy is for inspection only: from_state_dict rebuilds it by replaying history.
        state = super().state_dict()
        if self._last_policy is not None:
            state["policy"] = self._last_policy.to_json()
        return state
