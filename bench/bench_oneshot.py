"""One-shot NAS figures: DARTS' collapse with and without DARTS-, and search quality per CPU-minute.

Part 1 (collapse): DARTS on nb201 with remedy none (plain), darts_minus (DARTS-) and skip_cap
(DARTS+ early stop with P-DARTS' cap), same seed and warm-up; per epoch: the share of edges whose
argmax is skip_connect (skip_fraction), the mean softmax weight of skip_connect, the share of edges
whose argmax is a parameter-free op (skip, pool or none); then the returned cell.

Part 2 (end to end): best test accuracy reached per CPU-minute on mnist5k for
  - evolution with full training (the `train` estimator on every candidate),
  - the weight-sharing supernet (job + retraining its top-k with the `fixed` strategy),
  - DARTS with its default remedy, skip_cap (job + retraining its top-k cells).
"Best" is the test accuracy of the trial with the best validation accuracy so far (test accuracy
never picks the winner). Times are this process's CPU seconds (the figure to trust on a shared
machine) and wall seconds.

    python bench/bench_oneshot.py                   # the full figures (long: tens of CPU-minutes)
    python bench/bench_oneshot.py --smoke           # a minute or two: tiny data, 1-2 epochs each
    python bench/bench_oneshot.py --part collapse --darts-epochs 8 --batch-size 32  # the docstring's figures
    python bench/bench_oneshot.py --part collapse --darts-epochs 20 --N 3 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.data import load_builtin  # noqa: E402
from search_engine.estimators.training import stratified_subset  # noqa: E402
from search_engine.loop import Callbacks, run_search  # noqa: E402
from search_engine.oneshot import create_oneshot, fixed_strategy_config  # noqa: E402
from search_engine.registry import create_estimator, create_space, create_strategy  # noqa: E402
from search_engine.task import Task  # noqa: E402
from search_engine.types import COMPLETED, Budget  # noqa: E402

PARAMETER_FREE = {"skip_connect", "avg_pool_3x3", "none"}


def shrink(task: Task, fraction: float, seed: int = 0) -> Task:
    """A stratified `fraction` of every split (same classes, smaller sets) for quick runs."""
    if fraction >= 1.0:
        return task
    parts = {}
    for split in ("train", "val", "test"):
        X, y = getattr(task, f"X_{split}"), getattr(task, f"y_{split}")
        idx = stratified_subset(y, fraction, seed)
        parts[f"X_{split}"], parts[f"y_{split}"] = X[idx], y[idx]
    return Task(name=f"{task.name}[{fraction:g}]", input_shape=task.input_shape, num_classes=task.num_classes,
                class_names=task.class_names, meta=task.meta, **parts)


class Clock:
    def __init__(self):
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def cpu_min(self) -> float:
        return (time.process_time() - self.cpu0) / 60

    def wall_min(self) -> float:
        return (time.perf_counter() - self.wall0) / 60


# -- part 1: collapse ---------------------------------------------------------------------------


def collapse(args) -> None:
    task = shrink(load_builtin(args.collapse_dataset, seed=0), args.data_fraction)
    space = create_space("nb201", C=args.C, N=args.N)
    print(f"\n== DARTS collapse: {task.name}, nb201 C={args.C} N={args.N}, {args.darts_epochs} epochs "
          f"(warm-up {args.warmup_fraction:g} of them), arch_lr {args.arch_lr:g}, batch {args.batch_size}, "
          f"seeds {args.seeds}")
    finals = []
    for seed in args.seeds:
        for remedy in args.remedies:
            clock = Clock()
            job = create_oneshot("darts", space, seed=seed, epochs=args.darts_epochs, arch_lr=args.arch_lr,
                                 remedy=remedy, batch_size=args.batch_size, device="cpu", threads=args.threads,
                                 warmup_fraction=args.warmup_fraction)
            result = job.run(task)
            print(f"\nseed {seed} remedy={remedy}  ({clock.cpu_min():.1f} CPU-min, {result.stopped_because})")
            print("  epoch  skip_frac  skip_weight  param_free_frac  val_acc  genotype")
            for h in result.history:
                ops = list(space.from_string(h["genotype"]).values())
                free = sum(op in PARAMETER_FREE for op in ops) / len(ops)
                print(f"  {h['epoch']:5d}  {h['skip_fraction']:9.2f}  {h['skip_weight']:11.3f}  "
                      f"{free:15.2f}  {h['val_acc']:7.3f}  {h['genotype']}")
            ops = list(result.top_archs[0][0].values())
            finals.append((seed, remedy, result.epochs_done, ops.count("skip_connect") / len(ops),
                           sum(op in PARAMETER_FREE for op in ops) / len(ops), result.final["genotype"]))
    print("\nreturned cells (the most likely cell the job hands over for retraining):")
    print("  seed  remedy        epochs  skip_frac  param_free_frac  genotype")
    for seed, remedy, epochs, frac, free, genotype in finals:
        print(f"  {seed:4d}  {remedy:12s}  {epochs:6d}  {frac:9.2f}  {free:15.2f}  {genotype}")


# -- part 2: end to end -------------------------------------------------------------------------


class Tracker:
    """Best-by-validation test accuracy over CPU time, across the phases of one method."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.best: tuple[float, float] | None = None  # (val_acc, test_acc)
        self.curve: list[tuple[float, float, float]] = []  # (cpu_min, wall_min, test_acc)

    def on_trial_end(self, outcome) -> None:
        if outcome.state != COMPLETED or outcome.objective is None:
            return
        val, test = outcome.objective, outcome.metrics.get("test_acc", float("nan"))
        if self.best is None or val > self.best[0]:
            self.best = (val, test)
        self.curve.append((self.clock.cpu_min(), self.clock.wall_min(), self.best[1]))


