"""A model package that runs on the user's raw data with numpy + onnxruntime alone.

`write_package(folder, ...)` writes into `folder`:

    model.onnx, model.pt   raw source rows in (architecture.json's raw_input), class probabilities out
    weights.safetensors    the bare network; architecture.json describes it and the raw input
    labels.json            class index -> the original label string
    split.json             the train/val/test row indices (or image entry names) of the source data
    predict.py             `python predict.py INPUT [--out predictions.csv] [--rows test]`
    MODEL_CARD.md          what the model expects, how to run it, and its numbers

The card's test accuracy is measured by running model.onnx through predict.py's own functions on
the test rows of the raw data, so `python predict.py <original file> --rows test` prints the same
figure to the last digit. The CLI (`OUT/best/`) and the web side both use this one function.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .. import export
from ..rawinput import raw_input_spec
from ..task import Task
from ..types import Architecture
from . import predict
from .card import CardContext, card_fields, constraint_table, library_versions, render

__all__ = ["CardContext", "Measured", "PackageInfo", "constraint_table", "library_versions", "measure",
           "write_package"]  # fmt: skip

PREDICT_SCRIPT = Path(predict.__file__)


@dataclass(frozen=True)
class Measured:
    correct: int
    total: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    @property
    def text(self) -> str:
        return predict.accuracy_text(self.correct, self.total) if self.total else "- (no test rows)"


@dataclass
class PackageInfo:
    folder: Path
    files: list[str]  # names inside `folder`, sorted
    test_acc: float | None  # model.onnx on the raw test rows, as predict.py measures it
    test_correct: int
    test_total: int
    checks: dict[str, Any]  # export checks (ONNX vs PyTorch difference, exporter used)


def write_package(
    folder: str | Path,
    *,
    model: nn.Module,
    arch: Architecture,
    space,
    task: Task,
    metrics: dict[str, Any] | None = None,
    card: CardContext | None = None,
    source: str | Path | None = None,
) -> PackageInfo:
    """Export `model` (trained on `task`, from `space`) as a full package into `folder`.

    `source` is the raw data file the task was loaded from, when the caller has it: the test
    accuracy is then measured on the file itself, exactly as predict.py reads it; without it, on
    the raw test rows the loader kept (`task.X_test_raw`)."""
    out = Path(folder)
    metrics = dict(metrics or {})
    paths = export.export_model(model, arch, space.name, space.config, task, out, metrics=metrics)
    (out / "labels.json").write_text(json.dumps(list(task.class_names), indent=2) + "\n", encoding="utf-8")
    (out / "split.json").write_text(json.dumps(split_record(task)) + "\n", encoding="utf-8")
    shutil.copyfile(PREDICT_SCRIPT, out / "predict.py")
    measured = measure(out, task, source)
    fields = card_fields(raw_input_spec(task), task, metrics, measured, card or CardContext())
    (out / "MODEL_CARD.md").write_text(render(fields), encoding="utf-8")
    checks = json.loads(paths["architecture"].read_text())["checks"]
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    return PackageInfo(out, files, measured.accuracy, measured.correct, measured.total, checks)


def split_record(task: Task) -> dict:
    split = task.meta.get("split") or {}
    source = task.meta.get("source") or {}
    parts = {part: list(split.get(part, ())) for part in ("train", "val", "test")}
    files = any(isinstance(v, str) for values in parts.values() for v in values)
    return {
        "kind": "files" if files else "rows",
        "n_rows": sum(len(v) for v in parts.values()),
        "seed": task.meta.get("split_seed"),
        "val_fraction": source.get("val_fraction"),
        "test_fraction": source.get("test_fraction"),
        **parts,
    }


def measure(folder: str | Path, task: Task, source: str | Path | None = None) -> Measured:
    """model.onnx of `folder` on the test rows of the raw data, through predict.py's functions."""
    package = predict.Package.load(folder)
    if source is not None:
        batch = predict.select_rows(predict.read_input(source, package), package, "test", Path(source).name)
    else:
        truth = [task.class_names[int(i)] for i in task.y_test]
        batch = predict.Batch(np.ascontiguousarray(task.X_test_raw), [str(i) for i in range(len(truth))], truth)
    if not len(batch.keys):
        return Measured(0, 0)
    probs = predict.probabilities(package.model, batch.X)
    return Measured(predict.count_correct(package.labels, probs, batch.truth), len(batch.truth))
