"""The "train" and "low_fidelity" estimators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_engine.estimators.training import (
    LowFidelityEstimator,
    TrainEstimator,
    evaluate_accuracy,
    stratified_subset,
)
from search_engine.registry import ESTIMATORS, ConfigError, create_estimator
from search_engine.task import make_task
from search_engine.types import TrialPruned

EPOCH_KEYS = {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "lr"}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def blobs():
    """Four Gaussian blobs in 8 dimensions: learnable in a couple of epochs, not trivially."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.5, size=(4, 8))
    y = np.repeat(np.arange(4), 100)
    X = centers[y] + rng.normal(0, 1.0, size=(len(y), 8))
    return make_task("blobs", X, y, seed=0)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return make_task("digits", data.data.reshape(-1, 1, 8, 8) / 16.0, data.target, seed=0)


def small_mlp(seed: int = 0, dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 4)
    )


def small_conv(seed: int = 0, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )  # fmt: skip


class Recorder:
    def __init__(self, prune_at: int | None = None):
        self.calls: list[tuple[int, dict]] = []
        self.prune_at = prune_at

    def __call__(self, step: int, metrics: dict) -> None:
        self.calls.append((step, dict(metrics)))
        if step == self.prune_at:
            raise TrialPruned(f"pruned at {step}")


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("time_s")}


def test_it_registers_both_estimators_sharing_one_trainer():
    assert ESTIMATORS.get("train") is TrainEstimator
    assert ESTIMATORS.get("low_fidelity") is LowFidelityEstimator
    assert issubclass(LowFidelityEstimator, TrainEstimator)
    assert LowFidelityEstimator.estimate is TrainEstimator.estimate


def test_it_reports_every_epoch(blobs):
    report = Recorder()
    result = create_estimator("train", epochs=3, device="cpu").estimate({}, small_mlp(), blobs, {"seed": 1}, report)
    assert [step for step, _ in report.calls] == [1, 2, 3]
    for _, metrics in report.calls:
        assert set(metrics) == EPOCH_KEYS
        assert all(isinstance(v, float) for v in metrics.values())
    assert result.metrics["epochs"] == 3
    assert result.cost_s > 0


def test_it_is_deterministic_for_the_same_seed(blobs):
    estimator = create_estimator("train", epochs=3, device="cpu")
    runs = []
    for _ in range(2):
        report = Recorder()
        model = small_mlp(seed=0)
        result = estimator.estimate({}, model, blobs, {"seed": 7}, report)
        runs.append((result, [without_timings(m) for _, m in report.calls], model.state_dict()))
    (first, first_reports, first_state), (second, second_reports, second_state) = runs
    assert without_timings(first.metrics) == without_timings(second.metrics)
    assert first.objective == second.objective
    assert first_reports == second_reports
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)

    other = estimator.estimate({}, small_mlp(seed=0), blobs, {"seed": 8}, Recorder())
    assert without_timings(other.metrics) != without_timings(first.metrics)


def test_it_leaves_the_global_rng_alone(blobs):
    model = small_mlp()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_estimator("train", epochs=1, device="cpu").estimate({}, model, blobs, {"seed": 5}, Recorder())
    assert torch.equal(torch.rand(3), expected)


def test_its_objective_is_the_val_accuracy_of_the_model_it_leaves(blobs):
    model = small_mlp()
    result = create_estimator("train", epochs=4, device="cpu").estimate({}, model, blobs, {"seed": 0}, Recorder())
    assert result.objective == result.metrics["val_acc"]
    assert next(model.parameters()).device.type == "cpu"
    assert not model.training
    assert evaluate_accuracy(model, blobs.X_val, blobs.y_val) == pytest.approx(result.objective)
    assert evaluate_accuracy(model, blobs.X_test, blobs.y_test) == pytest.approx(result.metrics["test_acc"])
    assert 0.6 < result.metrics["test_acc"] <= 1.0
    assert {"train_time_s", "epochs", "best_epoch", "test_loss"} <= set(result.metrics)


def test_it_restores_the_best_epoch_not_the_last(blobs):
    report = Recorder()
    # A learning rate this high makes validation accuracy jump around between epochs.
    estimator = create_estimator("train", optimizer="sgd", lr=3.0, cosine=False, epochs=6, device="cpu")
    result = estimator.estimate({}, small_mlp(dropout=0.0), blobs, {"seed": 3}, report)
    per_epoch = [m["val_acc"] for _, m in report.calls]
    assert per_epoch[-1] < max(per_epoch), "this run is meant to end below its best epoch"
    assert result.objective == max(per_epoch)
    assert result.metrics["best_epoch"] == per_epoch.index(max(per_epoch)) + 1
    assert result.metrics["last_val_acc"] == per_epoch[-1]