def retrain(top_config: dict, *, task, space, estimator, seed: int, tracker: Tracker) -> None:
    strategy = create_strategy("fixed", space, seed=seed, **top_config)
    run_search(task=task, space=space, strategy=strategy, estimator=estimator,
               budget=Budget(trials=len(top_config["archs"])), seed=seed,
               callbacks=Callbacks(on_trial_end=tracker.on_trial_end), keep_best_model=False)


def end_to_end(args) -> None:
    task = shrink(load_builtin(args.dataset, seed=0), args.data_fraction)
    space = create_space("nb201", C=args.C, N=args.N)
    estimator = create_estimator("train", epochs=args.train_epochs, device="cpu", threads=args.threads)
    print(f"\n== end to end on {task.name} (train {len(task.y_train)}, val {len(task.y_val)}, "
          f"test {len(task.y_test)}), nb201 C={args.C} N={args.N}; retraining/full training "
          f"{args.train_epochs} epochs")
    rows = []
    for seed in args.seeds:
        methods = {}
        clock = Clock()
        tracker = Tracker(clock)
        run_search(task=task, space=space, strategy=create_strategy(
            "evolution", space, seed=seed, population_size=max(2, min(10, args.trials // 2)),
            sample_size=max(1, min(3, args.trials // 4))), estimator=estimator, budget=Budget(trials=args.trials),
            seed=seed, callbacks=Callbacks(on_trial_end=tracker.on_trial_end), keep_best_model=False)
        methods[f"evolution ({args.trials} trained trials)"] = tracker

        for name, config in (
            ("supernet", {"epochs": args.supernet_epochs, "cycles": args.cycles, "top_k": args.top_k,
                          "population_size": min(20, args.cycles), "sample_size": min(5, args.cycles)}),
            ("darts", {"epochs": args.darts_epochs, "arch_lr": args.arch_lr, "top_k": args.top_k,
                       "remedy": "skip_cap", "warmup_fraction": args.warmup_fraction}),
        ):
            clock = Clock()
            tracker = Tracker(clock)
            job = create_oneshot(name, space, seed=seed, device="cpu", threads=args.threads, **config)
            result = job.run(task)
            job_min = clock.cpu_min()
            retrain(fixed_strategy_config(result, space), task=task, space=space, estimator=estimator,
                    seed=seed, tracker=tracker)
            methods[f"{name} ({config['epochs']} ep, job {job_min:.1f} CPU-min + top-{args.top_k})"] = tracker
        for label, tracker in methods.items():
            cpu, wall, test = tracker.curve[-1] if tracker.curve else (float("nan"),) * 3
            rows.append((seed, label, cpu, wall, test, tracker.curve))

    print("\n  seed  method                                            CPU-min  wall-min  best test acc  "
          "test acc / CPU-min")
    for seed, label, cpu, wall, test, _ in rows:
        print(f"  {seed:4d}  {label:48s}  {cpu:7.2f}  {wall:8.2f}  {test:13.4f}  {test / cpu:18.4f}")
    print("\n  best-so-far test accuracy against CPU-minutes (one point per finished trial):")
    for seed, label, *_, curve in rows:
        points = ", ".join(f"{c:.2f}:{t:.3f}" for c, _, t in curve)
        print(f"  seed {seed} {label}: {points}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "collapse", "e2e"), default="all")
    p.add_argument("--smoke", action="store_true", help="tiny settings: checks the script, not the figures")
    p.add_argument("--dataset", default="mnist5k", help="end-to-end dataset (default mnist5k)")
    p.add_argument("--collapse-dataset", default="digits")
    p.add_argument("--data-fraction", type=float, default=1.0, help="stratified share of every split")
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--darts-epochs", type=int, default=20)
    p.add_argument("--supernet-epochs", type=int, default=20)
    p.add_argument("--arch-lr", type=float, default=3e-3,
                   help="DARTS' 3e-4 barely moves the alphas in the few hundred steps a small dataset gives")
    p.add_argument("--warmup-fraction", type=float, default=0.375, help="DARTS: weight-only share of the epochs")
    p.add_argument("--remedies", type=lambda s: s.split(","), default=["none", "darts_minus", "skip_cap"])
    p.add_argument("--cycles", type=int, default=100, help="supernet: candidates scored by evolution")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--trials", type=int, default=30, help="evolution with full training: trials")
    p.add_argument("--train-epochs", type=int, default=5, help="epochs of every trained trial")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.smoke:
        args.data_fraction = min(args.data_fraction, 0.1)
        args.C, args.N = 4, 1
        args.darts_epochs = args.supernet_epochs = 2
        args.cycles, args.top_k, args.trials, args.train_epochs = 8, 2, 3, 1
        args.collapse_dataset = "digits"
    torch.set_num_threads(args.threads)
    if args.part in ("all", "collapse"):
        collapse(args)
    if args.part in ("all", "e2e"):
        end_to_end(args)


if __name__ == "__main__":
    main()
