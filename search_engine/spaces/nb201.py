"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), built as in the benchmark's code.

One cell is a DAG of 4 nodes; each of its 6 edges (j <- i for i < j) carries one of 5 ops, so
there are exactly 5**6 = 15625 cells. The same cell is stacked in 3 stages of N cells, with the
benchmark's residual reduction block between stages. Architectures convert to and from the
benchmark's string form, so results can be looked up in (or compared with) NAS-Bench-201.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import ConfigError, Option, register_space
from ..task import Task
from ..types import Architecture
from .base import SearchSpace
from .drawing import nb201_cell

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
# Edge order is the benchmark string's: node 1's inputs, then node 2's, then node 3's.
EDGES = tuple((target, source) for target in range(1, NODES) for source in range(target))


def edge_label(target: int, source: int) -> str:
    return f"{target}<-{source}"


EDGE_LABELS = tuple(edge_label(target, source) for target, source in EDGES)


class Zero(nn.Module):
    """The `none` op. Multiplying (rather than allocating zeros) keeps device, dtype and shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(name: str, channels: int) -> nn.Module:
    # Cells never change shape (the reduction blocks do), so every op maps C -> C at stride 1.
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class Cell(nn.Module):
    """Node j = sum over i < j of op_{j<-i}(node i); the cell's output is the last node."""

    def __init__(self, arch: Architecture, channels: int):
        super().__init__()
        self.edges = list(EDGES)
        self.ops = nn.ModuleList(make_op(arch[edge_label(t, s)], channels) for t, s in self.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in range(1, NODES):
            incoming = [op(nodes[s]) for (t, s), op in zip(self.edges, self.ops) if t == target]
            node = incoming[0]
            for other in incoming[1:]:
                node = node + other
            nodes.append(node)
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's ResNet basic block between stages: channels double, resolution halves.

    The shortcut's average pool uses ceil_mode so odd sizes (MNIST's 7x7 after the first
    reduction) line up with the strided conv's ceil(H/2); on even sizes it equals the benchmark,
    and a 1x1 map stays 1x1, so even tiny images never shrink to nothing.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, arch: Architecture, in_channels: int, num_classes: int, channels: int, cells: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(width, width * 2))
                width *= 2
            layers.extend(Cell(arch, width) for _ in range(cells))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))))


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201 cell space: 6 edges x 5 ops (15625 cells), images only.

    Choice labels name the edges as "<to node><-<from node>", in the order of the
    benchmark's string "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|".
    """

    options = {
        "C": Option(
            int, 16, "channels of the first stage (doubled at each of the two reductions)", min=1, max=256
        ),
        "N": Option(int, 1, "cells per stage (the benchmark uses 5; 1 trains fast on CPUs)", min=1, max=10),
    }

    def choices(self) -> dict[str, list]:
        return {label: list(OPS) for label in EDGE_LABELS}

    def cardinality(self) -> int:
        return len(OPS) ** len(EDGES)

    def build(self, arch: Architecture, task: Task) -> nn.Module:
        arch = self.validate(arch)
        if task.kind != "image":
            raise ConfigError(
                "space",
                f"nb201 needs image data (channels, height, width); {task.name!r} is {task.kind} "
                f"with input shape {tuple(task.input_shape)}",
            )
        return NB201Network(arch, task.input_shape[0], task.num_classes, self.config["C"], self.config["N"])

    def describe(self, arch: Architecture) -> str:
        return self.to_string(arch)

    def draw(self, arch: Architecture, highlight=()) -> str:
        """The cell as an SVG DAG (spaces/drawing.py), `none` edges left out."""
        return nb201_cell(self.validate(arch), highlight)

    def to_string(self, arch: Architecture) -> str:
        """The NAS-Bench-201 string, e.g. "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|"."""
        arch = self.validate(arch)
        nodes = []
        for target in range(1, NODES):
            nodes.append("|" + "|".join(f"{arch[edge_label(target, s)]}~{s}" for s in range(target)) + "|")
        return "+".join(nodes)

    def from_string(self, text: str) -> Architecture:
        """Parse a NAS-Bench-201 string; anything malformed raises ConfigError("architecture", ...)."""
        if not isinstance(text, str):
            raise ConfigError("architecture", f"expected a NAS-Bench-201 string, got {type(text).__name__}")
        nodes = text.strip().split("+")
        if len(nodes) != NODES - 1:
            raise ConfigError(
                "architecture", f"expected {NODES - 1} nodes separated by '+', got {len(nodes)} in {text!r}"
            )
        arch = {}
        for target, node in enumerate(nodes, start=1):
            if len(node) < 2 or not (node.startswith("|") and node.endswith("|")):
                raise ConfigError("architecture", f"node {target} {node!r} must be written as |op~input|...|")
            entries = node[1:-1].split("|")
            if len(entries) != target:
                raise ConfigError(
                    "architecture",
                    f"node {target} needs {target} incoming edges, got {len(entries)} in {node!r}",
                )
            for source, entry in enumerate(entries):
                op, sep, written_source = entry.partition("~")
                if not sep or op not in OPS:
                    raise ConfigError(
                        "architecture",
                        f"{entry!r} in node {target} is not op~input with op one of {', '.join(OPS)}",
                    )
                # The benchmark always lists inputs 0..j-1 in order; anything else is a typo, not a variant.
                if written_source != str(source):
                    raise ConfigError(
                        "architecture",
                        f"{entry!r} in node {target} should read from node {source}, not {written_source!r}",
                    )
                arch[edge_label(target, source)] = op
        return self.validate(arch)
