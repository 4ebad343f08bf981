"""Throughput of the "train" estimator against a plain hand-written PyTorch loop.

Both train the same network from the same initial weights on the same batches (one seeded
randperm per epoch), with the same optimizer and per-step cosine schedule, and evaluate on the
validation set once per epoch, so the difference is the trainer's own overhead (metric
accumulation, best-checkpoint copies, report calls). Prints samples/s and their ratio
(target >= 0.95), medians over several runs, and, from one more run with `restore_best` off,
how far the two final weights are apart (0 means both did exactly the same work).

    python bench/bench_trainer.py [--runs 5] [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_engine.estimators.training import DEFAULT_LR, TrainEstimator  # noqa: E402
from search_engine.task import Task, make_task  # noqa: E402


def digits_task() -> Task:
    from sklearn.datasets import load_digits

    data = load_digits()
    return make_task("digits", data.data.reshape(-1, 1, 8, 8) / 16.0, data.target, seed=0)


def small_conv(width: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )  # fmt: skip


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def plain_loop(model: nn.Module, task: Task, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """The loop one would write by hand; returns seconds spent in training + per-epoch validation."""
    X, y = task.X_train, task.y_train
    n = len(y)
    steps_per_epoch = n // batch_size + (1 if n % batch_size > 1 else 0)
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    elapsed = 0.0
    for _ in range(epochs):
        start_time = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, steps_per_epoch * batch_size, batch_size):
            idx = order[start : start + batch_size]
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total_steps))
            loss = F.cross_entropy(model(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.inference_mode():
            (model(task.X_val).argmax(1) == task.y_val).float().mean().item()
        elapsed += time.perf_counter() - start_time
    return elapsed


def trainer(
    model: nn.Module, task: Task, epochs: int, batch_size: int, lr: float, seed: int, restore_best: bool = True
) -> float:
    """Seconds the estimator spent in its epochs (training + validation, as it reports them)."""
    epoch_times = []
    estimator = TrainEstimator(
        epochs=epochs, batch_size=batch_size, lr=lr, device="cpu", threads=0, restore_best=restore_best
    )
    estimator.estimate({}, model, task, {"seed": seed}, lambda step, m: epoch_times.append(m["epoch_time_s"]))
    return sum(epoch_times)


def bench(name: str, build, task: Task, args) -> None:
    samples = len(task.y_train) * args.epochs
    lr = DEFAULT_LR["adam"]
    rates = {"plain": [], "trainer": []}
    for run in range(args.runs):
        torch.manual_seed(run)
        init = build()
        # Alternate the order so that a slow spell on a shared machine hits both sides alike.
        order = ("plain", "trainer") if run % 2 == 0 else ("trainer", "plain")
        for side in order:
            fn = plain_loop if side == "plain" else trainer
            rates[side].append(samples / fn(copy.deepcopy(init), task, args.epochs, args.batch_size, lr, seed=run))

    torch.manual_seed(0)
    by_hand = build()
    by_trainer = copy.deepcopy(by_hand)
    plain_loop(by_hand, task, args.epochs, args.batch_size, lr, seed=0)
    trainer(by_trainer, task, args.epochs, args.batch_size, lr, seed=0, restore_best=False)
    hand_state, trainer_state = by_hand.state_dict(), by_trainer.state_dict()
    max_diff = max((hand_state[k].double() - trainer_state[k].double()).abs().max().item() for k in hand_state)

    plain, trained = statistics.median(rates["plain"]), statistics.median(rates["trainer"])
    print(
        f"{name:<22} plain {plain:9.0f} samples/s   trainer {trained:9.0f} samples/s   "
        f"ratio {trained / plain:5.3f}   (median of {args.runs}; max weight diff {max_diff:.2g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = digits_task()
    print(
        f"sklearn digits: {len(task.y_train)} train / {len(task.y_val)} val samples, batch {args.batch_size}, "
        f"{args.epochs} epochs, adam + cosine, {args.threads} thread(s), torch {torch.__version__}"
    )
    # Warm-up: first calls pay for lazy initialisation inside torch.
    trainer(small_mlp(), task, 1, args.batch_size, 1e-3, seed=0)
    bench("conv (16-32-32, BN)", small_conv, task, args)
    bench("mlp (64-128-10)", small_mlp, task, args)


if __name__ == "__main__":
    main()
