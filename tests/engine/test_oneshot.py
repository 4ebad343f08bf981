"""Weight-sharing supernet (one-shot job), inherited accuracy, checkpoint/resume and the `fixed`
strategy that retrains a job's top architectures as normal trials. Tiny digits subsets, C=4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from search_engine import (
    STRATEGIES,
    ConfigError,
    TrialRecord,
    create_estimator,
    create_space,
    create_strategy,
)
from search_engine.loop import run_search
from search_engine.oneshot import (
    ONESHOT,
    CheckpointError,
    create_oneshot,
    fixed_strategy_config,
    inherited_accuracy,
    load_checkpoint,
    load_progress,
)
from search_engine.oneshot.supernet import arch_to_choices, build_supernet
from search_engine.task import make_task
from search_engine.types import COMPLETED, Budget


def digits_task(per_class: int = 40, seed: int = 0):
    data = load_digits()
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(data.target == c))[:per_class]
                                   for c in range(10)]))
    X = (data.images[keep] / 16.0)[:, None].astype(np.float32)
    return make_task("digits-small", X, data.target[keep], seed=seed)


@pytest.fixture(scope="module")
def task():
    return digits_task()


@pytest.fixture(scope="module")
def space():
    return create_space("nb201", C=4, N=1)


FAST = {"epochs": 2, "batch_size": 32, "cycles": 12, "population_size": 6, "sample_size": 3, "top_k": 3,
        "monitor_archs": 2, "bn_batches": 2, "device": "cpu", "threads": 1}


def supernet_job(space, seed=0, **overrides):
    return create_oneshot("supernet", space, seed=seed, **{**FAST, **overrides})


def comparable(history):
    """Progress without wall-clock fields, for exact comparisons."""
    return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "replayed")} for h in history]


class Crash(Exception):
    """Stands in for a worker killed mid-job."""


@pytest.fixture(scope="module")
def trained(space, task):
    """One short supernet run shared by the read-only tests."""
    progress = []
    job = supernet_job(space)
    result = job.run(task, report_progress=lambda step, values: progress.append((step, values)))
    return job, result, progress


# -- the registry -------------------------------------------------------------------------------


def test_it_lists_both_methods_with_their_options():
    described = ONESHOT.describe()

    assert set(described) >= {"supernet", "darts"}
    assert {"epochs", "lr", "batch_size", "bn_recalibration", "top_k", "cycles"} <= set(described["supernet"]["options"])
    assert described["supernet"]["options"]["bn_recalibration"]["default"] is True
    assert {"order", "remedy", "arch_lr"} <= set(described["darts"]["options"])


def test_it_rejects_spaces_and_options_it_cannot_handle(space):
    with pytest.raises(ConfigError) as excinfo:
        create_oneshot("supernet", create_space("mlp"))
    assert excinfo.value.field == "space"
    with pytest.raises(ConfigError) as excinfo:
        create_oneshot("supernet", space, epochz=3)
    assert excinfo.value.field == "epochz"
    with pytest.raises(ConfigError) as excinfo:
        create_oneshot("supernet", space, population_size=3, sample_size=4)
    assert excinfo.value.field == "sample_size"


# -- training and progress ---------------------------------------------------------------------


def test_it_trains_the_supernet_and_reports_every_epoch(trained):
    _, result, progress = trained

    epochs = [(step, v) for step, v in progress if v["phase"] == "train"]
    assert [step for step, _ in epochs] == [1, 2]
    for _, values in epochs:
        assert {"supernet_loss", "supernet_acc", "val_acc", "lr", "epoch_time_s"} <= set(values)
        assert np.isfinite(values["supernet_loss"]) and 0.0 <= values["val_acc"] <= 1.0
    assert epochs[1][1]["supernet_loss"] < epochs[0][1]["supernet_loss"]
    searched = [v for _, v in progress if v["phase"] == "search"]
    assert searched[-1]["evaluated"] == FAST["cycles"]
    assert result.completed and result.epochs_done == 2 and result.stopped_because == "finished"
    assert comparable(result.history) == comparable([v for _, v in epochs])


def test_it_returns_valid_distinct_top_architectures_best_first(trained, space):
    _, result, _ = trained

    assert len(result.top_archs) == FAST["top_k"]
    assert result.score_name == "inherited_val_acc"
    scores = [score for _, score in result.top_archs]
    assert scores == sorted(scores, reverse=True)
    assert len({space.fingerprint(a) for a, _ in result.top_archs}) == FAST["top_k"]
    for arch, _ in result.top_archs:
        assert space.validate(arch) == arch
    assert result.final["top"][0]["genotype"] == space.to_string(result.top_archs[0][0])
    import json

    json.dumps(result.to_dict())  # the web side stores it as JSON


# -- inherited accuracy -------------------------------------------------------------------------


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("recalibrate", [True, False])
def test_it_scores_a_candidate_with_inherited_weights_without_changing_them(trained, space, task, recalibrate):
    job, _, _ = trained
    arch = space.sample(np.random.default_rng(3))
    before = snapshot(job.model)

    accuracy = inherited_accuracy(job.model, arch, task, recalibrate=recalibrate)

    after = snapshot(job.model)
    assert 0.0 <= accuracy <= 1.0
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the supernet must not be trained or recalibrated"
    assert accuracy == inherited_accuracy(job.model, arch, task, recalibrate=recalibrate)


def test_it_recalibrates_batchnorm_on_a_copy_only(trained, space, task):
    job, _, _ = trained
    arch = {label: "nor_conv_3x3" for label in space.choices()}
    plain = job.model.extract(arch)
    from search_engine.oneshot.supernet import calibration_batches, recalibrate_bn

    recalibrated = job.model.extract(arch)
    recalibrate_bn(recalibrated, calibration_batches(task, 2, 32, 0, "cpu"))

    stats = [k for k in plain.state_dict() if k.endswith("running_mean")]
    assert any(not torch.equal(plain.state_dict()[k], recalibrated.state_dict()[k]) for k in stats)
    weights = [k for k in plain.state_dict() if k.endswith("weight")]
    assert all(torch.equal(plain.state_dict()[k], recalibrated.state_dict()[k]) for k in weights)


def test_an_extracted_network_computes_exactly_the_supernet_path(space, task):
    supernet = build_supernet(space, task).eval()
    rng = np.random.default_rng(0)
    x = task.X_val[:16]
    for _ in range(3):
        arch = space.sample(rng)
        standalone = space.build(arch, task)  # the space's own network: same modules, same names
        extracted = supernet.extract(arch).eval()

        assert extracted.state_dict().keys() == standalone.state_dict().keys()
        with torch.no_grad():
            assert torch.allclose(extracted(x), supernet(x, choices=arch_to_choices(arch)), atol=1e-6)


# -- retraining the top architectures as normal trials -------------------------------------------


def test_the_top_architectures_train_as_normal_trials_with_the_fixed_strategy(trained, space, task):
    _, result, _ = trained
    config = fixed_strategy_config(result, space)
    strategy = create_strategy("fixed", space, seed=0, **config)
    estimator = create_estimator("train", epochs=1, device="cpu")

    search = run_search(task=task, space=space, strategy=strategy, estimator=estimator,
                        budget=Budget(trials=10), seed=0)

    assert [o.arch for o in search.outcomes] == [a for a, _ in result.top_archs]
    assert all(o.state == COMPLETED and 0.0 <= o.metrics["test_acc"] <= 1.0 for o in search.outcomes)
    assert search.stopped_because == "search space exhausted"


def test_the_fixed_strategy_takes_benchmark_strings_and_skips_what_was_tried(space):
    cells = ["|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
             "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"]
    strategy = create_strategy("fixed", space, seed=0, archs=cells, then="stop")
    first = space.from_string(cells[0])

    assert [space.to_string(c.arch) for c in strategy.ask([], n=5)] == cells
    done = [TrialRecord(number=0, arch=first, state=COMPLETED, objective=0.5)]
    assert [space.to_string(c.arch) for c in strategy.ask(done, n=5)] == cells[1:]
    assert not strategy.is_finished(done)
    done.append(TrialRecord(number=1, arch=space.from_string(cells[1]), state="running"))
    assert strategy.is_finished(done) and strategy.ask(done, n=1) == []
    rebuilt = STRATEGIES.get("fixed").from_state_dict(space, strategy.state_dict())
    assert [c.arch for c in rebuilt.ask([], n=2)] == [c.arch for c in strategy.ask([], n=2)]


def test_the_fixed_strategy_fills_with_random_search_when_asked(space):
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    candidates = create_strategy("fixed", space, seed=0, archs=cell, then="random").ask([], n=4)

    assert space.to_string(candidates[0].arch) == cell
    assert len({space.fingerprint(c.arch) for c in candidates}) == 4


def test_the_fixed_strategy_names_a_bad_entry(space):
    with pytest.raises(ConfigError) as excinfo:
        create_strategy("fixed", space, archs=["|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"])
    assert excinfo.value.field == "archs" and "entry 0" in str(excinfo.value)


# -- checkpoints, resume, determinism -------------------------------------------------------------


def test_it_resumes_after_a_crash_and_ends_exactly_where_a_straight_run_ends(space, task, tmp_path):
    straight = supernet_job(space, epochs=4).run(task, checkpoint_dir=tmp_path / "straight")

    def crash_after_epoch_2(step, values):
        if values["phase"] == "train" and step == 2:
            raise Crash

    with pytest.raises(Crash):
        supernet_job(space, epochs=4).run(task, report_progress=crash_after_epoch_2,
                                          checkpoint_dir=tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 2
    replayed = []
    resumed = supernet_job(space, epochs=4).run(task, report_progress=lambda s, v: replayed.append((s, v)),
                                                checkpoint_dir=tmp_path / "killed")

    assert replayed[0][0] == 2 and replayed[0][1]["replayed"] is True
    assert [s for s, v in replayed if v["phase"] == "train"] == [2, 3, 4]
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "killed")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["generators"][k], b["generators"][k]) for k in a["generators"])
    assert comparable(resumed.history) == comparable(straight.history)
    assert resumed.top_archs == straight.top_archs
    assert comparable(load_progress(tmp_path / "killed")) == comparable(straight.history)


def test_should_stop_ends_the_job_after_a_checkpoint_and_resume_finishes_it(space, task, tmp_path):
    stopped = supernet_job(space, epochs=3).run(task, checkpoint_dir=tmp_path, should_stop=lambda: True)

    assert not stopped.completed and stopped.epochs_done == 1 and stopped.top_archs == []
    finished = supernet_job(space, epochs=3).run(task, checkpoint_dir=tmp_path)
    assert finished.completed and finished.epochs_done == 3 and len(finished.top_archs) == FAST["top_k"]
    again = supernet_job(space, epochs=3).run(task, checkpoint_dir=tmp_path)  # nothing left to train
    assert comparable(again.history) == comparable(finished.history) and again.top_archs == finished.top_archs


def test_it_refuses_to_resume_a_checkpoint_of_another_configuration(space, task, tmp_path):
    supernet_job(space, epochs=1).run(task, checkpoint_dir=tmp_path)

    with pytest.raises(CheckpointError) as excinfo:
        supernet_job(space, epochs=1, lr=0.01).run(task, checkpoint_dir=tmp_path)
    assert excinfo.value.field == "checkpoint"
    with pytest.raises(CheckpointError):
        supernet_job(space, seed=1, epochs=1).run(task, checkpoint_dir=tmp_path)
    # Search settings do not change the trained supernet: that checkpoint is still this job's.
    assert supernet_job(space, epochs=1, cycles=6, top_k=2).run(task, checkpoint_dir=tmp_path).completed
    # resume=False starts over.
    assert supernet_job(space, epochs=1, lr=0.01).run(task, checkpoint_dir=tmp_path, resume=False).completed


def test_it_refuses_a_file_that_is_not_a_checkpoint(space, task, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")

    with pytest.raises(CheckpointError):
        supernet_job(space, epochs=1).run(task, checkpoint_dir=tmp_path)


def test_it_is_deterministic_for_a_seed(space, task, trained):
    _, first, _ = trained
    again = supernet_job(space).run(task)
    other = supernet_job(space, seed=1).run(task)

    assert comparable(again.history) == comparable(first.history)
    assert again.top_archs == first.top_archs
    assert comparable(other.history) != comparable(first.history)


def test_the_methods_register_in_the_one_registry_next_to_the_other_components():
    import search_engine
    from search_engine import registry
    from search_engine.oneshot import ONESHOT, create_oneshot

    assert ONESHOT is registry.ONESHOT is search_engine.ONESHOT
    assert create_oneshot is registry.create_oneshot is search_engine.create_oneshot
    assert registry.CATALOGUE["oneshot"] is ONESHOT
    assert {"darts", "supernet"} <= set(ONESHOT.names())
    assert type(create_oneshot("darts", create_space("nb201", C=4), seed=0)).name == "darts"
