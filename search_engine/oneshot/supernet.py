"""Weight-sharing supernet for NAS-Bench-201, trained with uniform single-path sampling.

Every edge of every cell holds all five NAS-Bench-201 ops, built by the space's own `make_op`
(so a path through the supernet is op-for-op the network `NB201Space.build` makes). Each training
step samples one op per edge uniformly (Guo et al. 2020, "Single Path One-Shot Neural Architecture
Search with Uniform Sampling", ECCV) from a seeded torch.Generator; the same cell is used in every
position, as in the space. After training, candidates are scored with inherited weights on the
validation split, optionally after BatchNorm recalibration (the running statistics of a shared BN
are a mixture over all paths; re-estimating them for the one path is what makes inherited
accuracies rank well, see SPOS section 3.3), and searched by regularized evolution (the engine's
`evolution` strategy, asked with a history of inherited scores). The top-k are retrained as
normal trials (the `fixed` strategy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..estimators.training import DEFAULT_LR, evaluate_accuracy
from ..registry import ConfigError, Option, register_oneshot
from ..runtime import derive_seed, seeded
from ..spaces.nb201 import EDGE_LABELS, EDGES, NODES, OPS, NB201Network, ResidualReduction, make_op
from ..strategies.evolution import RegularizedEvolution
from ..task import Task
from ..types import COMPLETED, Architecture, TrialRecord
from .job import OneShotJob, ProgressFn

SKIP = OPS.index("skip_connect")


class MixedEdge(nn.Module):
    """All five ops of one edge. Forward with `choice` (an op index: single path) or with
    `weights` (a probability per op: DARTS' continuous relaxation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.candidates = nn.ModuleList(make_op(name, channels) for name in OPS)

    def forward(
        self, x: torch.Tensor, choice: int | None = None, weights: torch.Tensor | None = None,
        aux_skip: float = 0.0,
    ) -> torch.Tensor:
        if choice is not None:
            return self.candidates[choice](x)
        out = sum(w * op(x) for w, op in zip(weights, self.candidates))
        if aux_skip:
            # DARTS-: a parameter-free skip beside the mixed op, outside the softmax.
            out = out + aux_skip * x
        return out


class SuperCell(nn.Module):
    """The NAS-Bench-201 cell with a MixedEdge on each of its 6 edges.

    Module names mirror `nb201.Cell` (`ops.<edge>`), so one path's weights map one-to-one onto
    a standalone network's (`NB201SuperNet.extract`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.edges = list(EDGES)
        self.ops = nn.ModuleList(MixedEdge(channels) for _ in self.edges)

    def forward(self, x, choices=None, weights=None, aux_skip: float = 0.0) -> torch.Tensor:
        nodes = [x]
        for target in range(1, NODES):
            node = None
            for e, ((t, s), edge) in enumerate(zip(self.edges, self.ops)):
                if t != target:
                    continue
                out = edge(
                    nodes[s],
                    choice=None if choices is None else choices[e],
                    weights=None if weights is None else weights[e],
                    aux_skip=aux_skip,
                )
                node = out if node is None else node + out
            nodes.append(node)
        return nodes[-1]


class NB201SuperNet(nn.Module):
    """Stem, 3 stages of N SuperCells with the benchmark's residual reductions, head: the layout
    and parameter names of `nb201.NB201Network`, with every op on every edge."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, cells: int):
        super().__init__()
        self.shape = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels, "cells": cells}
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(width, width * 2))
                width *= 2
            layers.extend(SuperCell(width) for _ in range(cells))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x, choices=None, weights=None, aux_skip: float = 0.0) -> torch.Tensor:
        """`choices`: one op index per edge (a path); `weights`: (6, 5) op weights per edge."""
        if (choices is None) == (weights is None):
            raise ValueError("give exactly one of choices (a path) or weights (a mixture)")
        x = self.stem(x)
        for layer in self.cells:
            if isinstance(layer, SuperCell):
                x = layer(x, choices=choices, weights=weights, aux_skip=aux_skip)
            else:
                x = layer(x)
        return self.classifier(self.head(x))

    def extract(self, arch: Architecture) -> NB201Network:
        """A standalone `NB201Network` for `arch` holding copies of the supernet's weights for
        that path (and its BN statistics); the supernet is left untouched."""
        shape = self.shape
        net = NB201Network(arch, shape["in_channels"], shape["num_classes"], shape["channels"], shape["cells"])
        source = self.state_dict()
        choices = arch_to_choices(arch)
        inherited = {}
        for key in net.state_dict():
            parts = key.split(".")
            # cells.<layer>.ops.<edge>.<rest> -> cells.<layer>.ops.<edge>.candidates.<op>.<rest>
            if parts[0] == "cells" and len(parts) > 4 and parts[2] == "ops":
                edge = int(parts[3])
                parts = parts[:4] + ["candidates", str(choices[edge])] + parts[4:]
            inherited[key] = source[".".join(parts)].detach().clone()
        net.load_state_dict(inherited)
        return net.to(next(self.parameters()).device)


