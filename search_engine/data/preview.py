"""What a dataset preview shows of a loaded Task: per-split class counts and sample images."""

from __future__ import annotations

import numpy as np

from ..task import Task
from .common import DatasetError, _check_int_option


def describe_task(task: Task) -> dict:
    """Task.describe() plus what a dataset preview shows: per-class counts in each split, the source,
    and the feature names of tabular data."""
    out = task.describe()
    splits = {"train": task.y_train, "val": task.y_val, "test": task.y_test}
    per_split = {k: np.bincount(v.numpy(), minlength=task.num_classes).tolist() for k, v in splits.items()}
    out["classes"] = [
        {"name": name, "count": out["class_counts"][i], **{k: per_split[k][i] for k in splits}}
        for i, name in enumerate(task.class_names)
    ]
    out["source"] = task.meta.get("source")
    if task.kind == "tabular":
        out["features"] = list(task.meta.get("features", []))
    return out


def sample_images(task: Task, per_class: int = 2) -> dict[str, np.ndarray]:
    """Class name -> uint8 array (n, H, W, C) of up to `per_class` training images, undoing the
    task's normalisation, channel-last as PIL's Image.fromarray expects (squeeze C=1 for grayscale)."""
    if task.kind != "image":
        raise DatasetError(task.name, "task", "is tabular; sample_images needs an image dataset")
    per_class = _check_int_option("per_class", per_class, 1)
    norm = task.meta.get("normalize", {"mean": 0.0, "std": 1.0})
    low, high = task.meta.get("pixel_range", [0.0, 1.0])
    y = task.y_train.numpy()
    out = {}
    for i, class_name in enumerate(task.class_names):
        rows = np.flatnonzero(y == i)[:per_class]
        x = task.X_train[rows].numpy() * norm["std"] + norm["mean"]
        x = (x - low) / ((high - low) or 1.0)
        out[class_name] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return out
