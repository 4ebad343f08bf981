"""DARTS on NAS-Bench-201 (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
ICLR 2019), with remedies against its collapse to parameter-free cells.

Continuous relaxation: every edge computes sum_o softmax(alpha_edge)_o * o(x) over the five ops
(the same `MixedEdge`/`make_op` modules as the weight-sharing supernet); as in NAS-Bench-201's
DARTS baseline the (6, 5) alphas are shared by every cell. Each step first updates the alphas on
a validation batch (Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 as in DARTS), then the
weights on a training batch (SGD, cosine schedule, gradient clipping 5). `order="first"` uses the
validation gradient at the current weights; `order="second"` uses DARTS' unrolled approximation
(one virtual SGD step, Hessian-vector product by central finite differences, eq. 7-8 of the
paper). After each epoch the discretised cell (argmax per edge, NAS-Bench-201 string) is
reported with the softmaxed alphas.

Why a remedy: on this space plain DARTS drifts towards skip connections (NAS-Bench-201 reports
DARTS-V1/V2 ending in the all-skip cell, 54.3% on CIFAR-10). Skip connections win the bilevel
game because they ease optimisation of the shared weights (a residual path), not because they
make a better stand-alone cell.

Two documented remedies (option `remedy`); the default is the one that held up here.

`remedy="skip_cap"` (default): DARTS+ early stopping (Liang et al. 2019, "DARTS+: Improved
Differentiable Architecture Search with Early Stopping", arXiv:1909.06035), with P-DARTS' cap on
skip connections (Chen et al. 2019, "Progressive Differentiable Architecture Search", ICCV) as
the fallback. Once the alphas move (after the warm-up), the search stops at the end of the
first epoch whose argmax cell has more than `max_skip` skip_connect edges, and the result is
read from the alphas of the last epoch that stayed within the cap. If the very first arch epoch
breaks the cap, the result is the most likely cell with at most `max_skip` skips (P-DARTS' rule).
Warm-up (`warmup_fraction`, default a quarter of the epochs, as PC-DARTS, P-DARTS and DARTS+
do): before it, untrained convolutions lose every comparison to parameter-free ops, and the
argmax of near-initial alphas is noise, so neither the alphas nor the cap are worth acting on.
The returned cells are also never "dead" (no path of non-`none` edges from the cell input to its
output: such a cell outputs zeros). DARTS+ stops at two skips in DARTS' 8-edge normal cell; for
nb201's 6 edges the default cap is 2.

`remedy="darts_minus"`: DARTS- (Chu et al., "DARTS-: Robustly Stepping out of Performance
Collapse Without Indicators", ICLR 2021). Every edge gets an auxiliary, parameter-free skip
OUTSIDE the softmax, `out = beta * x + sum_o w_o o(x)`, with beta decaying linearly from `beta0`
to 0 over the search, so the skip op no longer has to win its alpha to supply residual gradient
flow (93.80% on NAS-Bench-201 CIFAR-10 against DARTS' 54.30% over 50 CIFAR epochs). Measured
here on short CPU schedules it does not hold: on digits (C=8, N=1, arch_lr 3e-3, batch 32, 8
epochs with 3 warm-up epochs) DARTS- ended in the all-skip cell (skip weight 0.20 -> 0.29 while
beta decayed to 0: the weights, trained with an identity path on every edge, get it back
through skip_connect) while plain DARTS kept convolutions; on C=4, N=3 (10 epochs, 3 warm-up,
batch 64) it ended all avg_pool. It is kept as an option for long schedules.

Evidence for skip_cap (bench/bench_oneshot.py --part collapse --C 4 --N 3 --darts-epochs 10
--warmup-fraction 0.3 --batch-size 64, digits, seed 0): plain DARTS drifts to 3 of 6 skip edges
at epochs 7-8 and returns |avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|
nor_conv_3x3~1|skip_connect~2|; DARTS- returns the all-avg_pool cell; skip_cap stops at epoch 7
and returns epoch 6's |nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|
skip_connect~2| (4 convolutions, 1 skip).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Option, register_oneshot
from ..runtime import derive_seed, seeded
from ..spaces.nb201 import EDGE_LABELS, OPS
from ..task import Task
from .job import OneShotJob, ProgressFn
from .supernet import SKIP, build_supernet, choices_to_arch, cosine_lr, steps_per_epoch

NONE = OPS.index("none")
REMEDIES = ("skip_cap", "darts_minus", "none")


class DartsModel(nn.Module):
    """The supernet plus its architecture parameters (one row of 5 logits per edge)."""

    def __init__(self, supernet: nn.Module, init_scale: float = 1e-3):
        super().__init__()
        self.net = supernet
        self.alphas = nn.Parameter(init_scale * torch.randn(len(EDGE_LABELS), len(OPS)))

    def weights(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def forward(self, x: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
        return self.net(x, weights=F.softmax(self.alphas, dim=-1), aux_skip=aux_skip)


def alpha_table(alphas: torch.Tensor) -> dict[str, dict[str, float]]:
    """{edge label: {op: softmax weight}}, the payload of the live heatmap."""
    probs = F.softmax(alphas.detach().cpu().double(), dim=-1).numpy()
    return {label: {op: round(float(p), 6) for op, p in zip(OPS, row)} for label, row in zip(EDGE_LABELS, probs)}


def discretize(alphas: torch.Tensor) -> list[int]:
    """Argmax per edge over all five ops (none included, as NAS-Bench-201's DARTS does)."""
    return alphas.detach().cpu().argmax(dim=-1).tolist()


def _all_cells() -> np.ndarray:
    shape = (len(OPS),) * len(EDGE_LABELS)
    return np.stack(np.unravel_index(np.arange(len(OPS) ** len(EDGE_LABELS)), shape), axis=1)


def dead_cells(cells: np.ndarray) -> np.ndarray:
    """True where no path of non-`none` edges joins node 0 to node 3 (the cell outputs zeros).
    Columns follow EDGES: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""
    alive = cells != NONE
    node1 = alive[:, 0]
    node2 = alive[:, 1] | (alive[:, 2] & node1)
    node3 = alive[:, 3] | (alive[:, 4] & node1) | (alive[:, 5] & node2)
    return ~node3


def most_likely_cells(
    alphas: torch.Tensor, k: int, *, max_skip: int | None = None, drop_dead: bool = False
) -> list[tuple[list[int], float]]:
    """The k cells with the highest probability prod_e softmax(alpha_e)[op_e], exactly (all 5**6),
    optionally only those with at most `max_skip` skip connections and a live input-output path."""
    logp = F.log_softmax(alphas.detach().cpu().double(), dim=-1).numpy()
    cells = _all_cells()
    scores = logp[np.arange(len(EDGE_LABELS)), cells].sum(axis=1)
    keep = np.ones(len(cells), dtype=bool)
    if max_skip is not None:
        keep &= (cells == SKIP).sum(axis=1) <= max_skip
    if drop_dead:
        keep &= ~dead_cells(cells)
    index = np.flatnonzero(keep)
    order = index[np.lexsort((index, -scores[index]))][:k]  # ties: enumeration order
    return [(cells[i].tolist(), float(np.exp(scores[i]))) for i in order]


@register_oneshot("darts")
class DartsJob(OneShotJob):
    """DARTS (continuous relaxation, alphas shared by all cells) with a remedy against skip collapse.

    Progress per epoch: supernet_loss/supernet_acc (training batches), val_loss/val_acc (the mixed
    network on the validation split), alphas {edge: {op: weight}}, genotype (argmax cell as a
    NAS-Bench-201 string), skip_fraction and none_fraction (share of edges whose argmax is
    skip_connect / none), skip_weight (mean softmax weight of skip_connect), with DARTS- beta, and
    with skip_cap `early_stop` on the epoch that broke the cap. Returns the top_k live cells by
    probability under the final alphas (with skip_cap: the last alphas within the cap, and only
    cells within it), the most likely first.
    """

    score_name = "alpha_probability"
    options = {
        **OneShotJob.common_options,
        "epochs": Option(int, 20, "search epochs", min=1, max=10000),
        "order": Option(str, "first", "first-order DARTS, or second-order (unrolled, ~3x slower)",
                        choices=("first", "second")),
        "remedy": Option(str, "skip_cap", "against the collapse to skip connections: skip_cap (DARTS+ "
                                           "early stop at > max_skip skips), darts_minus (auxiliary "
                                           "skip with decaying beta), or none", choices=REMEDIES),
        "max_skip": Option(int, 2, "skip_cap: most skip_connect edges the cell may have (of 6)", min=0, max=5),
        "beta0": Option(float, 1.0, "DARTS-: initial coefficient of the auxiliary skip (decays linearly to 0)",
                        min=0.0, max=10.0),
        "lr": Option(float, 0.025, "weights: SGD learning rate (cosine-decayed to lr_min)", min=0.0),
        "lr_min": Option(float, 0.001, "weights: final learning rate", min=0.0),
        "momentum": Option(float, 0.9, "weights: SGD momentum", min=0.0, max=0.999),
        "weight_decay": Option(float, 3e-4, "weights: L2 penalty", min=0.0),
        "arch_lr": Option(float, 3e-4, "alphas: Adam learning rate", min=0.0),
        "arch_weight_decay": Option(float, 1e-3, "alphas: Adam weight decay", min=0.0),
        "warmup_fraction": Option(float, 0.25, "share of the epochs (rounded down) that train only the "
                                               "weights before the alphas move; 0 = none, as in "
                                               "NAS-Bench-201's DARTS", min=0.0, max=0.9),
    }

    def setup(self, task: Task, device: torch.device) -> None:
        config = self.config
        with seeded(derive_seed(self.seed, "darts", "init")):
            self.model = DartsModel(build_supernet(self.space, task)).to(device)
        self.optimizer = torch.optim.SGD(
            self.model.weights(), lr=config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"]
        )
        self.arch_optimizer = torch.optim.Adam(
            [self.model.alphas], lr=config["arch_lr"], betas=(0.5, 0.999), weight_decay=config["arch_weight_decay"]
        )
        self.generators = {
            "data": torch.Generator().manual_seed(derive_seed(self.seed, "darts", "data")),
            "val": torch.Generator().manual_seed(derive_seed(self.seed, "darts", "val")),
        }
        self.X_train, self.y_train = task.X_train.to(device), task.y_train.to(device)
        self.X_val, self.y_val = task.X_val.to(device), task.y_val.to(device)
        self.batch_size, self.steps = steps_per_epoch(len(task.y_train), config["batch_size"])
        # The validation order is a pure function of (generator state, how far into it we are),
        # so it is regenerated at each epoch start rather than carried half-consumed.
        self.val_batch_size = min(config["batch_size"], len(task.y_val))
        self.warmup_epochs = int(config["warmup_fraction"] * config["epochs"])
        # skip_cap: the alphas of the last epoch whose argmax cell stayed within the cap.
        self.kept_alphas: torch.Tensor | None = None

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {"weights": self.optimizer.state_dict(), "arch": self.arch_optimizer.state_dict()},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "kept_alphas": self.kept_alphas,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizers"]["weights"])
        self.arch_optimizer.load_state_dict(state["optimizers"]["arch"])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k].cpu())
        kept = state.get("kept_alphas")
        self.kept_alphas = kept.to(self.device) if kept is not None else None

    # -- one epoch ----------------------------------------------------------------------------
    def beta(self, step: int) -> float:
        if self.config["remedy"] != "darts_minus":
            return 0.0
        total = self.steps * self.config["epochs"]
        return self.config["beta0"] * max(0.0, 1.0 - step / total)

    def _val_batches(self):
        """Endless validation batches, reshuffled from the 'val' generator at each pass."""
        n = len(self.y_val)
        while True:
            order = torch.randperm(n, generator=self.generators["val"]).to(self.device)
            for start in range(0, n - self.val_batch_size + 1, self.val_batch_size):
                idx = order[start : start + self.val_batch_size]
                yield self.X_val[idx], self.y_val[idx]

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        model, config = self.model, self.config
        model.train()
        n = len(self.y_train)
        order = torch.randperm(n, generator=self.generators["data"]).to(self.device)
        val_batches = self._val_batches()
        update_arch = epoch > self.warmup_epochs and config["arch_lr"] > 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        total_steps = self.steps * config["epochs"]
        step = (epoch - 1) * self.steps
        lr = config["lr"]
        for start in range(0, self.steps * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = self.X_train[idx], self.y_train[idx]
            lr = cosine_lr(config["lr"], step, total_steps, config["lr_min"])
            beta = self.beta(step)
            if update_arch:
                xv, yv = next(val_batches)
                self.arch_optimizer.zero_grad(set_to_none=True)
                if config["order"] == "second":
                    grad = self._unrolled_arch_grad(xb, yb, xv, yv, lr, beta)
                else:
                    loss_v = F.cross_entropy(model(xv, aux_skip=beta), yv)
                    (grad,) = torch.autograd.grad(loss_v, [model.alphas])
                model.alphas.grad = grad
                self.arch_optimizer.step()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # The alphas are not in this optimizer; detaching them spares their gradient.
            logits = model.net(xb, weights=F.softmax(model.alphas.detach(), dim=-1), aux_skip=beta)
            loss = self.weight_step(logits, yb, model.weights())
            with torch.no_grad():
                loss_sum += loss.double() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            step += 1
        val_loss, val_acc = self._evaluate(self.beta(step))
        values = {
            "supernet_loss": loss_sum.item() / seen,
            "supernet_acc": correct.item() / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            **({"beta": self.beta(step)} if config["remedy"] == "darts_minus" else {}),
            **self.describe_alphas(),
        }
        if config["remedy"] == "skip_cap" and update_arch:
            skips = round(values["skip_fraction"] * len(EDGE_LABELS))
            if skips > config["max_skip"]:
                values["early_stop"] = f"{skips} skip connections > max_skip {config['max_skip']}"
            else:
                self.kept_alphas = self.model.alphas.detach().clone()
        return values

    @torch.no_grad()
    def _evaluate(self, beta: float) -> tuple[float, float]:
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(self.y_val), 512):
            xb, yb = self.X_val[start : start + 512], self.y_val[start : start + 512]
            logits = self.model(xb, aux_skip=beta)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int((logits.argmax(1) == yb).sum())
        self.model.train()
        return loss_sum / len(self.y_val), correct / len(self.y_val)

    def describe_alphas(self, alphas: torch.Tensor | None = None) -> dict[str, Any]:
        alphas = self.model.alphas if alphas is None else alphas
        choices = discretize(alphas)
        probs = F.softmax(alphas.detach().cpu().double(), dim=-1)
        return {
            "alphas": alpha_table(alphas),
            "genotype": self.space.to_string(choices_to_arch(choices)),
            "skip_fraction": sum(c == SKIP for c in choices) / len(choices),
            "none_fraction": sum(c == NONE for c in choices) / len(choices),
            "skip_weight": float(probs[:, SKIP].mean()),
        }

    def _unrolled_arch_grad(self, xt, yt, xv, yv, lr: float, beta: float) -> torch.Tensor:
        """DARTS' second-order alpha gradient (eq. 7-8): the validation gradient at the weights
        after one virtual SGD step, minus lr times a Hessian-vector product estimated by central
        finite differences. The weights and BN statistics are restored afterwards."""
        model = self.model
        params = model.weights()
        saved = [p.detach().clone() for p in params]
        saved_buffers = [b.detach().clone() for b in model.buffers()]
        wd, momentum = self.config["weight_decay"], self.config["momentum"]

        def grads_of(loss, wrt):
            return [g if g is not None else torch.zeros_like(w)
                    for g, w in zip(torch.autograd.grad(loss, wrt, allow_unused=True), wrt)]

        # Virtual step w' = w - lr * (momentum * buffer + dL_train/dw + wd * w), as in DARTS.
        loss_t = F.cross_entropy(model(xt, aux_skip=beta), yt)
        dw = grads_of(loss_t, params)
        with torch.no_grad():
            for p, g in zip(params, dw):
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                update = g + wd * p
                if buf is not None:
                    update = update + momentum * buf
                p.sub_(lr * update)
        loss_v = F.cross_entropy(model(xv, aux_skip=beta), yv)
        dalpha, *dw_val = grads_of(loss_v, [model.alphas, *params])
        norm = torch.sqrt(sum((g * g).sum() for g in dw_val))
        eps = 0.01 / (norm.item() + 1e-12)

        def alpha_grad_at(sign: float) -> torch.Tensor:
            with torch.no_grad():
                for p, w, v in zip(params, saved, dw_val):
                    p.copy_(w + sign * eps * v)
            loss = F.cross_entropy(model(xt, aux_skip=beta), yt)
            return grads_of(loss, [model.alphas])[0]

        hessian_vector = (alpha_grad_at(+1.0) - alpha_grad_at(-1.0)) / (2 * eps)
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
            for b, s in zip(model.buffers(), saved_buffers):
                b.copy_(s)
        return dalpha - lr * hessian_vector

    # -- after training -----------------------------------------------------------------------
    def finish(self, report: ProgressFn, should_stop: Callable[[], bool]) -> tuple[list, dict]:
        capped = self.config["remedy"] == "skip_cap"
        alphas = self.kept_alphas if (capped and self.kept_alphas is not None) else self.model.alphas
        cells = most_likely_cells(alphas, self.config["top_k"],
                                  max_skip=self.config["max_skip"] if capped else None, drop_dead=True)
        top = [(choices_to_arch(c), p) for c, p in cells]
        final = self.describe_alphas(alphas)
        final["genotype"] = self.space.to_string(top[0][0])
        final["top"] = [{"genotype": self.space.to_string(a), "alpha_probability": p} for a, p in top]
        return top, final
