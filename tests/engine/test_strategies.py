"""Strategies: contract tests over every registered strategy and space, then each strategy's own
behaviour. No training here: objectives are synthetic, deterministic functions of the encoding."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from torch import nn

from search_engine import (
    SPACES,
    STRATEGIES,
    ConfigError,
    SearchSpace,
    TrialRecord,
    create_space,
    create_strategy,
    load_builtin,
)
from search_engine.strategies.hyperband import hyperband_schedule
from search_engine.strategies.tpe import OptunaTPE
from search_engine.types import COMPLETED, FAILED, INFEASIBLE, QUEUED, RUNNING

# -- spaces --------------------------------------------------------------------------------


class ToySpace(SearchSpace):
    """Small and flat, with bools, None and mixed types among the values (216 architectures)."""

    name = "toy"

    def choices(self):
        return {
            "op": ["conv3", "conv5", "pool", "skip"],
            "width": [8, 16, 32],
            "bn": [True, False],
            "tag": [1, "two", None],
            "drop": [0.0, 0.5, 0.25],
        }

    def build(self, arch, task):
        return nn.Identity()


class ConditionalToySpace(SearchSpace):
    """An MLP-like space: width_k only matters when depth >= k (168 distinct networks)."""

    name = "toy_conditional"

    def choices(self):
        return {
            "depth": [1, 2, 3],
            "width_1": [8, 16, 32, 64],
            "width_2": [8, 16, 32, 64],
            "width_3": [8, 16, 32, 64],
            "act": ["relu", "gelu"],
        }

    def active(self, arch):
        return ["depth", *[f"width_{k}" for k in range(1, arch["depth"] + 1)], "act"]

    def build(self, arch, task):
        return nn.Identity()


TOY_SPACES = {"toy": ToySpace, "toy_conditional": ConditionalToySpace}
SPACE_NAMES = [*TOY_SPACES, "nb201", "mlp", "mobilenet"]

# Every registered strategy with its defaults, plus BOHB (hyperband with a TPE sampler).
# zc_prescreen scores a smaller pool than its default so the contract stays quick.
# Grid search walks every architecture, so its contract runs on a small configuration of each real
# space (GRID_SPACE_CONFIG: mlp with 2 layers has 1,920, mobilenet with 2 stages 729); nb201's cell
# has no size option, so the grid's limit is raised to take its 15,625 cells.
GRID_SPACE_CONFIG = {"mlp": {"max_depth": 2}, "mobilenet": {"stages": 2}}
CASE_CONFIG = {"zc_prescreen": {"pool": 20, "top_k": 4}, "grid": {"limit": 20_000}}
STRATEGY_CASES = [(name, CASE_CONFIG.get(name, {})) for name in STRATEGIES.names()] + [
    ("hyperband", {"sampler": "tpe", "min_points_in_model": 4}),
]
STRATEGY_IDS = [name + ("-" + "-".join(f"{k}={v}" for k, v in cfg.items()) if cfg else "")
                for name, cfg in STRATEGY_CASES]


def make_space(name: str, strategy: str | None = None) -> SearchSpace:
    """A toy space, or the registered one (an unregistered name fails: ConfigError); the grid gets
    its small configuration."""
    if name in TOY_SPACES:
        return TOY_SPACES[name]()
    return create_space(name, **(GRID_SPACE_CONFIG.get(name, {}) if strategy == "grid" else {}))


def nb201_space() -> SearchSpace:
    return create_space("nb201")


@cache
def task_for(space_name: str):
    """Data for strategies that look at it (zc_prescreen): images for image-only spaces."""
    return load_builtin("digits" if space_name in ("nb201", "mobilenet") else "iris")


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **config):
    return create_strategy(name, space, seed=seed, **config).bind_task(task_for(space.name))


# -- synthetic objective -------------------------------------------------------------------


class Landscape:
    """A fixed random quadratic over the one-hot encoding: additive terms plus pairwise
    interactions, so single choices matter and combinations matter more."""

    def __init__(self, space: SearchSpace, seed: int = 1234):
        self.space = space
        dim = len(space.encode(space.sample(np.random.default_rng(0))))
        rng = np.random.default_rng([seed, dim])
        self.linear = rng.normal(size=dim)
        self.pairwise = np.triu(rng.normal(scale=0.5, size=(dim, dim)), k=1)

    def __call__(self, arch, epochs: int | None = None) -> float:
        x = self.space.encode(arch).astype(np.float64)
        value = float(self.linear @ x + x @ self.pairwise @ x)
        if epochs is not None:
            value -= 1.0 / epochs  # more epochs, better estimate, same ranking
        return value


def finish(record: TrialRecord, landscape: Landscape) -> None:
    # Every 7th trial fails and every 11th is infeasible, so strategies must cope with both.
    if record.number % 7 == 6:
        record.state = FAILED
    elif record.number % 11 == 10:
        record.state, record.objective = INFEASIBLE, None
    else:
        record.state = COMPLETED
        record.objective = landscape(record.arch, record.budget.get("epochs"))


def simulate(strategy, space, trials: int = 30, parallel: int = 3) -> list[TrialRecord]:
    """An ask/tell loop with `parallel` workers: finishes the oldest pending trial per step, so
    the history always holds queued and running trials too."""
    landscape = Landscape(space)
    history: list[TrialRecord] = []
    while len(history) < trials:
        pending = [r for r in history if not r.finished]
        room = min(parallel - len(pending), trials - len(history))
        for candidate in strategy.ask(history, n=room) if room > 0 else []:
            assert space.validate(candidate.arch) == space.canonical(candidate.arch)
            json.dumps(candidate.to_dict())  # the web side stores candidates as JSON
            history.append(TrialRecord(number=len(history), arch=candidate.arch, state=QUEUED,
                                       budget=dict(candidate.budget), meta=dict(candidate.meta)))
        pending = [r for r in history if not r.finished]
        if not pending:
            break  # the strategy has nothing left (grid exhausted)
        finish(pending[0], landscape)
        if len(pending) > 1:
            pending[1].state = RUNNING
    return history


@cache
def _cached_history(strategy_index: int, space_name: str) -> tuple[TrialRecord, ...]:
    name, config = STRATEGY_CASES[strategy_index]
    space = make_space(space_name, name)
    return tuple(simulate(make_strategy(name, space, seed=7, **config), space))


def loop_history(strategy_index: int, space_name: str) -> list[TrialRecord]:
    # Copies, so a test that mutates records cannot leak into another one.
    return [TrialRecord.from_dict(r.to_dict()) for r in _cached_history(strategy_index, space_name)]


def as_plain(candidates) -> list[dict]:
    return [c.to_dict() for c in candidates]


# -- contract: every strategy, every space ---------------------------------------------------

contract = pytest.mark.parametrize("space_name", SPACE_NAMES)
every_strategy = pytest.mark.parametrize("strategy_index", range(len(STRATEGY_CASES)), ids=STRATEGY_IDS)


@every_strategy
@contract
def test_it_proposes_valid_architectures_in_an_ask_tell_loop(strategy_index, space_name):
    space = make_space(space_name, STRATEGY_CASES[strategy_index][0])
    history = loop_history(strategy_index, space_name)  # validates every candidate as it goes

    assert len(history) == 30
    assert any(not r.finished for r in history), "the loop should leave pending trials"
    assert sum(r.scored for r in history) >= 15
    for record in history:
        assert space.validate(record.arch)


@every_strategy
@contract
def test_it_is_a_pure_function_of_seed_and_history(strategy_index, space_name):
    name, config = STRATEGY_CASES[strategy_index]
    space = make_space(space_name, name)
    history = loop_history(strategy_index, space_name)
    first = make_strategy(name, space, seed=7, **config)
    second = make_strategy(name, space, seed=7, **config)

    proposals = as_plain(first.ask(history, n=3))

    assert proposals == as_plain(second.ask(history, n=3))
    assert proposals == as_plain(first.ask(history, n=3)), "asking must not change hidden state"
    assert as_plain(first.ask([], n=2)) == as_plain(second.ask([], n=2))


@every_strategy
@contract
def test_it_depends_on_the_seed(strategy_index, space_name):
    name, config = STRATEGY_CASES[strategy_index]
    space = make_space(space_name, name)
    history = loop_history(strategy_index, space_name)

    fresh = {json.dumps(as_plain(make_strategy(name, space, seed=s, **config).ask([], n=3)))
             for s in range(4)}
    later = {json.dumps(as_plain(make_strategy(name, space, seed=s, **config).ask(history, n=3)))
             for s in range(4)}

    assert len(fresh) > 1
    assert len(later) > 1


@every_strategy
@contract
def test_it_rebuilds_from_a_json_state_dict(strategy_index, space_name):
    name, config = STRATEGY_CASES[strategy_index]
    space = make_space(space_name, name)
    history = loop_history(strategy_index, space_name)
    original = make_strategy(name, space, seed=11, **config)
    original.ask(history[:20], n=1)  # learning strategies put what they learned in the state

    state = json.loads(json.dumps(original.state_dict()))
    rebuilt = STRATEGIES.get(state["name"]).from_state_dict(space, state).bind_task(task_for(space.name))

    assert state["name"] == name
    assert as_plain(rebuilt.ask(history, n=3)) == as_plain(original.ask(history, n=3))


@every_strategy
@contract
def test_it_returns_distinct_unseen_candidates_for_parallel_asks(strategy_index, space_name):
    name, config = STRATEGY_CASES[strategy_index]
    space = make_space(space_name, name)
    history = loop_history(strategy_index, space_name)
    seen = {space.fingerprint(r.arch) for r in history}

    candidates = make_strategy(name, space, seed=3, **config).ask(history, n=4)

    assert len(candidates) == 4
    keys = {(space.fingerprint(c.arch), c.budget.get("epochs")) for c in candidates}
    assert len(keys) == 4
    for candidate in candidates:
        if candidate.meta.get("rung", 0) == 0:  # hyperband re-proposes promoted architectures
            assert space.fingerprint(candidate.arch) not in seen


# -- random and grid -------------------------------------------------------------------------


def test_it_samples_randomly_without_repeats():
    space = ToySpace()
    strategy = create_strategy("random", space, seed=5)
    history = []
    for _ in range(60):
        (candidate,) = strategy.ask(history)
        history.append(TrialRecord(number=len(history), arch=candidate.arch, state=COMPLETED, objective=0.0))

    assert len({space.fingerprint(r.arch) for r in history}) == 60


def test_it_walks_the_whole_grid_once_then_finishes():
    space = ConditionalToySpace()
    strategy = create_strategy("grid", space, seed=2)
    history = []
    while not strategy.is_finished(history):
        batch = strategy.ask(history, n=7)
        assert batch
        history += [TrialRecord(number=len(history) + i, arch=c.arch, state=RUNNING)
                    for i, c in enumerate(batch)]

    fingerprints = [space.fingerprint(r.arch) for r in history]
    assert len(fingerprints) == len(set(fingerprints)) == space.cardinality() == 168
    assert strategy.ask(history, n=3) == []


def test_it_shuffles_the_grid_by_seed_and_keeps_the_order_across_asks():
    space = ToySpace()
    first = create_strategy("grid", space, seed=1).ask([], n=216)
    again = create_strategy("grid", space, seed=1)
    other = create_strategy("grid", space, seed=2).ask([], n=216)
    in_order = create_strategy("grid", space, seed=1, shuffle=False).ask([], n=216)

    assert as_plain(first) != as_plain(other)
    assert [c.arch for c in in_order] == list(space.enumerate())
    # Skipping what the history holds, not re-shuffling: the walk continues where it was.
    done = [TrialRecord(number=i, arch=c.arch, state=COMPLETED, objective=0.0) for i, c in enumerate(first[:10])]
    assert as_plain(again.ask(done, n=5)) == as_plain(first[10:15])


def test_it_refuses_a_grid_over_a_space_above_the_limit():
    space = nb201_space()

    # The limit is explicit here: the default takes every shipped space (next test).
    with pytest.raises(ConfigError) as excinfo:
        create_strategy("grid", space, limit=10_000)

    assert excinfo.value.field == "limit"
    assert len(create_strategy("grid", space, limit=20000).ask([], n=5)) == 5


def test_it_allows_a_grid_over_every_shipped_space_by_default():
    default_limit = STRATEGIES.get("grid").options["limit"].default
    for name in SPACES.names():
        assert create_space(name).cardinality() <= default_limit, name
    # Enumerating mlp's 49,920 takes seconds; nb201 (refused with the old 10,000) shows the path.
    assert len(create_strategy("grid", nb201_space()).ask([], n=3)) == 3


# -- seeding across strategies ---------------------------------------------------------------


def test_it_draws_a_different_stream_for_each_strategy_with_one_seed():
    space = nb201_space()
    first = {name: as_plain(create_strategy(name, space, seed=0).ask([], n=3))
             for name in ("random", "hyperband", "evolution")}

    archs = {name: [c["arch"] for c in cands] for name, cands in first.items()}
    assert archs["random"] != archs["hyperband"]
    assert archs["random"] != archs["evolution"]
    assert archs["hyperband"] != archs["evolution"]
    for name, cands in first.items():  # and each one is still deterministic
        assert as_plain(create_strategy(name, space, seed=0).ask([], n=3)) == cands


# -- evolution -------------------------------------------------------------------------------


def _completed(number, arch, objective, **kwargs):
    return TrialRecord(number=number, arch=arch, state=COMPLETED, objective=objective, **kwargs)


def test_it_evolves_only_after_population_size_proposals_counting_pending_ones():
    space = nb201_space()
    rng = np.random.default_rng(0)
    strategy = create_strategy("evolution", space, seed=0, population_size=10, sample_size=3)
    pending = [TrialRecord(number=i, arch=space.sample(rng), state=QUEUED) for i in range(9)]

    first, *rest = strategy.ask(pending, n=3)

    assert "parent" not in first.meta  # the 10th proposal is still random
    assert all("parent" not in c.meta for c in rest)  # nothing scored yet to mutate


def test_it_mutates_tournament_winners_from_the_youngest_scored_trials():
    space = nb201_space()
    rng = np.random.default_rng(1)
    strategy = create_strategy("evolution", space, seed=0, population_size=10, sample_size=10)
    # The old trials are the best ones, but aging evolution has already let them die; the
    # infeasible and failed ones are never parents whatever they claim.
    history = [_completed(i, space.sample(rng), 100.0 - i) for i in range(10)]
    history += [_completed(10 + i, space.sample(rng), float(i)) for i in range(10)]
    history += [TrialRecord(number=20, arch=space.sample(rng), state=INFEASIBLE, objective=1e9),
                TrialRecord(number=21, arch=space.sample(rng), state=FAILED)]
    by_number = {r.number: r for r in history}

    children = strategy.ask(history, n=5)

    for child in children:
        # sample_size == population_size: the tournament always picks the population's best.
        assert child.meta["parent"] == 19
        parent = by_number[child.meta["parent"]]
        assert child.arch in space.neighbors(parent.arch)


def test_it_refuses_a_population_larger_than_the_trial_budget():
    strategy = create_strategy("evolution", ToySpace(), population_size=20, sample_size=5)

    with pytest.raises(ConfigError) as excinfo:
        strategy.check_budget(8)

    assert excinfo.value.field == "population_size"
    assert "trial budget (8)" in str(excinfo.value)
    strategy.check_budget(20)  # P == budget still evolves nothing, but is allowed: warm-up only
    for name in STRATEGIES.names():
        if name != "evolution":
            create_strategy(name, ToySpace()).check_budget(1)  # the others have no such limit


def test_it_rejects_a_tournament_larger_than_the_population():
    with pytest.raises(ConfigError) as excinfo:
        create_strategy("evolution", ToySpace(), population_size=5, sample_size=6)
    assert excinfo.value.field == "sample_size"


def _best_found(name: str, space, landscape, seed: int, budget: int, **config) -> float:
    strategy = create_strategy(name, space, seed=seed, **config)
    history: list[TrialRecord] = []
    while len(history) < budget:
        for candidate in strategy.ask(history, n=2):
            history.append(_completed(len(history), candidate.arch, landscape(candidate.arch)))
    return max(r.objective for r in history)


def test_it_evolves_better_architectures_than_random_search():
    space = nb201_space()
    landscape = Landscape(space, seed=2019)
    seeds = range(20)

    evolution = np.mean([_best_found("evolution", space, landscape, s, budget=150) for s in seeds])
    random = np.mean([_best_found("random", space, landscape, s, budget=150) for s in seeds])

    assert evolution > random


# -- reinforce -------------------------------------------------------------------------------


def test_it_learns_a_policy_that_prefers_rewarded_choices():
    space = ToySpace()
    strategy = create_strategy("reinforce", space, seed=0, learning_rate=0.2)
    history: list[TrialRecord] = []
    for _ in range(20):
        for candidate in strategy.ask(history, n=4):
            reward = 1.0 if candidate.arch["op"] == "conv3" else 0.0
            history.append(_completed(len(history), candidate.arch, reward))

    probs = strategy.replay(history).probabilities("op")

    assert probs[0] == max(probs) and probs[0] > 0.4  # from the uniform 0.25
    later = [r.arch["op"] for r in history[40:]]
    assert later.count("conv3") / len(later) > 0.3


def test_it_gives_no_gradient_to_inactive_choices():
    space = ConditionalToySpace()
    strategy = create_strategy("reinforce", space, seed=0, entropy_weight=0.1)
    rng = np.random.default_rng(3)
    shallow = [space.canonical({**space.sample(rng), "depth": 1}) for _ in range(12)]
    history = [_completed(i, arch, float(arch["width_1"])) for i, arch in enumerate(shallow)]

    policy = strategy.replay(history)

    assert np.all(policy.logits["width_3"] == 0.0)
    assert np.all(policy.logits["width_2"] == 0.0)
    assert np.any(policy.logits["width_1"] != 0.0)


def test_it_exposes_the_replayed_policy_in_its_state():
    space = ToySpace()
    strategy = create_strategy("reinforce", space, seed=4)
    rng = np.random.default_rng(0)
    history = [_completed(i, space.sample(rng), float(i % 3)) for i in range(15)]
    strategy.ask(history)

    state = json.loads(json.dumps(strategy.state_dict()))

    replayed = strategy.replay(history)
    assert state["policy"]["updates"] == 15
    assert state["policy"]["logits"]["op"] == pytest.approx(replayed.logits["op"].tolist())


# -- tpe -------------------------------------------------------------------------------------


def _mean_late_objective(name: str, space, landscape, seed: int, budget: int, **config) -> float:
    strategy = create_strategy(name, space, seed=seed, **config)
    history: list[TrialRecord] = []
    while len(history) < budget:
        (candidate,) = strategy.ask(history)
        history.append(_completed(len(history), candidate.arch, landscape(candidate.arch)))
    return float(np.mean([r.objective for r in history[budget // 2:]]))


def test_it_concentrates_tpe_proposals_on_good_regions():
    space = nb201_space()
    landscape = Landscape(space, seed=7)
    seeds = range(4)

    tpe = np.mean([_mean_late_objective("tpe", space, landscape, s, budget=40) for s in seeds])
    random = np.mean([_mean_late_objective("random", space, landscape, s, budget=40) for s in seeds])

    assert tpe > random


def _tpe_run(space, trials: int, **config) -> tuple[list[TrialRecord], list]:
    landscape = Landscape(space, seed=5)
    strategy = create_strategy("tpe", space, seed=0, **config)
    history: list[TrialRecord] = []
    candidates = []
    while len(history) < trials:
        (candidate,) = strategy.ask(history)
        candidates.append(candidate)
        history.append(_completed(len(history), candidate.arch, landscape(candidate.arch)))
    return history, candidates


def test_it_tells_tpe_duplicates_their_value_instead_of_falling_back_to_random():
    # A small space and a long run, univariate: before, most late proposals were random samples.
    space = ToySpace()
    history, candidates = _tpe_run(space, 120, multivariate=False, n_startup_trials=5)

    fallbacks = [c.meta.get("fallback") for c in candidates]
    assert fallbacks.count("random") == 0
    assert len({space.fingerprint(r.arch) for r in history}) == 120
    # Told-back duplicates and the mutation fallback still depend on the history only.
    rebuilt = create_strategy("tpe", space, seed=0, multivariate=False, n_startup_trials=5)
    assert as_plain(rebuilt.ask(history[:100], n=2)) == as_plain(
        create_strategy("tpe", space, seed=0, multivariate=False, n_startup_trials=5).ask(history[:100], n=2))
    assert as_plain(rebuilt.ask(history[:60])) == [candidates[60].to_dict()]


def test_it_tells_tpe_a_rejected_proposal_as_infeasible():
    space = ToySpace()
    rng = np.random.default_rng(0)
    history = [_completed(i, space.sample(rng), float(i)) for i in range(6)]
    history.append(TrialRecord(number=6, arch=space.sample(rng), state=INFEASIBLE))
    bridge = OptunaTPE(space, n_startup_trials=3, multivariate=True, constant_liar=True)

    trials = bridge.study(history, sampler_seed=0).trials

    assert len(trials) == 7
    assert trials[6].system_attrs["constraints"] == [1.0]
    assert all(t.system_attrs["constraints"] == [0.0] for t in trials[:6])
    assert "constraints" not in bridge.study(history[:6], sampler_seed=0).trials[0].system_attrs
    assert len(create_strategy("tpe", space, seed=0, n_startup_trials=3).ask(history, n=3)) == 3


def test_it_maps_mixed_type_choices_through_optuna_and_back():
    space = ToySpace()
    strategy = create_strategy("tpe", space, seed=0, n_startup_trials=3)
    rng = np.random.default_rng(0)
    history = [_completed(i, space.sample(rng), float(i)) for i in range(6)]

    candidates = strategy.ask(history, n=6)

    for candidate in candidates:
        assert space.validate(candidate.arch) == candidate.arch
        for label, values in space.choices().items():
            assert any(type(v) is type(candidate.arch[label]) and v == candidate.arch[label] for v in values)


# -- hyperband -------------------------------------------------------------------------------


def test_it_builds_the_hyperband_bracket_schedule():
    assert hyperband_schedule(1, 9, 3) == [[(9, 1), (3, 3), (1, 9)], [(5, 3), (1, 9)], [(3, 9)]]
    assert hyperband_schedule(1, 1, 3) == [[(1, 1)]]
    assert [rung[-1][1] for rung in hyperband_schedule(1, 10, 3)] == [10, 10, 10]


def test_it_runs_successive_halving_and_promotes_the_top_of_each_rung():
    space = ToySpace()
    landscape = Landscape(space)
    strategy = create_strategy("hyperband", space, seed=0, min_epochs=1, max_epochs=9, eta=3)
    history: list[TrialRecord] = []
    for _ in range(9 + 3 + 1 + 5 + 1 + 3 + 2):
        (candidate,) = strategy.ask(history)
        history.append(_completed(len(history), candidate.arch, landscape(candidate.arch),
                                  budget=candidate.budget, meta=candidate.meta))

    def rung(iteration, bracket, index):
        return [r for r in history if (r.meta["iteration"], r.meta["bracket"], r.meta["rung"])
                == (iteration, bracket, index)]

    expected = {(0, 0): (9, 1), (0, 1): (3, 3), (0, 2): (1, 9), (1, 0): (5, 3), (1, 1): (1, 9), (2, 0): (3, 9)}
    for (bracket, index), (size, epochs) in expected.items():
        records = rung(0, bracket, index)
        assert len(records) == size
        assert {r.budget["epochs"] for r in records} == {epochs}
        if index > 0:
            previous = sorted(rung(0, bracket, index - 1), key=lambda r: -r.objective)
            assert {space.fingerprint(r.arch) for r in records} == {
                space.fingerprint(r.arch) for r in previous[:size]}
    # After the last bracket a new iteration starts with the most aggressive bracket.
    assert [r.meta for r in history[-2:]] == [{"iteration": 1, "bracket": 0, "rung": 0}] * 2


def test_it_keeps_parallel_workers_busy_while_a_bracket_waits():
    space = ToySpace()
    strategy = create_strategy("hyperband", space, seed=0)
    history: list[TrialRecord] = []

    def queue(candidates):
        start = len(history)
        history.extend(TrialRecord(number=start + i, arch=c.arch, state=QUEUED,
                                   budget=c.budget, meta=c.meta) for i, c in enumerate(candidates))
        return [(c.meta["iteration"], c.meta["bracket"], c.meta["rung"], c.budget["epochs"]) for c in candidates]

    assert queue(strategy.ask(history, n=12)) == [(0, 0, 0, 1)] * 9 + [(0, 1, 0, 3)] * 3
    assert queue(strategy.ask(history, n=6)) == [(0, 1, 0, 3)] * 2 + [(0, 2, 0, 9)] * 3 + [(1, 0, 0, 1)]

    # Bracket 0's first rung finishes except one trial: no promotion until it is done.
    for record in history[:8]:
        record.state, record.objective = COMPLETED, float(record.number)
    assert queue(strategy.ask(history, n=1)) == [(1, 0, 0, 1)]
    history[8].state = FAILED  # the failed one is simply not promoted

    promoted = strategy.ask(history, n=4)

    assert [(c.meta["bracket"], c.meta["rung"], c.budget["epochs"]) for c in promoted[:3]] == [(0, 1, 3)] * 3
    assert [c.meta["parent"] for c in promoted[:3]] == [7, 6, 5]
    assert [c.arch for c in promoted[:3]] == [history[n].arch for n in (7, 6, 5)]
    assert promoted[3].meta == {"iteration": 1, "bracket": 0, "rung": 0}


def test_it_rejects_inverted_epoch_bounds():
    with pytest.raises(ConfigError) as excinfo:
        create_strategy("hyperband", ToySpace(), min_epochs=10, max_epochs=3)
    assert excinfo.value.field == "max_epochs"


def test_it_fits_bohb_on_the_largest_budget_with_enough_points():
    space = ToySpace()
    strategy = create_strategy("hyperband", space, seed=0, sampler="tpe", min_points_in_model=5)
    rng = np.random.default_rng(0)
    # Plenty of 1-epoch results where "pool" wins, a few 9-epoch ones where "conv3" wins: with
    # only 4 points at 9 epochs the model must come from the 1-epoch results.
    cheap = [_completed(i, space.sample(rng), 0.0, budget={"epochs": 1}) for i in range(30)]
    for record in cheap:
        record.objective = 1.0 if record.arch["op"] == "pool" else 0.0
    costly = [_completed(30 + i, {**space.sample(rng), "op": "conv3"}, 1.0, budget={"epochs": 9})
              for i in range(4)]

    assert strategy._model_records(cheap + costly) == cheap
    costly.append(_completed(34, {**space.sample(rng), "op": "conv3"}, 1.0, budget={"epochs": 9}))
    assert strategy._model_records(cheap + costly) == costly
    proposals = strategy.ask(cheap + costly, n=6)
    assert all(space.validate(c.arch) for c in proposals)


def test_it_samples_bohb_architectures_from_the_model():
    space = ToySpace()
    rng = np.random.default_rng(0)
    history = [_completed(i, space.sample(rng), 0.0, budget={"epochs": 1}) for i in range(40)]
    for record in history:
        record.objective = 1.0 if record.arch["op"] == "pool" else 0.0

    proposals = [create_strategy("hyperband", space, seed=seed, sampler="tpe", min_points_in_model=10)
                 .ask(history)[0] for seed in range(6)]

    # Random sampling would give about a quarter "pool"; the model knows better.
    assert sum(c.arch["op"] == "pool" for c in proposals) >= 4