def arch_to_choices(arch: Architecture) -> list[int]:
    return [OPS.index(arch[label]) for label in EDGE_LABELS]


def choices_to_arch(choices) -> Architecture:
    return {label: OPS[int(c)] for label, c in zip(EDGE_LABELS, choices)}


def build_supernet(space, task: Task) -> NB201SuperNet:
    if task.kind != "image":
        raise ConfigError("task", f"nb201 needs image data; {task.name!r} is {task.kind}")
    return NB201SuperNet(task.input_shape[0], task.num_classes, space.config["C"], space.config["N"])


# -- inherited-weight evaluation ---------------------------------------------------------------


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running statistics from `batches` (train mode, no grad):
    reset, then a cumulative average (momentum None) so each batch counts equally."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        for xb in batches:
            model(xb)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


def calibration_batches(task: Task, n_batches: int, batch_size: int, seed: int, device) -> list[torch.Tensor]:
    """The same `n_batches` training batches for every candidate, so their scores compare."""
    n = len(task.y_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    size = min(batch_size, n)
    return [task.X_train[order[i : i + size]].to(device) for i in range(0, min(n, n_batches * size), size)
            if len(order[i : i + size]) > 1]


def inherited_accuracy(
    supernet: NB201SuperNet,
    arch: Architecture,
    task: Task,
    recalibrate: bool = True,
    *,
    split: str = "val",
    bn_batches: int = 4,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Accuracy of `arch` on `task`'s `split` ("val" or "test") with the supernet's weights for
    that path, without any training. BN recalibration (on a standalone copy; the supernet's own
    weights and statistics are never modified) uses `bn_batches` seeded training batches."""
    if split not in ("val", "test"):
        raise ConfigError("split", f"expected 'val' or 'test', got {split!r}")
    device = next(supernet.parameters()).device
    net = supernet.extract(arch)
    if recalibrate:
        recalibrate_bn(net, calibration_batches(task, bn_batches, batch_size, seed, device))
    X, y = (task.X_val, task.y_val) if split == "val" else (task.X_test, task.y_test)
    return evaluate_accuracy(net, X, y, device)


def _make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def cosine_lr(base_lr: float, step: int, total_steps: int, min_lr: float = 0.0) -> float:
    progress = min(step, total_steps) / max(total_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + float(np.cos(np.pi * progress)))


def steps_per_epoch(n: int, batch_size: int) -> tuple[int, int]:
    """(batch size, steps): a trailing batch of one sample breaks BatchNorm, so it is skipped."""
    batch_size = min(batch_size, n)
    return batch_size, n // batch_size + (1 if n % batch_size > 1 else 0)


# -- the job -----------------------------------------------------------------------------------

# On digits (C=8, N=1, 3 epochs) SGD 0.1 with batch 32 gave the best inherited accuracies of
# sgd 0.05/0.1 and adam 3e-3/1e-2 at batch 32/64 (mean of 3 fixed cells: 0.60 vs 0.24-0.49).
SUPERNET_DEFAULT_LR = {"sgd": 0.1, "adam": DEFAULT_LR["adam"]}


@register_oneshot("supernet")
class SupernetJob(OneShotJob):
    """Weight-sharing supernet (single-path uniform sampling), then evolution on inherited accuracy.

    Progress per epoch: supernet_loss and supernet_acc (training loss/accuracy of the sampled
    paths), val_acc (mean inherited validation accuracy of `monitor_archs` fixed random cells).
    After training, regularized evolution scores `cycles` candidates by inherited validation
    accuracy and the `top_k` best are returned for retraining.
    """

    score_name = "inherited_val_acc"
    options = {
        **OneShotJob.common_options,
        "optimizer": Option(str, "sgd", "optimizer of the shared weights", choices=("sgd", "adam")),
        "batch_size": Option(int, 32, "mini-batch size (one sampled path per batch)", min=2, max=65536),
        "lr": Option(float, 0.0, "learning rate (cosine-decayed); 0 = sgd 0.1, adam 1e-2", min=0.0),
        "momentum": Option(float, 0.9, "SGD momentum (Nesterov when > 0)", min=0.0, max=0.999),
        "weight_decay": Option(float, 5e-4, "L2 penalty of the shared weights", min=0.0),
        "bn_recalibration": Option(bool, True, "re-estimate BN statistics per candidate before scoring"),
        "bn_batches": Option(int, 4, "training batches used for one BN recalibration", min=1, max=1000),
        "monitor_archs": Option(int, 3, "fixed random cells whose inherited val_acc is reported "
                                        "each epoch; 0 = off", min=0, max=100),
        "population_size": Option(int, 20, "evolution: population (the first ones are random)", min=2),
        "sample_size": Option(int, 5, "evolution: tournament size", min=1),
        "cycles": Option(int, 100, "evolution: candidates scored with inherited weights", min=1, max=15625),
    }
    # The evolution after training does not change the trained supernet: a checkpoint can be
    # searched again with other search settings.
    resumable_with_other = OneShotJob.resumable_with_other | {
        "bn_recalibration", "bn_batches", "population_size", "sample_size", "cycles",
    }

    def __init__(self, space, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        if self.config["sample_size"] > self.config["population_size"]:
            raise ConfigError("sample_size", f"must be <= population_size ({self.config['population_size']})")

    def setup(self, task: Task, device: torch.device) -> None:
        config = self.config
        with seeded(derive_seed(self.seed, "supernet", "init")):
            self.model = build_supernet(self.space, task).to(device)
        lr = config["lr"] or SUPERNET_DEFAULT_LR[config["optimizer"]]
        self.base_lr = lr
        self.optimizer = _make_optimizer(
            config["optimizer"], self.model.parameters(), lr, config["momentum"], config["weight_decay"]
        )
        self.generators = {
            "data": torch.Generator().manual_seed(derive_seed(self.seed, "supernet", "data")),
            "path": torch.Generator().manual_seed(derive_seed(self.seed, "supernet", "path")),
        }
        self.X_train, self.y_train = task.X_train.to(device), task.y_train.to(device)
        self.batch_size, self.steps = steps_per_epoch(len(task.y_train), config["batch_size"])
        rng = np.random.default_rng([self.seed, 201])
        self.monitored = [self.space.sample(rng) for _ in range(config["monitor_archs"])]

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {"weights": self.optimizer.state_dict()},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizers"]["weights"])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k].cpu())

    def sample_path(self) -> list[int]:
        return torch.randint(len(OPS), (len(EDGES),), generator=self.generators["path"]).tolist()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        model, config = self.model, self.config
        model.train()
        n = len(self.y_train)
        order = torch.randperm(n, generator=self.generators["data"]).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        total_steps = self.steps * config["epochs"]
        step = (epoch - 1) * self.steps
        lr = self.base_lr
        for start in range(0, self.steps * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = self.X_train[idx], self.y_train[idx]
            lr = cosine_lr(self.base_lr, step, total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logits = model(xb, choices=self.sample_path())
            loss = self.weight_step(logits, yb, model.parameters())
            with torch.no_grad():
                loss_sum += loss.double() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            step += 1
        values: dict[str, Any] = {
            "supernet_loss": loss_sum.item() / seen,
            "supernet_acc": correct.item() / seen,
            "lr": lr,
        }
        if self.monitored:
            accs = [self.score(arch) for arch in self.monitored]
            values["val_acc"] = float(np.mean(accs))
            values["val_acc_monitored"] = accs
        return values

    def score(self, arch: Architecture) -> float:
        return inherited_accuracy(
            self.model, arch, self.task, self.config["bn_recalibration"],
            bn_batches=self.config["bn_batches"], batch_size=self.config["batch_size"],
            seed=derive_seed(self.seed, "supernet", "bn"),
        )

    def finish(self, report: ProgressFn, should_stop: Callable[[], bool]) -> tuple[list, dict]:
        """Regularized evolution over inherited validation accuracy, through the engine's own
        `evolution` strategy: its ask() reads a history of TrialRecords, so scored candidates
        are simply appended to a history, as the loop does with trained ones."""
        config = self.config
        evolution = RegularizedEvolution(
            self.space, seed=derive_seed(self.seed, "supernet", "evolution"),
            population_size=config["population_size"], sample_size=config["sample_size"],
        )
        history: list[TrialRecord] = []
        stopped = False
        best = -1.0
        for number in range(config["cycles"]):
            (candidate,) = evolution.ask(history, 1)
            arch = self.space.validate(candidate.arch)
            score = self.score(arch)
            best = max(best, score)
            history.append(TrialRecord(number, arch, COMPLETED, objective=score, meta=candidate.meta))
            if (number + 1) % 10 == 0 or number + 1 == config["cycles"]:
                report(number + 1, {"phase": "search", "evaluated": number + 1, "best_val_acc": best})
                if number + 1 < config["cycles"] and should_stop():
                    stopped = True
                    break
        ranked = sorted(history, key=lambda r: (-r.objective, r.number))
        top = [(dict(r.arch), float(r.objective)) for r in ranked[: config["top_k"]]]
        final = {
            "evaluated": len(history),
            "best_val_acc": top[0][1] if top else None,
            "top": [{"genotype": self.space.to_string(a), "inherited_val_acc": s} for a, s in top],
        }
        if stopped:
            final["stopped"] = True
        return top, final
