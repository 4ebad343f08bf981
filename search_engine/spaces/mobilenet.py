"""A MobileNetV2-style macro space (inverted residual blocks) for latency-constrained search."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import ConfigError, Option, register_space
from ..task import Task
from ..types import Architecture
from .base import SearchSpace
from .drawing import mobilenet_stages

DEPTHS = [1, 2, 3]
KERNELS = [3, 5, 7]
EXPANSIONS = [1, 3, 6]
SETTINGS = ("depth", "kernel", "expand")


class ConvBNReLU6(nn.Sequential):
    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int | tuple[int, int] = 1, groups: int = 1
    ):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> 1x1 linear projection (MobileNetV2, Sandler et al. 2018)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], expand: int, kernel_size: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        # With expansion 1 the expand conv would be a plain 1x1 C -> C; MobileNetV2 drops it.
        if expand != 1:
            layers.append(ConvBNReLU6(c_in, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, kernel_size, stride, groups=hidden),
            # No activation after the projection: the paper's "linear bottleneck".
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == (1, 1) and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


def halve(size: int) -> tuple[int, int]:
    """(stride, new size) along one axis: stride 2 unless the axis is already down to 1 pixel."""
    if size <= 1:
        return 1, size
    return 2, (size + 1) // 2  # a kxk conv, padding k//2, stride 2 gives ceil(size / 2)


@register_space("mobilenet")
class MobileNetSpace(SearchSpace):
    """MobileNetV2 inverted-residual stages: per-stage depth, kernel size and expansion, images only.

    Stage i has choices `stage<i>_depth`, `stage<i>_kernel` and `stage<i>_expand`. Every stage after
    the first starts with a stride-2 block, except along an axis already reduced to one pixel,
    so 8x8 inputs work with any number of stages.
    """

    options = {
        "stages": Option(
            int, 3, "number of stages (each halves the resolution after the first)", min=1, max=6
        ),
        "base_width": Option(int, 16, "channels of the stem and of the first stage", min=4, max=256),
        "stage_widths": Option(
            list, [], "output channels of each stage, comma-separated; empty doubles base_width per stage"
        ),
    }

    def __init__(self, **config):
        super().__init__(**config)
        self.widths = self._stage_widths()

    def _stage_widths(self) -> list[int]:
        stages, given = self.config["stages"], self.config["stage_widths"]
        if not given:
            return [self.config["base_width"] * 2**i for i in range(stages)]
        try:
            widths = [int(w) for w in given]
        except (TypeError, ValueError):
            raise ConfigError("stage_widths", f"expected whole numbers, got {given!r}") from None
        if len(widths) != stages:
            raise ConfigError("stage_widths", f"needs one width per stage ({stages}), got {len(widths)}")
        if min(widths) < 1:
            raise ConfigError("stage_widths", f"widths must be positive, got {widths}")
        return widths

    def choices(self) -> dict[str, list]:
        values = {"depth": DEPTHS, "kernel": KERNELS, "expand": EXPANSIONS}
        return {
            f"stage{stage}_{setting}": list(values[setting])
            for stage in range(1, self.config["stages"] + 1)
            for setting in SETTINGS
        }

    def cardinality(self) -> int:
        return (len(DEPTHS) * len(KERNELS) * len(EXPANSIONS)) ** self.config["stages"]

    def build(self, arch: Architecture, task: Task) -> nn.Module:
        arch = self.validate(arch)
        if task.kind != "image":
            raise ConfigError(
                "space",
                f"mobilenet needs image data (channels, height, width); {task.name!r} is {task.kind} "
                f"with input shape {tuple(task.input_shape)}",
            )
        in_channels, height, width = task.input_shape
        # The stem keeps full resolution: inputs here are small (8x8 to 32x32), not ImageNet's 224.
        c_in = self.config["base_width"]
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, c_in, 3)]
        for stage, c_out in enumerate(self.widths, start=1):
            stride = (1, 1)
            if stage > 1:
                (stride_h, height), (stride_w, width) = halve(height), halve(width)
                stride = (stride_h, stride_w)
            for block in range(arch[f"stage{stage}_depth"]):
                layers.append(
                    InvertedResidual(
                        c_in,
                        c_out,
                        stride if block == 0 else (1, 1),
                        arch[f"stage{stage}_expand"],
                        arch[f"stage{stage}_kernel"],
                    )
                )
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, task.num_classes)]
        return nn.Sequential(*layers)

    def draw(self, arch: Architecture, highlight=()) -> str:
        """The stage/block strip as SVG (spaces/drawing.py): kernel and expansion per block."""
        return mobilenet_stages(self.validate(arch), self.widths, highlight)

    def describe(self, arch: Architecture) -> str:
        return " ".join(
            f"s{stage}:d{arch[f'stage{stage}_depth']}k{arch[f'stage{stage}_kernel']}e{arch[f'stage{stage}_expand']}"
            for stage in range(1, self.config["stages"] + 1)
        )
