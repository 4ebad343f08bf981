"""CSV files: reading, previewing and encoding a table into a tabular Task."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

import numpy as np

from ..task import Task
from .common import (
    MIN_ROWS_PER_CLASS,
    DatasetError,
    MiB,
    Source,
    _check_int_option,
    _check_split_options,
    _display_name,
    _encode_numeric_labels,
    _finish,
    _open_binary,
    _quote_list,
    _read_limited,
    _stem,
)

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "#n/a", "?"})
LABEL_COLUMN_NAMES = ("label", "labels", "target", "class", "classes", "y", "species", "category", "outcome")
CSV_DELIMITERS = (",", ";", "\t", "|")
NUMERIC_COLUMN_SHARE = 0.9




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
    meta = {"features": feature_names, "categorical": categorical, "target": target,
            "raw_input": _csv_raw_input(table, target, feature_indices, categorical, list(exclude))}  # fmt: skip
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
        "features": features, "n_rows": len(table.rows), "dtype": "float32", "shape": [width],
        "scale": None, "layout": "reshape", "labels": "value",
        "missing": "refused (empty, NA, N/A, NaN, null, ? and #N/A count as missing); nothing is imputed",
        "encoded_in": "predict.py" if text else "graph",
        "description": (
            f"the rows of a CSV with the columns of `{table.file}` (delimiter {table.delimiter!r}, UTF-8, "
            f"header row); features: {', '.join(f['name'] for f in features)}, numbers as written"
            + (f"; text columns {', '.join(text)} are one-hot encoded by predict.py" if text else "")
        ),
    }  # fmt: skip

