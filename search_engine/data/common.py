"""What every loader shares: the error type, size limits, opening sources, option checks and
the final class check and split into a Task."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import IO, Any

import numpy as np

from ..registry import ConfigError
from ..task import Task, make_task, split_indices

Source = str | os.PathLike | IO[bytes]

MIN_ROWS_PER_CLASS = 3

MiB = 1 << 20


class DatasetError(ConfigError):
    """A dataset a person has to fix: `file` (None for built-ins), `field` (a column, array, entry or
    option) and `reason`. A ConfigError too, so config validation catches it like any bad option."""

    def __init__(self, file: str | None, field: str, reason: str):
        super().__init__(field, reason)
        self.file = file
        if file:
            self.args = (f"{file}: {field}: {reason}",)

    def __reduce__(self):
        return type(self), (self.file, self.field, self.reason)





def _display_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or os.fspath(source)
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return os.path.basename(name) or name
    return "upload"


def _stem(file: str) -> str:
    return PurePosixPath(file).stem or file


@contextmanager
def _open_binary(source: Source, file: str) -> Iterator[IO[bytes]]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            handle = open(path, "rb")  # closed below; a caller's file object is left open
        except FileNotFoundError:
            raise DatasetError(file, "file", f"not found: {path}") from None
        except IsADirectoryError:
            raise DatasetError(file, "file", f"is a directory, not a file: {path}") from None
        except OSError as exc:
            raise DatasetError(file, "file", f"cannot be opened: {exc.strerror or exc}") from None
        with handle:
            yield handle
        return
    if not hasattr(source, "read"):
        raise DatasetError(
            file, "file", f"expected a path or a binary file object, got {type(source).__name__}"
        )
    # Uploads are often previewed and then loaded from the same object, so start from the top.
    seekable = getattr(source, "seekable", None)
    if seekable is None or seekable():
        try:
            source.seek(0)
        except (AttributeError, OSError, ValueError):
            pass
    if isinstance(source.read(0), str):
        raise DatasetError(file, "file", "was opened in text mode; pass a path or open(path, 'rb')")
    yield source


def _read_limited(handle: IO[bytes], file: str, max_bytes: int) -> bytes:
    data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DatasetError(
            file, "file", f"is larger than {human_bytes(max_bytes)} (limit max_bytes={max_bytes})"
        )
    return data


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _check_split_options(val_fraction: Any, test_fraction: Any, seed: Any) -> None:
    for field, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DatasetError(None, field, f"must be a number from 0 up to (not including) 1, got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            None,
            "val_fraction",
            f"val_fraction + test_fraction must stay below 1 to leave rows for training "
            f"(got {val_fraction} + {test_fraction})",
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(None, "seed", f"must be a non-negative integer, got {seed!r}")


def _check_int_option(field: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DatasetError(None, field, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise DatasetError(None, field, f"must be {bounds}, got {value}")
    return int(value)


def _quote_list(values, limit: int = 8) -> str:
    values = list(values)
    shown = ", ".join(f"'{v}'" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _check_classes(
    file: str | None,
    field: str,
    y: np.ndarray,
    class_names: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> None:
    """Reject label sets a classifier cannot be trained and evaluated on."""
    if len(class_names) < 2:
        only = f" ('{class_names[0]}')" if class_names else ""
        raise DatasetError(
            file, field, f"found only one class{only}; a classifier needs at least 2 different labels"
        )
    counts = np.bincount(y, minlength=len(class_names))
    small = [(class_names[i], int(c)) for i, c in enumerate(counts) if c < MIN_ROWS_PER_CLASS]
    if small:
        examples = ", ".join(f"'{name}' has {count}" for name, count in small[:5])
        hint = ""
        if len(small) > len(class_names) / 2:
            hint = f"; with {len(class_names)} classes for {len(y)} rows, is this really the label?"
        raise DatasetError(
            file,
            field,
            f"{len(small)} of {len(class_names)} classes have fewer than {MIN_ROWS_PER_CLASS} examples "
            f"({examples}); each class needs at least {MIN_ROWS_PER_CLASS} so that training, "
            f"validation and test all see it{hint}",
        )
    train, _, _ = split_indices(y, val_fraction, test_fraction, seed)
    missing = np.flatnonzero(np.bincount(y[train], minlength=len(class_names)) == 0)
    if len(missing):
        raise DatasetError(
            file,
            "val_fraction",
            f"with val_fraction={val_fraction} and test_fraction={test_fraction} class "
            f"'{class_names[missing[0]]}' keeps no training examples; lower the fractions or add rows",
        )


def _encode_numeric_labels(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    uniques, y = np.unique(values, return_inverse=True)
    names = [str(int(v)) if float(v).is_integer() else str(v) for v in uniques.tolist()]
    return y.astype(np.int64).reshape(-1), names


def _finish(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    *,
    file: str | None,
    label_field: str,
    source: dict,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    meta: dict,
    raw: np.ndarray | None = None,
) -> Task:
    _check_classes(file, label_field, y, class_names, val_fraction, test_fraction, seed)
    meta = {"source": source, **meta}
    return make_task(
        name,
        X,
        y,
        class_names=class_names,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        meta=meta,
        raw=raw,
    )

