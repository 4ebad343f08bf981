"""What the CLI prints and writes: the progress bar, per-trial lines, tables, number formats and
results.json values."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from ..loop import Callbacks, Outcome
from ..rules import error_line, is_scored
from ..types import INFEASIBLE


def oneshot_line(step: int, values: dict) -> str:
    keys = ("epoch", "supernet_loss", "supernet_acc", "val_acc", "genotype", "skip_fraction", "best_val_acc")
    shown = "  ".join(f"{k} {fmt_value(k, values[k])}" for k in keys if k in values)
    return f"  [{values.get('phase', 'train')} {step}] {shown}"


def dataset_line(task) -> str:
    d = task.describe()
    sizes = d["sizes"]
    return (f"{d['kind']} {tuple(d['input_shape'])}, {d['num_classes']} classes, "
            f"{sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test")


def cardinality_line(space) -> str:
    try:
        return f"{space.cardinality():,} architectures"
    except Exception:  # a space too large to enumerate may refuse; it is only informative here
        return "size unknown"


class Progress:
    """tqdm bar over trained trials with the best so far; one line per finished trial."""

    def __init__(self, space, trials: int, quiet: bool = False):
        self.space = space
        self.quiet = quiet
        self.best: float | None = None
        self.current = ""
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            # disable=None: a bar on a terminal, plain per-trial lines in logs and CI.
            self.bar = tqdm(total=trials, unit="trial", dynamic_ncols=True, file=sys.stderr, disable=None)

    def callbacks(self) -> Callbacks:
        return Callbacks(on_trial_start=self.start, on_epoch=self.epoch, on_trial_end=self.end)

    def _postfix(self, extra: str = "") -> None:
        if self.bar is None:
            return
        best = f"best {self.best:.4f}" if self.best is not None else "best -"
        self.bar.set_postfix_str(f"{best}{'  ' + extra if extra else ''}", refresh=True)

    def start(self, number: int, candidate) -> None:
        self.current = f"#{number}"
        self._postfix(f"{self.current} training")

    def epoch(self, number: int, step: int, metrics: dict) -> None:
        val = metrics.get("val_acc")
        self._postfix(f"#{number} epoch {step}" + (f" val {val:.4f}" if isinstance(val, (int, float)) else ""))

    def end(self, outcome: Outcome) -> None:
        if is_scored(outcome.state, outcome.objective):
            if self.best is None or outcome.objective > self.best:
                self.best = outcome.objective
        if self.bar is None:
            return
        from tqdm import tqdm

        tqdm.write(trial_line(outcome, self.space))
        if outcome.counts_against_budget:
            self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def trial_line(o: Outcome, space) -> str:
    m = o.metrics
    parts = [
        f"#{o.number:<3d}",
        f"{o.state:<10s}",
        (f"val {pct(m.get('val_acc')):>7s}" if m.get("val_acc") is not None or o.objective is None
         else f"obj {o.objective:>7.4g}"),
        f"params {si(m.get('params')):>6s}",
        f"FLOPs {si(m.get('flops')):>6s}",
        f"lat {ms(m.get('latency_ms')):>8s}",
        f"{o.duration_s:6.1f}s",
        short(space.describe(o.arch)),
    ]
    if o.error:
        reason = error_line(o.error) if o.state != INFEASIBLE else o.error
        parts.append(f"[{reason}]")
    return "  ".join(parts)


def print_ranked(ranked: list[Outcome], space) -> None:
    # Zero-cost and proxy estimators score with something other than validation accuracy.
    show_objective = any(o.objective != o.metrics.get("val_acc") for o in ranked)
    print(f"\ntop {len(ranked)} by objective" + ("" if show_objective else " (validation accuracy)") + ":")
    rows = [["rank", "trial", *(["objective"] if show_objective else []), "val acc", "test acc", "params",
             "FLOPs", "latency", "time", "architecture"]]
    for rank, o in enumerate(ranked, 1):
        m = o.metrics
        rows.append([
            str(rank), f"#{o.number}", *([f"{o.objective:.4g}"] if show_objective else []),
            pct(m.get("val_acc")), pct(m.get("test_acc")), si(m.get("params")), si(m.get("flops")),
            ms(m.get("latency_ms")), f"{o.duration_s:.1f}s", short(space.describe(o.arch)),
        ])
    print_table(rows)


def print_pareto(front: list[Outcome], objectives, space) -> None:
    names = ", ".join(f"{k} ({d})" for k, d in objectives)
    print(f"\nPareto front over {names}: {len(front)} trial(s)")
    if not front:
        return
    front = sorted(front, key=lambda o: tuple(
        (o.metrics[k] if d == "min" else -o.metrics[k]) for k, d in objectives))
    rows = [["trial", *[k for k, _ in objectives], "architecture"]]
    for o in front:
        rows.append([f"#{o.number}", *[fmt_value(k, o.metrics.get(k)) for k, _ in objectives],
                     short(space.describe(o.arch))])
    print_table(rows)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == len(row) - 1 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells).rstrip())
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def fmt_value(key: str, value) -> str:
    if key.endswith("acc"):
        return pct(value)
    if key.endswith("_ms"):
        return ms(value)
    if key in ("params", "flops"):
        return si(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def ms(value) -> str:
    return f"{value:.2f}ms" if isinstance(value, (int, float)) else "-"


def si(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:g}"


def short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, type):
        return value.__name__
    return str(value)


def jsonable(value):
    """NaN / inf are not JSON; write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value

