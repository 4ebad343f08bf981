"""Hardware constraints and the measurements behind them.

Static constraints (params, FLOPs, size) are computed from an untrained network before any
training; measured ones (latency) after. Each yields a value and a limit, and an infeasible
candidate is recorded with those values, never dropped silently.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import ConfigError
from .rules import CONSTRAINT_KEYS, CONSTRAINT_LIMITS, STATIC_METRICS
from .task import Task


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, task: Task) -> int:
    """Forward FLOPs for one input (torch.utils.flop_counter counts a multiply-add as 2)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(task.example_input(1))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_size_mb(model: nn.Module) -> float:
    """Size of the weights and buffers as stored (float32 here), in MB (10^6 bytes)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def measure_latency_ms(
    model: nn.Module,
    task: Task,
    device: str | torch.device = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = 1,
) -> float:
    """Median wall time of one batch-1 forward pass after warm-up, in milliseconds."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = task.example_input(1).to(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        timings = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    timings.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(timings)


@dataclass
class Constraints:
    """Upper limits; None means unconstrained. Latency is measured on `latency_device`."""

    max_params: int | None = None
    max_flops: int | None = None
    max_size_mb: float | None = None
    max_latency_ms: float | None = None
    latency_device: str = "cpu"

    def __post_init__(self):
        for field in CONSTRAINT_KEYS:
            value = getattr(self, field)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(field, f"must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> Constraints:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(unknown[0], "unknown constraint")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def static_values(self, model: nn.Module, task: Task) -> dict[str, dict]:
        """params / flops / size_mb as {value, limit, ok}; always computed (they are objectives too)."""
        values = {
            "params": count_params(model),
            "flops": count_flops(model, task),
            "size_mb": round(model_size_mb(model), 4),
        }
        return {metric: self._check(metric, values[metric]) for metric in STATIC_METRICS}

    def measured_values(self, model: nn.Module, task: Task) -> dict[str, dict]:
        latency = measure_latency_ms(model, task, self.latency_device)
        return {"latency_ms": self._check("latency_ms", round(latency, 4))}

    def _check(self, metric: str, value) -> dict:
        return _check(value, getattr(self, CONSTRAINT_LIMITS[metric]))


def _check(value, limit) -> dict:
    return {"value": value, "limit": limit, "ok": limit is None or value <= limit}


def feasible(values: dict[str, dict]) -> bool:
    return all(v["ok"] for v in values.values())


def violations(values: dict[str, dict]) -> list[str]:
    return [f"{k}={v['value']} > {v['limit']}" for k, v in values.items() if not v["ok"]]
