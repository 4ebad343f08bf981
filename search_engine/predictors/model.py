"""A performance predictor: a random forest over architecture features, with the trees' spread
as its uncertainty (as in SMAC), refit on the scored trials of a history.

The forest is bagged scikit-learn regression trees (bootstrap rows, `max_features` of the
columns per split: what RandomForestRegressor does) built directly, because the forest's
per-tree bookkeeping (cloning, parameter validation) costs ~2 ms a tree, several times the
fit itself on a few dozen trials, and a strategy refits at every ask.

    predictor = Predictor(space, task, proxies=["synflow", "params"], seed=0)
    predictor.fit(history)                       # scored trials only (completed or pruned)
    mean, std = predictor.predict(archs)         # one value per architecture
    predictor.held_out_rank_correlation(history) # RankCorrelation(spearman, kendall, n)

Proxies are features rather than rankings on their own: the forest learns how much each one (and
each choice of the encoding) matters from the trials already trained, which is where proxies
that rank weakly alone still help (NAS-Bench-Suite-Zero). Everything is deterministic for a
seed: the forest's random_state comes from it and it runs single-threaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn import config_context
from sklearn.tree import DecisionTreeRegressor

from ..runtime import derive_seed
from ..spaces.base import SearchSpace
from ..task import Task
from ..types import Architecture, TrialRecord
from .features import ArchFeatures

MIN_POINTS = 2
"""Scored trials needed before the forest is fitted (one point has no spread to learn from)."""


@dataclass(frozen=True)
class RankCorrelation:
    """Out-of-fold agreement of the predictor with the measured objectives (None when undefined)."""

    spearman: float | None
    kendall: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def rank_correlation(predicted: Sequence[float], measured: Sequence[float]) -> RankCorrelation:
    """Spearman's rho and Kendall's tau of two sequences (None for fewer than 3 or a constant one)."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    n = len(measured)
    if n < 3 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return RankCorrelation(None, None, n)
    return RankCorrelation(_finite_or_none(spearmanr(predicted, measured).statistic),
                           _finite_or_none(kendalltau(predicted, measured).statistic), n)


def scored_points(history: Sequence[TrialRecord]) -> tuple[list[Architecture], np.ndarray]:
    """Architectures and objectives of the scored trials (failed, infeasible, pending left out)."""
    records = [r for r in history if r.scored]
    return [r.arch for r in records], np.array([float(r.objective) for r in records])


class Predictor:
    """Random forest on encoding + proxy features; `predict` gives the trees' mean and spread."""

    def __init__(self, space: SearchSpace, task: Task | None = None, proxies: Sequence[str] = (),
                 seed: int = 0, n_estimators: int = 50, features: ArchFeatures | None = None,
                 max_features: float = 0.5):
        self.space = space
        self.features = features or ArchFeatures(space, task, proxies)
        self.seed = int(seed)
        self.n_estimators = int(n_estimators)
        self.max_features = float(max_features)
        self.forest: list[DecisionTreeRegressor] | None = None
        self._constant: float = 0.0
        self._spread: float = 1.0

    def _grow(self, X: np.ndarray, y: np.ndarray, salt: int) -> list[DecisionTreeRegressor]:
        rng = np.random.default_rng(derive_seed(self.seed, "predictor-forest", salt))
        X = np.ascontiguousarray(X, dtype=np.float32)  # the trees' own dtype: no copy per tree
        trees = []
        with config_context(skip_parameter_validation=True, assume_finite=True):
            for _ in range(self.n_estimators):
                rows = rng.integers(len(y), size=len(y))
                tree = DecisionTreeRegressor(max_features=self.max_features,
                                             random_state=int(rng.integers(2**31)))
                trees.append(tree.fit(X[rows], y[rows], check_input=False))
        return trees

    def fit(self, history: Sequence[TrialRecord]) -> Predictor:
        """Refit on every scored trial of `history`."""
        archs, y = scored_points(history)
        return self.fit_archs(archs, y)

    def fit_archs(self, archs: Sequence[Architecture], y: Sequence[float], salt: int = 0) -> Predictor:
        y = np.asarray(y, dtype=np.float64)
        self._constant = float(y.mean()) if len(y) else 0.0
        # Before there is anything to learn the prediction is the mean with a wide spread.
        self._spread = float(y.std()) if len(y) > 1 and y.std() > 0 else 1.0
        if len(y) < MIN_POINTS:
            self.forest = None
            return self
        self.forest = self._grow(self.features.matrix(archs), y, salt)
        return self

    @property
    def fitted(self) -> bool:
        return self.forest is not None

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per architecture: the mean and spread of the trees' predictions."""
        if not archs:
            return np.zeros(0), np.zeros(0)
        if self.forest is None:
            return np.full(len(archs), self._constant), np.full(len(archs), self._spread)
        X = np.ascontiguousarray(self.features.matrix(archs), dtype=np.float32)
        with config_context(skip_parameter_validation=True, assume_finite=True):
            per_tree = np.stack([tree.predict(X, check_input=False) for tree in self.forest])
        return per_tree.mean(axis=0), per_tree.std(axis=0)

    def out_of_fold(self, history: Sequence[TrialRecord], folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, measured) for every scored trial, each predicted by a forest that never saw
        it (k-fold with a seeded shuffle; leave-one-out when there are fewer trials than folds)."""
        archs, y = scored_points(history)
        n = len(y)
        predicted = np.full(n, np.nan)
        if n < MIN_POINTS + 1:
            return predicted, y
        order = np.random.default_rng([self.seed, n, 0x6B666F6C]).permutation(n)
        for k, held in enumerate(np.array_split(order, min(folds, n))):
            train = np.setdiff1d(order, held)
            fold = Predictor(self.space, seed=self.seed, n_estimators=self.n_estimators,
                             features=self.features, max_features=self.max_features)
            fold.fit_archs([archs[i] for i in train], y[train], salt=k + 1)
            predicted[held] = fold.predict([archs[i] for i in held])[0]
        return predicted, y

    def held_out_rank_correlation(self, history: Sequence[TrialRecord], folds: int = 5) -> RankCorrelation:
        """Spearman and Kendall of out-of-fold predictions against the measured objectives."""
        predicted, measured = self.out_of_fold(history, folds)
        if np.isnan(predicted).any():
            return RankCorrelation(None, None, len(measured))
        return rank_correlation(predicted, measured)
