"""A learning task: train/val/test tensors plus what a network builder needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Task:
    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]  # (features,) for tabular data, (C, H, W) for images
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # preprocessing, source file, seed, split
    # The test rows as the exported model takes them (meta["raw_input"]): the source data before
    # any scaling, reshaping or standardisation, so an export can be re-measured on what users feed it.
    X_test_raw: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return "image" if len(self.input_shape) == 3 else "tabular"

    def describe(self) -> dict:
        counts = torch.bincount(
            torch.cat([self.y_train, self.y_val, self.y_test]), minlength=self.num_classes
        )
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "class_counts": counts.tolist(),
            "sizes": {
                "train": len(self.y_train),
                "val": len(self.y_val),
                "test": len(self.y_test),
            },
        }

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros((batch, *self.input_shape), dtype=torch.float32)


def split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test split, identical for the same labels and seed."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))


def make_task(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    input_shape: tuple[int, ...] | None = None,
    class_names: list[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    standardize: bool = True,
    meta: dict | None = None,
    raw: np.ndarray | None = None,
) -> Task:
    """Build a Task from arrays: seeded stratified split; features standardised with train stats.

    `y` must hold integer class ids 0..K-1. For images, X is (N, C, H, W) in [0, 1] and is
    normalised with one train-set mean/std (kept in `meta["normalize"]` for export).

    `raw` is the same rows as the source holds them (a loader's `meta["raw_input"]` says how they map
    to X); without it X itself, before standardisation, is what an exported model takes.
    `meta["split"]` records the row indices of train/val/test, in X's row order.
    """
    X = np.asarray(X, dtype=np.float32)
    if raw is None:
        raw = X
        meta = {**(meta or {}), "raw_input": default_raw_input(X.shape[1:])}
    y = np.asarray(y, dtype=np.int64)
    num_classes = int(y.max()) + 1 if len(y) else 0
    input_shape = tuple(input_shape or X.shape[1:])
    train, val, test = split_indices(y, val_fraction, test_fraction, seed)
    meta = dict(meta or {})
    if standardize:
        if len(input_shape) == 3:
            mean = float(X[train].mean())
            std = float(X[train].std()) or 1.0
            X = (X - mean) / std
            meta["normalize"] = {"mean": mean, "std": std}
        else:
            mean = X[train].mean(axis=0)
            std = X[train].std(axis=0)
            std[std == 0] = 1.0
            X = (X - mean) / std
            meta["normalize"] = {"mean": mean.tolist(), "std": std.tolist()}
    meta["split_seed"] = seed
    meta["split"] = {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Task(
        name=name,
        X_train=t(X[train]),
        y_train=t(y[train]),
        X_val=t(X[val]),
        y_val=t(y[val]),
        X_test=t(X[test]),
        y_test=t(y[test]),
        input_shape=input_shape,
        num_classes=num_classes,
        class_names=list(class_names or [str(i) for i in range(num_classes)]),
        meta=meta,
        X_test_raw=np.ascontiguousarray(raw[test]),
    )


def default_raw_input(shape: tuple[int, ...]) -> dict:
    """The input description of arrays handed straight to make_task: used as they are."""
    return {
        "source": "arrays",
        "dtype": "float32",
        "shape": [int(d) for d in shape],
        "scale": None,
        "layout": "reshape",
        "labels": "index",
        "file": "data.npz",
        "description": f"float32 arrays of shape (N, {', '.join(str(int(d)) for d in shape)}), as given to make_task",
    }
