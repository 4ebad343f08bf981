"""Static constraints (params, FLOPs, size) and measured latency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_engine.constraints import (
    Constraints,
    count_flops,
    count_params,
    feasible,
    measure_latency_ms,
    model_size_mb,
    violations,
)
from search_engine.registry import ConfigError
from search_engine.task import Task


def shape_only_task(input_shape, num_classes=10) -> Task:
    empty_x = torch.zeros((0, *input_shape))
    empty_y = torch.zeros(0, dtype=torch.int64)
    return Task("shapes", empty_x, empty_y, empty_x, empty_y, empty_x, empty_y, tuple(input_shape), num_classes)


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5))


def test_it_counts_params():
    assert count_params(linear()) == 12 * 5 + 5


def test_it_counts_flops_as_two_per_multiply_add():
    assert count_flops(linear(), shape_only_task((12,))) == 2 * 12 * 5
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, shape_only_task((3, 16, 16))) == 2 * (3 * 3 * 3) * 8 * 16 * 16


def test_counting_flops_keeps_the_training_flag():
    model = linear().train()
    count_flops(model, shape_only_task((12,)))
    assert model.training


def test_it_sizes_weights_and_buffers_in_megabytes():
    model = nn.Sequential(nn.Linear(100, 50), nn.BatchNorm1d(50))
    floats = 100 * 50 + 50 + 2 * 50 + 2 * 50  # weights, biases, BN affine, BN running stats
    int64_counter = 8  # num_batches_tracked
    assert model_size_mb(model) == pytest.approx((floats * 4 + int64_counter) / 1e6)


def test_static_values_compare_with_the_limits():
    task = shape_only_task((12,))
    values = Constraints(max_params=100, max_flops=50).static_values(linear(), task)
    assert values["params"] == {"value": 65, "limit": 100, "ok": True}
    assert values["flops"] == {"value": 120, "limit": 50, "ok": False}
    assert values["size_mb"]["limit"] is None and values["size_mb"]["ok"]
    assert not feasible(values)
    assert violations(values) == ["flops=120 > 50"]


def test_it_rejects_bad_limits():
    with pytest.raises(ConfigError) as caught:
        Constraints.from_dict({"max_params": -1})
    assert caught.value.field == "max_params"
    with pytest.raises(ConfigError) as caught:
        Constraints.from_dict({"max_watts": 3})
    assert caught.value.field == "max_watts"


def test_it_round_trips_through_a_dict():
    constraints = Constraints(max_params=1000, max_latency_ms=5.0)
    assert Constraints.from_dict(constraints.to_dict()) == constraints


def test_measuring_latency_leaves_the_thread_count_as_it_was():
    # How stable the medians are is a figure, not a pass/fail: bench/bench_engine_timings.py prints it.
    previous_threads = torch.get_num_threads()
    assert measure_latency_ms(linear(), shape_only_task((12,)), warmup=1, repeats=3, threads=1) > 0
    assert torch.get_num_threads() == previous_threads


def test_measured_values_report_latency_against_its_limit():
    values = Constraints(max_latency_ms=1e-6).measured_values(linear(), shape_only_task((12,)))
    assert values["latency_ms"]["value"] > 0
    assert values["latency_ms"]["ok"] is False
