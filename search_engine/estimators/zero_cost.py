"""Zero-cost proxies: score an untrained network from one or a few mini-batches, no training.

Every proxy is an Estimator with `trains_model = False` and a higher-is-better objective:

- `synflow`  (Tanaka et al. 2020): weights linearised to |theta| on a double-precision copy with
  BatchNorm in eval mode (fresh running stats make it a near-identity, as removing it would), an
  all-ones input of the task's shape, R = sum of the outputs; score = sum |theta * dR/dtheta| over
  the weights of the Conv/Linear layers (as in Abdelfattah et al.'s reference code). Data-free.
- `naswot`   (Mellor et al. 2021): binary activation codes of one mini-batch (a unit's code is 1
  when its *pre-activation* is > 0, which is also "ReLU output > 0", so in-place ReLUs, ReLU6,
  LeakyReLU, GELU, SiLU, ... all give the same code as in the paper); kernel K = N_A - Hamming
  distance; score = log|K| (slogdet). A network without activation modules is coded by the sign of
  its Conv/Linear outputs instead (metric `naswot_units="linear"`). BatchNorm in train mode, as in
  the paper's code.
- `grad_norm`: global L2 norm of the gradients of the cross-entropy loss on the mini-batch(es),
  over the Conv/Linear weights.
- `snip`     (Lee et al. 2019): sum |theta * dL/dtheta| over the Conv/Linear weights.
- `params`   : the number of trainable parameters, the honest baseline every proxy must beat.

The mini-batch is the same for every candidate of a task (drawn with a generator seeded from the
task's name and the `batch_seed` option), so scores of different architectures are compared on
the same data; the initial weights come from the trial seed the loop used to build the network,
and `budget["seed"]` seeds anything else random (dropout), so a score is deterministic for a seed.

The candidate network is never modified: proxies work on a deep copy (synflow rewrites weights,
naswot/snip update BatchNorm statistics and gradients). A NaN or infinite score (a singular naswot
kernel for a network that maps every input to the same codes, an overflow) becomes
INVALID_SCORE, a very low finite objective, with `score_invalid: True` in the metrics: the trial
completes and ranks last instead of crashing the search.

`prescreen(...)` (used by the `zc_prescreen` strategy) scores many architectures with one proxy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ConfigError, Option, create_estimator, register_estimator
from ..runtime import DEVICES, derive_seed, resolve_device, seeded
from ..task import Task
from ..types import Architecture, ReportFn, Result
from .base import Estimator

INVALID_SCORE = -1e30
"""Objective of a proxy whose score is NaN or infinite: below any valid score of every proxy."""

PROXIES = ("synflow", "naswot", "grad_norm", "snip", "params")

# Modules whose input's sign defines a unit's binary code for naswot: for the ReLU family that
# is exactly "the unit is on"; for smooth ones (GELU, SiLU, Tanh, ...) it is the same split.
ACTIVATION_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.GELU, nn.SiLU, nn.ELU, nn.CELU,
    nn.SELU, nn.Hardswish, nn.Mish, nn.Tanh, nn.Hardtanh,
)
WEIGHT_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYER_TYPES) and m.weight is not None]


def select_batches(task: Task, batch_size: int, n_batches: int, batch_seed: int) -> list[tuple]:
    """`n_batches` disjoint training mini-batches, the same for every candidate of the task."""
    n = len(task.y_train)
    if n < 2:
        raise ConfigError("task", "zero-cost proxies need at least two training samples")
    generator = torch.Generator().manual_seed(derive_seed("zero-cost-batch", task.name, n, batch_seed))
    order = torch.randperm(n, generator=generator)
    size = min(batch_size, n)
    batches = []
    for b in range(n_batches):
        idx = order[b * size : (b + 1) * size]
        if len(idx) < 2:  # BatchNorm in train mode needs two samples; a dataset smaller than asked
            break
        batches.append((task.X_train[idx], task.y_train[idx]))
    return batches


class ZeroCostProxy(Estimator):
    """Base of the proxies: copies the network, picks the batches, times and guards the score."""

    trains_model = False
    uses_data: ClassVar[bool] = True
    options = {
        "batch_size": Option(int, 64, "samples per mini-batch", min=2, max=4096),
        "n_batches": Option(int, 1, "mini-batches scored (the score is averaged over them)", min=1, max=64),
        "batch_seed": Option(int, 0, "picks the mini-batch (the same for every candidate of a task)", min=0),
        "device": Option(str, "cpu", "where to score", choices=DEVICES),
        "threads": Option(int, 1, "torch CPU threads while scoring; 0 = leave torch's setting", min=0),
    }

    def score(self, model: nn.Module, task: Task, batches: list[tuple], device: torch.device) -> tuple[float, dict]:
        """(score, extra metrics) for `model`, a private copy the proxy may modify."""
        raise NotImplementedError

    def estimate(
        self,
        arch: Architecture,
        model: nn.Module,
        task: Task,
        budget: dict[str, Any],
        report: ReportFn,
    ) -> Result:
        device = resolve_device(self.config["device"])
        seed = int((budget or {}).get("seed") or 0)
        started = time.perf_counter()
        with seeded(seed, self.config["threads"] or None):
            batches = []
            if self.uses_data:
                batches = [
                    (x.to(device), y.to(device))
                    for x, y in select_batches(
                        task, self.config["batch_size"], self.config["n_batches"], self.config["batch_seed"]
                    )
                ]
            work = copy.deepcopy(model).to(device)
            try:
                score, extra = self.score(work, task, batches, device)
            finally:
                del work
        elapsed = time.perf_counter() - started
        score = float(score)
        metrics: dict[str, Any] = {f"{self.name}_score": score, "score_time_s": elapsed, **extra}
        objective = score
        if not math.isfinite(score):
            metrics[f"{self.name}_score"] = None  # NaN and infinities are not JSON
            metrics["score_invalid"] = True
            objective = INVALID_SCORE
        report(1, {f"{self.name}_score": objective, "score_time_s": elapsed})
        return Result(metrics=metrics, objective=objective, cost_s=elapsed)


@register_estimator("synflow")
class SynFlow(ZeroCostProxy):
    """SynFlow (Tanaka et al.): data-free synaptic saliency with |weights| and an all-ones input."""

    uses_data = False
    options = {k: v for k, v in ZeroCostProxy.options.items() if k in ("device", "threads")}

    def score(self, model, task, batches, device):
        # Double precision: the product of |weights| over depth overflows float32 quickly.
        model = model.double().eval()
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.is_floating_point():
                    tensor.abs_()
        model.zero_grad(set_to_none=True)
        ones = torch.ones((1, *task.input_shape), dtype=torch.float64, device=device)
        output = model(ones).sum()
        if not output.requires_grad:  # a network without trainable weights has no saliency
            return 0.0, {}
        output.backward()
        total = torch.zeros((), dtype=torch.float64, device=device)
        for layer in weight_layers(model):
            if layer.weight.grad is not None:
                total += (layer.weight * layer.weight.grad).abs().sum()
        return total.item(), {}


@register_estimator("naswot")
class NASWOT(ZeroCostProxy):
    """NASWOT (Mellor et al.): log-determinant of the binary activation-pattern kernel of one batch."""

    def score(self, model, task, batches, device):
        model.train()  # BatchNorm on batch statistics, as in the paper's code
        units = "activation"
        hooked = [m for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]
        if not hooked:
            units = "linear"
            hooked = weight_layers(model)
        if not hooked:
            return float("nan"), {"naswot_units": "none"}
        scores = []
        for x, _ in batches:
            kernel = torch.zeros((len(x), len(x)), dtype=torch.float64, device=device)

            def accumulate(codes: torch.Tensor, kernel=kernel) -> None:
                c = codes.reshape(codes.shape[0], -1).to(torch.float64)
                kernel.add_(c @ c.T).add_((1.0 - c) @ (1.0 - c).T)

            # A pre-hook sees an activation's input before an in-place ReLU overwrites it.
            if units == "activation":
                handles = [m.register_forward_pre_hook(lambda _m, inp: accumulate(inp[0] > 0)) for m in hooked]
            else:
                handles = [m.register_forward_hook(lambda _m, _inp, out: accumulate(out > 0)) for m in hooked]
            try:
                with torch.no_grad():
                    model(x)
            finally:
                for handle in handles:
                    handle.remove()
            sign, logdet = torch.linalg.slogdet(kernel)
            # K is a sum of Gram matrices (positive semi-definite): a non-positive sign means singular.
            scores.append(logdet.item() if sign.item() > 0 else float("-inf"))
        return sum(scores) / len(scores), {"naswot_units": units}


class _GradientProxy(ZeroCostProxy):
    """Backpropagates the cross-entropy of the batches (BatchNorm in train mode) once."""

    def score(self, model, task, batches, device):
        model.train()
        model.zero_grad(set_to_none=True)
        for x, y in batches:
            loss = F.cross_entropy(model(x), y) / len(batches)
            if not loss.requires_grad:  # a network without trainable weights: no gradient at all
                return 0.0, {}
            loss.backward()
        layers = [m for m in weight_layers(model) if m.weight.grad is not None]
        return self.combine(layers, device), {}

    def combine(self, layers: list[nn.Module], device) -> float:
        raise NotImplementedError


@register_estimator("grad_norm")
class GradNorm(_GradientProxy):
    """Gradient norm: L2 norm of the loss gradient on one mini-batch (Conv/Linear weights)."""

    def combine(self, layers, device):
        total = torch.zeros((), dtype=torch.float64, device=device)
        for layer in layers:
            total += layer.weight.grad.double().pow(2).sum()
        return total.sqrt().item()


@register_estimator("snip")
class SNIP(_GradientProxy):
    """SNIP (Lee et al.): connection sensitivity, sum of |weight * loss gradient|."""

    def combine(self, layers, device):
        total = torch.zeros((), dtype=torch.float64, device=device)
        for layer in layers:
            total += (layer.weight.double() * layer.weight.grad.double()).abs().sum()
        return total.item()


@register_estimator("params")
class ParamCount(ZeroCostProxy):
    """Parameter count as a score (bigger is better): the baseline a proxy has to beat."""

    uses_data = False
    options = {}

    def estimate(self, arch, model, task, budget, report):
        started = time.perf_counter()
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        elapsed = time.perf_counter() - started
        report(1, {"params_score": float(count), "score_time_s": elapsed})
        return Result({"params_score": float(count), "score_time_s": elapsed}, objective=float(count),
                      cost_s=elapsed)


# -- scoring many architectures (zc_prescreen) ---------------------------------------------------

# Scores are a pure function of (task data, proxy and its config, architecture, seed): memoised
# per process so that a strategy rebuilt for every web advance does not rescore its pool.
_SCORE_MEMO: dict[tuple, float] = {}
_SCORE_MEMO_LIMIT = 200_000


def task_digest(task: Task) -> str:
    """Identifies the training data a proxy reads (name, shape, bytes)."""
    h = hashlib.sha1()
    h.update(f"{task.name}|{tuple(task.input_shape)}|{task.num_classes}".encode())
    for t in (task.X_train, task.y_train):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def make_proxy(proxy: str, config: dict | None = None) -> ZeroCostProxy:
    if proxy not in PROXIES:
        raise ConfigError("proxy", f"{proxy!r} is not one of {', '.join(PROXIES)}")
    return create_estimator(proxy, **(config or {}))


def score_architecture(space, arch: Architecture, task: Task, proxy: ZeroCostProxy, seed: int) -> float:
    """Proxy objective of `arch` built with `seed` (its initial weights) the way the loop builds it."""
    with seeded(seed):
        model = space.build(arch, task)
    return proxy.estimate(arch, model, task, {"seed": seed}, lambda step, metrics: None).objective


def prescreen(
    space,
    task: Task,
    archs: Iterable[Architecture],
    *,
    proxy: str = "synflow",
    proxy_config: dict | None = None,
    seed: int = 0,
    digest: str | None = None,
) -> list[tuple[Architecture, float]]:
    """(arch, score) for every architecture, best first (ties keep the input order).

    Architecture i is built with derive_seed(seed, fingerprint, "zc_prescreen"), so its score
    does not depend on which other architectures are scored alongside it.
    """
    estimator = make_proxy(proxy, proxy_config)
    digest = digest or task_digest(task)
    config_key = json.dumps(estimator.config, sort_keys=True)
    scored = []
    for index, arch in enumerate(archs):
        fingerprint = space.fingerprint(arch)
        key = (digest, space.name, json.dumps(space.config, sort_keys=True), proxy, config_key, seed, fingerprint)
        score = _SCORE_MEMO.get(key)
        if score is None:
            score = score_architecture(space, arch, task, estimator, derive_seed(seed, fingerprint, "zc_prescreen"))
            if len(_SCORE_MEMO) >= _SCORE_MEMO_LIMIT:
                _SCORE_MEMO.clear()
            _SCORE_MEMO[key] = score
        scored.append((index, arch, score))
    scored.sort(key=lambda item: (-item[2], item[0]))
    return [(arch, score) for _, arch, score in scored]
