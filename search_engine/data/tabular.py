"""CSV files: reading, previewing and encoding a table into a tabular Task."""

from __future__ import annotations

import re

import numpy as np

from ..task import Task
from .common import (
    MIN_ROWS_PER_CLASS,
    DatasetError,
    MiB,
    Source,
    _check_int_option,
    _check_split_options,
    _encode_numeric_labels,
    _finish,
    _stem,
)
from .csvfile import CSV_DELIMITERS, _as_number, _CsvTable, _read_csv

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "#n/a", "?"})
LABEL_COLUMN_NAMES = ("label", "labels", "target", "class", "classes", "y", "species", "category", "outcome")
NUMERIC_COLUMN_SHARE = 0.9
# A preview summarises this many rows at most: the number load_csv accepts by default, so the
# summary is of the whole file whenever the file can be loaded at all.
PREVIEW_SCAN_ROWS = 100_000

__all__ = ["CSV_DELIMITERS", "LABEL_COLUMN_NAMES", "MISSING_TOKENS", "_read_csv", "load_csv", "preview_csv"]


def _is_missing(value: str) -> bool:
    return value.lower() in MISSING_TOKENS


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
    source: Source,
    *,
    max_rows: int = 5,
    delimiter: str | None = None,
    max_bytes: int = 64 * MiB,
    scan_rows: int = PREVIEW_SCAN_ROWS,
) -> dict:
    """What the upload form shows before the user picks a target: columns, the first `max_rows` rows,
    the row count, each column's kind (numeric/string), missing and distinct counts, a suggested target.

    Only the first `scan_rows` data rows are read, so a file of millions of tiny rows previews in
    bounded time and memory; `truncated` then says the counts are of those rows, not of the file.

    Raises DatasetError for files no choice of target can fix (encoding, header, ragged rows)."""
    max_rows = _check_int_option("max_rows", max_rows, 0)
    scan_rows = _check_int_option("scan_rows", scan_rows, 1)
    table = _read_csv(source, max_bytes=max_bytes, max_rows=scan_rows, delimiter=delimiter, prefix=True)
    kinds, missing, distinct, first = {}, {}, {}, []
    for i, column in enumerate(table.columns):
        values = table.column(i)
        kinds[column], missing[column], distinct[column] = _column_summary(values)
        first.append(values[:max_rows])
    return {
        "file": table.file,
        "delimiter": table.delimiter,
        "columns": list(table.columns),
        "rows": [list(row) for row in zip(*first)],
        "n_rows": table.n_rows,
        "truncated": not table.complete,
        "kinds": kinds,
        "missing": missing,
        "distinct": distinct,
        "suggested_target": _suggest_target(table.columns, kinds, distinct, table.n_rows),
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
        table.drop_cells(index)  # the next column's list of cells takes its room
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
    blocks.clear()
    source_record = {
        "csv": file, "target": target, "seed": seed, "val_fraction": val_fraction,
        "test_fraction": test_fraction, "exclude": list(exclude), "delimiter": table.delimiter,
        "max_rows": max_rows, "max_features": max_features, "max_categories": max_categories,
    }  # fmt: skip
    meta = {"features": feature_names, "categorical": categorical, "target": target,
            "raw_input": _csv_raw_input(table, target, feature_indices, categorical, list(exclude))}  # fmt: skip
    table.drop_cells()  # encoded: the Task's arrays are made next and need the room
    return _finish(
        name or _stem(file), X, y, class_names, file=file, label_field="target", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta, raw=X,
    )  # fmt: skip


def _csv_raw_input(
    table: _CsvTable, target: str, feature_indices: list[int], categorical: dict, exclude: list[str]
) -> dict:
    """How a row of the file becomes the exported model's input, exactly as load_csv encodes it.

    The graph takes the feature columns in file order as float32, each text column replaced by its
    one-hot block (categories sorted); predict.py does that encoding, the graph the standardisation."""
    features = []
    for index in feature_indices:
        column = table.columns[index]
        if column in categorical:
            features.append({"name": column, "kind": "categorical", "categories": list(categorical[column])})
        else:
            features.append({"name": column, "kind": "numeric"})
    width = sum(len(f.get("categories", ())) or 1 for f in features)
    labels = table.column(table.columns.index(target))
    numeric_target = all(_as_number(v) is not None for v in labels)
    text = [f["name"] for f in features if f["kind"] == "categorical"]
    return {
        "source": "csv", "file": table.file, "delimiter": table.delimiter, "columns": list(table.columns),
        "target": target, "target_kind": "numeric" if numeric_target else "text", "excluded": exclude,
        "features": features, "n_rows": table.n_rows, "dtype": "float32", "shape": [width],
        "scale": None, "layout": "reshape", "labels": "value",
        "missing": "refused (empty, NA, N/A, NaN, null, ? and #N/A count as missing); nothing is imputed",
        "encoded_in": "predict.py" if text else "graph",
        "description": (
            f"the rows of a CSV with the columns of `{table.file}` (delimiter {table.delimiter!r}, UTF-8, "
            f"header row); features: {', '.join(f['name'] for f in features)}, numbers as written"
            + (f"; text columns {', '.join(text)} are one-hot encoded by predict.py" if text else "")
        ),
    }  # fmt: skip

