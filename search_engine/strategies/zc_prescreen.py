"""Zero-cost prescreening: score many sampled candidates with a proxy, propose only the top-k.

Round r samples a pool of `pool` distinct architectures from a generator seeded with
(seed, r), scores each with a zero-cost proxy on the task's data (search_engine.estimators
.zero_cost.prescreen: the same network initialisation and mini-batch whatever else is scored),
and proposes the `top_k` best-scoring ones not tried yet, best first, for the normal estimator
to train. When a round's top_k have been proposed (statically infeasible ones do not count, so
top_k are actually trained), round r + 1 starts with a fresh pool.

Why a strategy that is given the task: a strategy never evaluates candidates, but ranking a
pool needs data. The task is data, not state: `bind_task(task)` gives it to the strategy, and the
proposals stay a pure function of (config, seed, history, task), so a web worker rebuilds the
strategy from its row, binds the experiment's task and gets the same proposals. The round and
rank of each candidate travel in its meta ({"prescreen_round", "prescreen_rank", "proxy",
"proxy_score"}), which is how `ask` reads the history. Asking without a bound task raises
ConfigError rather than silently falling back to random search.

Scores are memoised per process (zero_cost._SCORE_MEMO), so rebuilding the strategy for every
web advance does not rescore a pool; scoring always runs on the CPU with one thread, so every
worker ranks a pool identically.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..estimators.zero_cost import PROXIES, prescreen, task_digest
from ..registry import ConfigError, Option, register_strategy
from ..spaces.base import SearchSpace
from ..task import Task
from ..types import INFEASIBLE, Architecture, Candidate, TrialRecord
from .base import Strategy

_POOL_SALT = 0x7A637073  # "zcps": pools do not depend on the history length, only on the round
_EMPTY_ROUNDS_BEFORE_GIVING_UP = 3


@register_strategy("zc_prescreen")
class ZeroCostPrescreen(Strategy):
    """Zero-cost prescreening: rank a random pool with a proxy, train only the top-k of each pool."""

    needs_task = True
    options = {
        "proxy": Option(str, "synflow", "zero-cost proxy that ranks each pool", choices=PROXIES),
        "pool": Option(int, 100, "architectures sampled and scored per round", min=1, max=100_000),
        "top_k": Option(int, 10, "best-scoring architectures of each pool proposed for training",
                        min=1, max=100_000),
        "batch_size": Option(int, 64, "proxy mini-batch size (naswot, grad_norm, snip)", min=2, max=4096),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        if self.config["top_k"] > self.config["pool"]:
            raise ConfigError("top_k", f"must be <= pool ({self.config['pool']}), got {self.config['top_k']}")
        self.task: Task | None = None
        self._digest: str | None = None

    def bind_task(self, task: Task) -> ZeroCostPrescreen:
        """Give the strategy the data its proxy scores candidates on (the experiment's task)."""
        if task is not self.task:
            self.task, self._digest = task, None
        return self

    # -- proposals -------------------------------------------------------------------------
    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        if self.task is None:
            raise ConfigError(
                "strategy",
                "zc_prescreen scores candidates on the task's data: call strategy.bind_task(task) "
                "before asking",
            )
        seen = self.seen(history)
        rounds = [((r.meta or {}).get("prescreen_round"), r.state) for r in history]
        current = max((r for r, _ in rounds if isinstance(r, int)), default=0)
        # Proposals that count against a round's top_k: everything but statically infeasible ones.
        used = Counter(r for r, state in rounds if isinstance(r, int) and state != INFEASIBLE)
        out: list[Candidate] = []
        empty_rounds = 0
        while len(out) < n and empty_rounds < _EMPTY_ROUNDS_BEFORE_GIVING_UP:
            if used[current] >= self.config["top_k"]:
                current += 1
                continue
            added = 0
            for rank, (arch, score) in enumerate(self.ranking(current)):
                if len(out) == n or used[current] >= self.config["top_k"]:
                    break
                fingerprint = self.space.fingerprint(arch)
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
                used[current] += 1
                added += 1
                out.append(Candidate(arch=dict(arch), meta={
                    "prescreen_round": current, "prescreen_rank": rank,
                    "proxy": self.config["proxy"], "proxy_score": score,
                }))  # fmt: skip
            if len(out) < n:
                # This round's pool has nothing unseen left: a small space is nearly exhausted.
                empty_rounds = 0 if added else empty_rounds + 1
                current += 1
        return out

    def pool(self, round_index: int) -> list[Architecture]:
        """The distinct architectures sampled for one round (independent of the history)."""
        rng = np.random.default_rng([self.seed, _POOL_SALT, round_index])
        archs: dict[str, Architecture] = {}
        for _ in range(self.config["pool"] * 10):
            if len(archs) == self.config["pool"]:
                break
            arch = self.space.sample(rng)
            archs.setdefault(self.space.fingerprint(arch), arch)
        return list(archs.values())

    def ranking(self, round_index: int) -> list[tuple[Architecture, float]]:
        """One round's pool, best proxy score first."""
        if self._digest is None:
            self._digest = task_digest(self.task)
        return prescreen(
            self.space, self.task, self.pool(round_index), proxy=self.config["proxy"],
            proxy_config=self._proxy_config(), seed=self.seed, digest=self._digest,
        )  # fmt: skip

    def _proxy_config(self) -> dict:
        # CPU with one thread whatever the worker has, so every worker ranks a pool identically.
        if self.config["proxy"] in ("synflow", "params"):
            return {"device": "cpu", "threads": 1} if self.config["proxy"] == "synflow" else {}
        return {"batch_size": self.config["batch_size"], "device": "cpu", "threads": 1}
