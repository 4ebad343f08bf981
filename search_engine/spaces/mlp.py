"""A fully connected network space for tabular data (images are flattened)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import Option, register_space
from ..task import Task
from ..types import Architecture
from .base import SearchSpace
from .drawing import mlp_layers

WIDTHS = [32, 64, 128, 256, 512]
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
DROPOUTS = [0.0, 0.1, 0.2, 0.3]


class HiddenBlock(nn.Module):
    """Linear -> [BatchNorm] -> activation -> [Dropout], optionally plus a skip connection.

    The skip is the identity when the widths match and a bias-free linear projection when they
    do not, so `residual=True` changes every block of every network; otherwise two canonical
    architectures (e.g. a single 64-wide block fed 20 features, with and without `residual`)
    would build the same network and a search would spend trials on duplicates.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
        residual: bool,
    ):
        super().__init__()
        # BatchNorm's shift makes the linear layer's bias redundant.
        layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(out_features))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        if not residual:
            self.shortcut = None
        elif in_features == out_features:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out if self.shortcut is None else out + self.shortcut(x)


@register_space("mlp")
class MLPSpace(SearchSpace):
    """Multi-layer perceptron: depth, per-layer width, activation, dropout, batch norm, residual.

    `width_<i>` only matters when `i <= depth`. Image tasks are accepted and flattened.
    """

    options = {
        "max_depth": Option(int, 4, "largest number of hidden layers to search over", min=1, max=8),
    }

    def choices(self) -> dict[str, list]:
        max_depth = self.config["max_depth"]
        return {
            "depth": list(range(1, max_depth + 1)),
            **{f"width_{i}": list(WIDTHS) for i in range(1, max_depth + 1)},
            "activation": list(ACTIVATIONS),
            "dropout": list(DROPOUTS),
            "batch_norm": [False, True],
            "residual": [False, True],
        }

    def active(self, arch: Architecture) -> list[str]:
        widths = [f"width_{i}" for i in range(1, arch["depth"] + 1)]
        return ["depth", *widths, "activation", "dropout", "batch_norm", "residual"]

    def cardinality(self) -> int:
        # Inactive widths are canonicalised away, so depth d contributes len(WIDTHS)**d width settings.
        shared = len(ACTIVATIONS) * len(DROPOUTS) * 2 * 2
        return shared * sum(len(WIDTHS) ** depth for depth in range(1, self.config["max_depth"] + 1))

    def build(self, arch: Architecture, task: Task) -> nn.Module:
        arch = self.validate(arch)
        in_features = math.prod(task.input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(1, arch["depth"] + 1):
            width = arch[f"width_{i}"]
            layers.append(
                HiddenBlock(
                    in_features,
                    width,
                    arch["activation"],
                    arch["dropout"],
                    arch["batch_norm"],
                    arch["residual"],
                )
            )
            in_features = width
        layers.append(nn.Linear(in_features, task.num_classes))
        return nn.Sequential(*layers)

    def draw(self, arch: Architecture, highlight=()) -> str:
        """The layer stack as SVG (spaces/drawing.py)."""
        return mlp_layers(self.validate(arch), highlight)

    def describe(self, arch: Architecture) -> str:
        widths = "-".join(str(arch[f"width_{i}"]) for i in range(1, arch["depth"] + 1))
        parts = [widths, arch["activation"]]
        if arch["dropout"]:
            parts.append(f"dropout={arch['dropout']}")
        if arch["batch_norm"]:
            parts.append("bn")
        if arch["residual"]:
            parts.append("residual")
        return " ".join(parts)