def test_it_stops_when_report_prunes(blobs):
    model = small_mlp()
    report = Recorder(prune_at=2)
    with pytest.raises(TrialPruned) as caught:
        create_estimator("train", epochs=5, device="cpu").estimate({}, model, blobs, {"seed": 0}, report)
    assert [step for step, _ in report.calls] == [1, 2]
    partial = caught.value.result
    assert partial.metrics["epochs"] == 2 and partial.metrics["pruned"] is True
    assert partial.objective == max(m["val_acc"] for _, m in report.calls)
    # Still usable: on the CPU, in eval mode, holding the best weights so far.
    assert next(model.parameters()).device.type == "cpu" and not model.training
    assert evaluate_accuracy(model, blobs.X_val, blobs.y_val) == pytest.approx(partial.objective)


def test_it_stops_early_without_improvement(blobs):
    report = Recorder()
    # Too small a step to change float32 weights: validation never improves after epoch 1.
    model = nn.Sequential(nn.Linear(8, 4))
    estimator = create_estimator("train", lr=1e-12, epochs=10, patience=2, device="cpu")
    result = estimator.estimate({}, model, blobs, {"seed": 0}, report)
    assert len(report.calls) == 3
    assert result.metrics["epochs"] == 3
    assert result.metrics["stopped_early"] is True
    assert result.metrics["best_epoch"] == 1


def test_the_budget_overrides_epochs(blobs):
    report = Recorder()
    create_estimator("train", epochs=10, device="cpu").estimate({}, small_mlp(), blobs, {"epochs": 2}, report)
    assert len(report.calls) == 2


def test_low_fidelity_uses_less_data_and_fewer_epochs(blobs):
    report = Recorder()
    result = create_estimator("low_fidelity", device="cpu").estimate({}, small_mlp(), blobs, {"seed": 0}, report)
    assert len(report.calls) == 2
    assert result.metrics["train_samples"] == pytest.approx(0.25 * len(blobs.y_train), abs=4)
    full = create_estimator("train", epochs=1, device="cpu").estimate({}, small_mlp(), blobs, {}, Recorder())
    assert full.metrics["train_samples"] == len(blobs.y_train)
    # Validation is never subsampled, so low- and full-fidelity scores share a scale.
    assert result.objective == result.metrics["val_acc"]


def test_stratified_subset_keeps_every_class_and_is_seeded():
    y = torch.tensor([0] * 40 + [1] * 20 + [2] * 3)
    subset = stratified_subset(y, 0.25, seed=1)
    assert torch.bincount(y[subset]).tolist() == [10, 5, 1]
    assert torch.equal(subset, stratified_subset(y, 0.25, seed=1))
    assert not torch.equal(subset, stratified_subset(y, 0.25, seed=2))


def test_it_rejects_bad_options():
    with pytest.raises(ConfigError) as caught:
        create_estimator("train", optimizer="rmsprop")
    assert caught.value.field == "optimizer"
    with pytest.raises(ConfigError):
        create_estimator("train", epochs=0)
    with pytest.raises(ConfigError):
        create_estimator("low_fidelity", data_fraction=1.5)


def test_it_rejects_a_bad_budget(blobs):
    with pytest.raises(ConfigError) as caught:
        create_estimator("train", device="cpu").estimate({}, small_mlp(), blobs, {"epochs": "many"}, Recorder())
    assert caught.value.field == "budget.epochs"


def test_it_trains_a_registered_space(blobs):
    from search_engine.registry import create_space

    space = create_space("mlp")
    arch = space.sample(np.random.default_rng(0))
    torch.manual_seed(0)
    model = space.build(arch, blobs)
    result = create_estimator("low_fidelity", device="cpu").estimate(arch, model, blobs, {"seed": 0}, Recorder())
    assert 0.0 <= result.objective <= 1.0


def test_the_defaults_train_a_small_conv_net_on_digits_in_three_epochs(digits):
    result = create_estimator("train", epochs=3, device="cpu").estimate(
        {}, small_conv(), digits, {"seed": 0}, Recorder()
    )
    assert result.metrics["test_acc"] >= 0.97


def test_it_refuses_a_task_it_cannot_score(blobs):
    from dataclasses import replace

    no_val = replace(blobs, X_val=blobs.X_val[:0], y_val=blobs.y_val[:0])
    with pytest.raises(ConfigError, match="validation"):
        create_estimator("train", device="cpu").estimate({}, small_mlp(), no_val, {}, Recorder())
    tiny = replace(blobs, X_train=blobs.X_train[:3], y_train=blobs.y_train[:3])
    with pytest.raises(ConfigError) as caught:
        create_estimator("low_fidelity", device="cpu", data_fraction=0.01).estimate(
            {}, small_mlp(), tiny, {}, Recorder()
        )
    assert caught.value.field == "data_fraction"
