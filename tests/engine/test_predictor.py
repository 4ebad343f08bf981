"""The performance predictor (search_engine.predictors) and the `predictor` strategy. No training:
objectives are synthetic functions of the encoding; proxies run on tiny MLPs for iris."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

from search_engine import (
    STRATEGIES,
    ConfigError,
    TrialRecord,
    count_params,
    create_space,
    create_strategy,
    load_builtin,
)
from search_engine.predictors import (
    ArchFeatures,
    Predictor,
    expected_improvement,
    rank_correlation,
    upper_confidence_bound,
)
from search_engine.types import COMPLETED, FAILED, QUEUED

FAST = {"n_estimators": 20}


@cache
def iris():
    return load_builtin("iris")


def additive(space, seed: int = 3):
    """A fixed random linear function of the one-hot encoding (plus a small interaction)."""
    dim = len(space.encode(space.sample(np.random.default_rng(0))))
    weights = np.random.default_rng([seed, dim]).normal(size=dim)

    def objective(arch) -> float:
        x = space.encode(arch).astype(np.float64)
        return float(weights @ x + 0.3 * x[0] * x[-1])

    return objective


def scored_history(space, objective, n: int, seed: int = 0) -> list[TrialRecord]:
    rng = np.random.default_rng(seed)
    archs = {space.fingerprint(a): a for a in (space.sample(rng) for _ in range(n * 3))}
    return [TrialRecord(number=i, arch=a, state=COMPLETED, objective=objective(a))
            for i, a in enumerate(list(archs.values())[:n])]


# -- the predictor ---------------------------------------------------------------------------


def test_it_predicts_a_mean_and_a_spread_per_architecture():
    space = create_space("nb201")
    history = scored_history(space, additive(space), 20)
    history.append(TrialRecord(number=20, arch=space.sample(np.random.default_rng(9)), state=FAILED))
    archs = [space.sample(np.random.default_rng(s)) for s in range(100, 107)]

    mean, std = Predictor(space, seed=0).fit(history).predict(archs)

    assert mean.shape == std.shape == (7,)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    assert Predictor(space).predict([])[0].shape == (0,)


def test_it_is_uncertain_where_data_is_sparse():
    space = create_space("nb201")
    history = scored_history(space, additive(space), 8)
    unseen = [space.sample(np.random.default_rng(s)) for s in range(200, 210)]

    _, std = Predictor(space, seed=0).fit(history).predict(unseen)
    _, unfitted_std = Predictor(space, seed=0).fit(history[:1]).predict(unseen)

    assert np.all(std > 0)
    assert np.all(unfitted_std > 0)  # one point: the prior, wide


def test_it_is_deterministic_for_a_seed():
    space = create_space("nb201")
    history = scored_history(space, additive(space), 15)
    archs = [space.sample(np.random.default_rng(s)) for s in range(300, 320)]

    first = Predictor(space, seed=4).fit(history).predict(archs)
    again = Predictor(space, seed=4).fit(history).predict(archs)
    other = Predictor(space, seed=5).fit(history).predict(archs)

    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_it_ranks_held_out_trials_of_a_synthetic_objective():
    space = create_space("nb201")
    history = scored_history(space, additive(space), 60)

    quality = Predictor(space, seed=0).held_out_rank_correlation(history)

    assert quality.n == 60
    assert quality.spearman > 0.7 and quality.kendall > 0.5
    assert Predictor(space).held_out_rank_correlation(history[:2]).spearman is None
    assert rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]).spearman == pytest.approx(0.8)


def test_it_adds_proxy_scores_to_the_encoding_and_caches_them_per_architecture():
    space = create_space("mlp", max_depth=2)
    archs = [space.sample(np.random.default_rng(s)) for s in range(4)]
    built = []
    original = space.build
    space.build = lambda arch, task: built.append(1) or original(arch, task)
    features = ArchFeatures(space, iris(), ["params", "synflow"])

    matrix = features.matrix(archs)
    calls = len(built)
    again = features.matrix(list(reversed(archs)))

    dim = len(space.encode(archs[0]))
    assert matrix.shape == (4, dim + 2)
    assert np.array_equal(again, matrix[::-1])
    assert len(built) == calls, "a second look at the same architectures must not rebuild them"
    params = [count_params(original(a, iris())) for a in archs]
    assert features.scores(archs)[:, 0].tolist() == params
    assert ArchFeatures(space, None, ["params"]).matrix(archs).shape == (4, dim)  # no task: encoding only


def test_it_rejects_an_unknown_proxy():
    with pytest.raises(ConfigError) as excinfo:
        create_strategy("predictor", create_space("mlp"), proxies=["params", "magic"])
    assert excinfo.value.field == "proxies"


def test_it_computes_expected_improvement_and_ucb():
    mean, std = np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0, 0.0])

    ei = expected_improvement(mean, std, best=1.5)

    assert np.all(ei >= 0)
    assert ei[1] > ei[0] and ei[2] == 0.0 and ei[3] == pytest.approx(0.5)
    assert upper_confidence_bound(mean, std, kappa=2.0).tolist() == [2.0, 3.0, 1.0, 2.0]


# -- the strategy ----------------------------------------------------------------------------


def run(strategy, space, objective, trials: int, parallel: int = 1) -> list[TrialRecord]:
    history: list[TrialRecord] = []
    while len(history) < trials:
        for candidate in strategy.ask(history, n=min(parallel, trials - len(history))):
            history.append(TrialRecord(number=len(history), arch=candidate.arch, state=COMPLETED,
                                       objective=objective(candidate.arch), meta=candidate.meta))
    return history


def test_it_never_proposes_an_architecture_twice():
    space = create_space("mlp", max_depth=1)  # 320 networks: repeats would show up quickly
    strategy = create_strategy("predictor", space, seed=1, proxies=[], n_init=5, **FAST)

    history = run(strategy, space, additive(space), trials=60, parallel=4)
    history.append(TrialRecord(number=60, arch=space.sample(np.random.default_rng(0)), state=QUEUED))
    more = strategy.ask(history, n=6)

    fingerprints = [space.fingerprint(r.arch) for r in history]
    assert len(set(fingerprints)) == len(fingerprints)
    assert not {space.fingerprint(c.arch) for c in more} & set(fingerprints)
    assert len({space.fingerprint(c.arch) for c in more}) == 6
    assert {r.meta["phase"] for r in history[:60]} == {"warm", "predictor"}


def test_it_rebuilds_the_same_proposals_from_config_seed_and_history():
    space = create_space("mlp", max_depth=2)
    strategy = create_strategy("predictor", space, seed=2, proxies=["params"], n_init=4, **FAST).bind_task(iris())
    history = run(strategy, space, additive(space), trials=12, parallel=2)

    state = json.loads(json.dumps(strategy.state_dict()))
    rebuilt = STRATEGIES.get(state["name"]).from_state_dict(space, state).bind_task(iris())
    proposals = [c.to_dict() for c in strategy.ask(history, n=3)]

    assert proposals == [c.to_dict() for c in rebuilt.ask(history, n=3)]
    assert proposals == [c.to_dict() for c in strategy.ask(history, n=3)]
    assert all(c["meta"]["phase"] == "predictor" and c["meta"]["predicted_std"] >= 0 for c in proposals)
    assert strategy.rank_correlation(history).n == 12


def test_it_starts_with_the_pools_best_by_proxy():
    space = create_space("mlp", max_depth=2)
    strategy = create_strategy("predictor", space, seed=0, proxies=["params"], pool_size=60, n_init=5,
                               init_top_fraction=1.0, **FAST).bind_task(iris())
    mixed = create_strategy("predictor", space, seed=0, proxies=["params"], pool_size=60, n_init=6,
                            **FAST).bind_task(iris())
    pool_params = strategy.features.scores(strategy.pool())[:, 0]

    first = strategy.ask([], n=5)

    proposed = strategy.features.scores([c.arch for c in first])[:, 0]
    assert proposed.tolist() == sorted(pool_params, reverse=True)[:5]
    assert [c.meta["pool_rank"] for c in first] == [0, 1, 2, 3, 4]
    # The default mix: half from the top, interleaved with ranks spread over the whole pool.
    assert [c.meta["pool_rank"] for c in mixed.ask([], n=7)] == [0, 3, 1, 31, 2, 59, 4]


def test_it_finds_better_architectures_than_random_search():
    space = create_space("nb201")
    objective = additive(space, seed=2021)
    seeds = range(3)

    def best(name: str, seed: int, **config) -> float:
        strategy = create_strategy(name, space, seed=seed, **config)
        return max(r.objective for r in run(strategy, space, objective, trials=30, parallel=2))

    guided = np.mean([best("predictor", s, proxies=[], n_init=8, **FAST) for s in seeds])
    random = np.mean([best("random", s) for s in seeds])

    assert guided > random


def test_it_uses_the_encoding_alone_without_a_task_or_proxies():
    space = create_space("nb201")
    unbound = create_strategy("predictor", space, seed=0, **FAST)  # a lookup table builds no network
    no_proxies = create_strategy("predictor", space, seed=0, proxies="", **FAST).bind_task(iris())

    first = unbound.ask([], n=2)

    assert not unbound.features.uses_proxies and not no_proxies.features.uses_proxies
    assert [c.meta["proxy_scores"] for c in first] == [{}, {}]
    assert [c.to_dict() for c in no_proxies.ask([], n=2)] == [c.to_dict() for c in first]
