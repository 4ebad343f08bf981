"""Predictor-guided search: a zero-cost warm start, then an acquisition over a learnt predictor.

Warm start (Abdelfattah et al. 2021): a pool of `pool_size` distinct architectures, sampled from
a generator seeded with the seed alone (so it is the same at every ask), is scored with the cheap
proxies, ranked by their mean rank over the proxies; of the first `n_init` proposals, a share
`init_top_fraction` is the top of that ranking and the rest is spread evenly over it, so that the
predictor sees the proxies' whole range (and learns their direction: a proxy can rank backwards).
Without proxies (an empty list, or no task bound: a lookup-table estimator builds no network)
there is nothing to rank by and the pool's order is random.

Then, as in BANANAS (White et al. 2021): each ask fits the predictor (search_engine.predictors:
a random forest over encoding + proxy features) on the scored trials and ranks a candidate set by
expected improvement or an upper confidence bound with the trees' spread. The candidates are
`mutations_per_parent` one- and two-step mutations of each of the `n_parents` best trials, plus
`n_random` fresh samples, plus the unseen rest of the warm-start pool (already scored, so free).
Nothing already in the history, pending trials included, is proposed again, nor anything twice in
one ask.

Pure ask/tell: the proposals are a function of (config, seed, history, task). Randomness comes
from generators seeded with (seed, len(history), a salt of this strategy), the forest's from the
seed, and proxy scores are a function of the architecture (search_engine.predictors.features), so
a strategy rebuilt from its state dict proposes the same candidates. Each proposal's meta says
how it was chosen: {"phase": "warm", "pool_rank", "proxy_scores"} or {"phase": "predictor",
"predicted", "predicted_std", "acquisition"}, which is what a page can show next to the measured
score.

Cost: the pool is scored once per search (and memoised per process); about 22 ms per nb201 cell
(C=16) and 6 ms per MLP on a CPU core for synflow + params, so the default pool of 200 takes
1-5 s and a pool of 2,000 takes 12-45 s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from ..predictors import ACQUISITIONS, FEATURE_PROXIES, ArchFeatures, Predictor, RankCorrelation, acquire
from ..predictors.features import check_proxies
from ..predictors.model import MIN_POINTS
from ..registry import Option, register_strategy
from ..spaces.base import SearchSpace
from ..task import Task
from ..types import Architecture, Candidate, TrialRecord
from .base import Strategy

_POOL_SALT = 0x706F6F6C  # "pool": the warm-start pool depends on the seed only, not on the history
_ASK_SALT = 0x70726564  # "pred"


@register_strategy("predictor")
class PredictorGuided(Strategy):
    """Predictor-guided search: zero-cost warm start, then expected improvement over a random forest."""

    options = {
        # No `choices=` here: the web form would render checkboxes, whose posted form the pages'
        # tests do not build yet; __init__ checks the names instead (ConfigError on "proxies").
        "proxies": Option(list, ["synflow", "params"], "cheap scores used as predictor features and to "
                          f"rank the warm-start pool, any of {', '.join(FEATURE_PROXIES)} "
                          "(empty: the encoding alone)"),
        "pool_size": Option(int, 100, "architectures sampled and proxy-scored for the warm start",
                            min=1, max=100_000),
        "n_init": Option(int, 8, "first proposals taken from the proxy-ranked pool", min=0, max=100_000),
        "init_top_fraction": Option(float, 0.5, "of those, the share taken from the top of the ranking; "
                                    "the rest is spread evenly over the ranking", min=0.0, max=1.0),
        "acquisition": Option(str, "ei", "expected improvement or upper confidence bound", choices=ACQUISITIONS),
        "kappa": Option(float, 1.0, "ucb: weight of the predictor's spread", min=0.0, max=100.0),
        "xi": Option(float, 0.01, "ei: improvement required, in units of the objectives' spread",
                     min=0.0, max=10.0),
        "n_parents": Option(int, 3, "best trials mutated into candidates at each ask", min=1, max=1000),
        "mutations_per_parent": Option(int, 6, "mutations of each parent per ask", min=0, max=10_000),
        "n_random": Option(int, 5, "random samples added to the candidates at each ask", min=0, max=100_000),
        "n_estimators": Option(int, 50, "trees of the predictor's random forest", min=2, max=2000),
        "batch_size": Option(int, 64, "mini-batch of the data proxies (naswot, grad_norm, snip)",
                             min=2, max=4096),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        self.config["proxies"] = check_proxies(self.config["proxies"])
        self.task: Task | None = None
        self.features = self._make_features()
        self._ranking: list[tuple[Architecture, dict]] | None = None

    def _make_features(self) -> ArchFeatures:
        return ArchFeatures(self.space, self.task, self.config["proxies"], self.config["batch_size"])

    def bind_task(self, task: Task) -> PredictorGuided:
        """Proxies score candidates on the task; without one the encoding alone is used."""
        if task is not self.task:
            self.task = task
            self.features = self._make_features()
            self._ranking = None
        return self

    def predictor(self) -> Predictor:
        return Predictor(self.space, seed=self.seed, n_estimators=self.config["n_estimators"],
                         features=self.features)

    def rank_correlation(self, history: list[TrialRecord], folds: int = 5) -> RankCorrelation:
        """The predictor's held-out Spearman / Kendall on the scored trials so far."""
        return self.predictor().held_out_rank_correlation(history, folds)

    # -- proposals -------------------------------------------------------------------------
    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        rng = self.rng(history, _ASK_SALT)
        seen = self.seen(history)
        scored = sum(r.scored for r in history)
        # Until two trials are scored there is nothing to learn: keep walking the proxy ranking.
        warm = n if scored < MIN_POINTS else min(n, max(0, self.config["n_init"] - len(history)))
        out = self._warm_start(seen, warm, rng)
        if len(out) < n:
            out += self._acquire(history, seen, n - len(out), rng)
        return out

    def pool(self) -> list[Architecture]:
        """The warm-start pool: distinct architectures, independent of the history."""
        rng = np.random.default_rng([self.seed, _POOL_SALT])
        archs: dict[str, Architecture] = {}
        for _ in range(self.config["pool_size"] * 10):
            if len(archs) == self.config["pool_size"]:
                break
            arch = self.space.sample(rng)
            archs.setdefault(self.space.fingerprint(arch), arch)
        return list(archs.values())

    def ranking(self) -> list[tuple[Architecture, dict]]:
        """The pool best first by mean rank over the proxies (pool order without proxies), each
        with its raw scores; ties keep the pool order."""
        if self._ranking is None:
            pool = self.pool()
            scores = self.features.scores(pool)
            order = np.arange(len(pool))
            if self.features.uses_proxies:
                # Mean rank rather than mean score: the proxies' scales differ by many orders.
                ranks = np.mean([rankdata(scores[:, j]) for j in range(scores.shape[1])], axis=0)
                order = np.lexsort((order, -ranks))
            names = self.features.proxies
            self._ranking = [(pool[i], dict(zip(names, map(float, scores[i])))) for i in order]
        return self._ranking

    def warm_order(self) -> list[int]:
        """Ranks of the pool in warm-start order: the top `init_top_fraction` of n_init interleaved
        with ranks spread evenly over the rest, then the remaining ranks best first.

        Why not only the top: a proxy can rank backwards on a task (on digits with MLPs, synflow and
        params correlate negatively with 2-epoch accuracy), and trials that all share high proxy
        scores leave the predictor no spread to learn the proxies' direction from."""
        size, n_init = len(self.ranking()), min(self.config["n_init"], len(self.ranking()))
        top = int(np.ceil(n_init * self.config["init_top_fraction"]))
        spread = [int(r) for r in np.linspace(top, size - 1, n_init - top)] if n_init > top else []
        head: list[int] = []
        for i in range(max(top, len(spread))):
            head += [i] if i < top else []
            head += [spread[i]] if i < len(spread) else []
        head = list(dict.fromkeys(head))
        chosen = set(head)
        return head + [r for r in range(size) if r not in chosen]

    def _warm_start(self, seen: set[str], n: int, rng: np.random.Generator) -> list[Candidate]:
        out: list[Candidate] = []
        if n <= 0:
            return out
        ranking = self.ranking()
        for rank in self.warm_order():
            arch, scores = ranking[rank]
            if len(out) == n:
                break
            fingerprint = self.space.fingerprint(arch)
            if fingerprint not in seen:
                seen.add(fingerprint)
                out.append(Candidate(arch=dict(arch), meta={"phase": "warm", "pool_rank": rank,
                                                             "proxy_scores": scores}))
        while len(out) < n:  # the pool is used up: a small space
            out.append(Candidate(arch=self.fresh_sample(rng, seen), meta={"phase": "warm"}))
        return out

    def candidates(self, history: list[TrialRecord], seen: set[str], rng: np.random.Generator) -> list[Architecture]:
        """Mutations of the best trials, random samples and the unseen pool, without repeats."""
        found: dict[str, Architecture] = {}

        def add(arch: Architecture) -> None:
            fingerprint = self.space.fingerprint(arch)
            if fingerprint not in seen:
                found.setdefault(fingerprint, arch)

        parents = sorted((r for r in history if r.scored), key=lambda r: (-r.objective, r.number))
        for parent in parents[: self.config["n_parents"]]:
            for j in range(self.config["mutations_per_parent"]):
                child = self.space.mutate(parent.arch, rng)
                if j % 2:  # every other child takes a second step, to look past the neighbourhood
                    child = self.space.mutate(child, rng)
                add(child)
        for _ in range(self.config["n_random"]):
            add(self.space.sample(rng))
        for arch, _ in self.ranking():
            add(arch)
        return list(found.values())

    def _acquire(self, history: list[TrialRecord], seen: set[str], n: int,
                 rng: np.random.Generator) -> list[Candidate]:
        pool = self.candidates(history, seen, rng)
        predictor = self.predictor().fit(history)
        mean, std = predictor.predict(pool)
        objectives = np.array([r.objective for r in history if r.scored], dtype=np.float64)
        scale = float(objectives.std()) if len(objectives) > 1 and objectives.std() > 0 else 1.0
        value = acquire(self.config["acquisition"], mean, std, float(objectives.max()),
                        kappa=self.config["kappa"], xi=self.config["xi"], scale=scale)
        out: list[Candidate] = []
        for i in np.lexsort((np.arange(len(pool)), -value))[:n]:
            seen.add(self.space.fingerprint(pool[i]))
            out.append(Candidate(arch=dict(pool[i]), meta={
                "phase": "predictor", "predicted": float(mean[i]), "predicted_std": float(std[i]),
                "acquisition": float(value[i]),
            }))  # fmt: skip
        while len(out) < n:  # every candidate was seen: a nearly exhausted space
            out.append(Candidate(arch=self.fresh_sample(rng, seen), meta={"phase": "random"}))
        return out

