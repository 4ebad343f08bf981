"""Features of an architecture for a performance predictor: its encoding plus cheap scores.

A row is `space.encode(arch)` followed by one column per proxy (`synflow`, `naswot`, `grad_norm`,
`snip`, `params` from estimators.zero_cost, plus `flops`), each on a signed log scale because
synflow and params span many orders of magnitude. Proxies need the task's data (or at least its
input shape): without a bound task, or with no proxies asked for, the row is the encoding alone,
which is what a lookup-table estimator (no network built) can offer.

A proxy score is a feature of the architecture, not of the search: the network is built with
weights seeded by the architecture's fingerprint only, on the CPU with one thread, so every
worker and every search seed computes the same value. That makes scores safe to cache per
fingerprint in the instance and, across instances, per (task data, space, proxy, fingerprint) in
a bounded process memo, so a strategy rebuilt for every web advance does not rescore its pool.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..constraints import count_flops
from ..estimators.zero_cost import INVALID_SCORE, PROXIES, make_proxy, select_batches, task_digest
from ..registry import ConfigError
from ..runtime import derive_seed, seeded
from ..spaces.base import SearchSpace
from ..task import Task
from ..types import Architecture

FEATURE_PROXIES = (*PROXIES, "flops")
"""Cheap scores a predictor can use as features (every zero-cost proxy, plus the FLOP count)."""

_MEMO: dict[tuple, float] = {}
_MEMO_LIMIT = 500_000


def signed_log(value: float) -> float:
    """log1p on |value| with its sign: keeps the order, tames scores spanning 1e2..1e30."""
    if not math.isfinite(value):
        return 0.0
    return math.copysign(math.log1p(abs(value)), value)


def check_proxies(proxies: Sequence[str]) -> list[str]:
    unknown = [p for p in proxies if p not in FEATURE_PROXIES]
    if unknown:
        raise ConfigError("proxies", f"{unknown[0]!r} is not one of {', '.join(FEATURE_PROXIES)}")
    return list(dict.fromkeys(proxies))  # order kept, duplicates dropped


class ArchFeatures:
    """Feature rows for architectures of one space (and one task, when proxies are used)."""

    def __init__(self, space: SearchSpace, task: Task | None = None, proxies: Sequence[str] = (),
                 batch_size: int = 64):
        self.space = space
        self.task = task
        # Proxies build a network on the task: without one the encoding is all there is.
        self.proxies = check_proxies(proxies) if task is not None else check_proxies(proxies)[:0]
        self.batch_size = int(batch_size)
        self._estimators = {p: make_proxy(p, self._proxy_config(p)) for p in self.proxies
                            if p not in ("flops", "params")}
        self._digest: str | None = None
        self._rows: dict[str, np.ndarray] = {}
        self._scores: dict[str, np.ndarray] = {}

    @property
    def uses_proxies(self) -> bool:
        return bool(self.proxies)

    def _proxy_config(self, proxy: str) -> dict:
        # CPU with one thread whatever the worker has, so every worker computes the same score.
        if proxy == "params":
            return {}
        if proxy == "synflow":
            return {"device": "cpu", "threads": 1}
        return {"batch_size": self.batch_size, "device": "cpu", "threads": 1}

    def scores(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Raw proxy scores, shape (len(archs), len(proxies)); higher is better for each."""
        out = np.zeros((len(archs), len(self.proxies)), dtype=np.float64)
        if not self.proxies:
            return out
        for i, arch in enumerate(archs):
            fingerprint = self.space.fingerprint(arch)
            cached = self._scores.get(fingerprint)
            if cached is None:
                cached = self._scores[fingerprint] = self._score(arch, fingerprint)
            out[i] = cached
        return out

    def matrix(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Feature rows, shape (len(archs), encoding length + len(proxies))."""
        rows = []
        scores = self.scores(archs) if self.proxies else None
        for i, arch in enumerate(archs):
            fingerprint = self.space.fingerprint(arch)
            row = self._rows.get(fingerprint)
            if row is None:
                encoded = self.space.encode(arch).astype(np.float64)
                extra = [signed_log(v) for v in scores[i]] if scores is not None else []
                row = self._rows[fingerprint] = np.concatenate([encoded, np.asarray(extra, dtype=np.float64)])
            rows.append(row)
        if rows:
            return np.vstack(rows)
        return np.zeros((0, len(self.space.encode(self.space.sample(np.random.default_rng(0)))) + len(self.proxies)))

    def _score(self, arch: Architecture, fingerprint: str) -> np.ndarray:
        if self._digest is None:
            self._digest = task_digest(self.task)
        base = (self._digest, self.space.name, json.dumps(self.space.config, sort_keys=True), fingerprint)
        keys = [(*base, p, json.dumps(self._proxy_config(p), sort_keys=True)) for p in self.proxies]
        if all(k in _MEMO for k in keys):
            return np.array([_MEMO[k] for k in keys])
        seed = derive_seed(fingerprint, "predictor-features")
        values = [self._one_score(arch, proxy, seed) for proxy in self.proxies]
        if len(_MEMO) + len(keys) > _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO.update(zip(keys, values))
        return np.array(values, dtype=np.float64)

    def _one_score(self, arch: Architecture, proxy: str, seed: int) -> float:
        # A fresh network per proxy instead of the estimator's deep copy of a shared one: building
        # costs less than copying, and each proxy may rewrite the weights it is given.
        with seeded(seed, 1):
            model = self.space.build(arch, self.task)
            if proxy == "flops":
                return float(count_flops(model, self.task))
            if proxy == "params":
                return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
            estimator = self._estimators[proxy]
            batches = []
            if estimator.uses_data:
                config = estimator.config
                batches = select_batches(self.task, config["batch_size"], config["n_batches"], config["batch_seed"])
            score = float(estimator.score(model, self.task, batches, torch.device("cpu"))[0])
        return score if math.isfinite(score) else INVALID_SCORE
