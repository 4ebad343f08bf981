"""The exported graph's front and back: raw source rows in, class probabilities out.

A loader describes in `task.meta["raw_input"]` how its source's rows become the network's input:
the dtype the graph takes, a divisor (`scale`: pixel values to 0..1), the layout (`reshape` to the
network's shape, or `NHWC` images moved to channel-first) and, from make_task, the standardisation
(`meta["normalize"]`). `RawInputModel` does exactly those steps, in the loader's order and in
float32 like the loader, so a user feeds the arrays as their file or package holds them.
"""

from __future__ import annotations

import torch
from torch import nn

from .task import Task, default_raw_input

DTYPES = {"float32": torch.float32, "uint8": torch.uint8}


def raw_input_spec(task: Task) -> dict:
    return task.meta.get("raw_input") or default_raw_input(task.input_shape)


class RawInputModel(nn.Module):
    """cast -> / scale -> layout -> (x - mean) / std -> network -> softmax."""

    def __init__(self, network: nn.Module, spec: dict, normalize: dict | None, input_shape: tuple[int, ...]):
        super().__init__()
        self.network = network
        self.scale = float(spec["scale"]) if spec.get("scale") else None
        self.channels_last = spec.get("layout") == "NHWC"
        self.input_shape = tuple(int(d) for d in input_shape)
        self.standardize = bool(normalize)
        mean, std = (normalize["mean"], normalize["std"]) if normalize else (0.0, 1.0)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.scale is not None:
            x = x / self.scale
        x = x.permute(0, 3, 1, 2) if self.channels_last else x.reshape(-1, *self.input_shape)
        if self.standardize:
            x = (x - self.mean) / self.std
        return torch.softmax(self.network(x), dim=1)


def raw_input_model(network: nn.Module, task: Task) -> RawInputModel:
    wrapped = RawInputModel(network, raw_input_spec(task), task.meta.get("normalize"), task.input_shape)
    return wrapped.train(network.training)


def example_raw_batch(spec: dict, batch: int) -> torch.Tensor:
    """Random rows of the graph's input type; its own generator, so torch's global RNG stays put."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, *spec["shape"])
    if spec["dtype"] == "uint8":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    return torch.randn(shape, generator=generator) * (spec.get("scale") or 1.0)
