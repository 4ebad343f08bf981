"""Tabular benchmark estimator: look a candidate's metrics up in a user-supplied table.

A researcher who has a table of pre-computed results (NAS-Bench-201's, or their own) compares
search strategies in seconds: nothing is trained, each trial is a dictionary lookup. The table
is a CSV with a header row, one row per architecture, keyed by the NAS-Bench-201 string form
("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|"), so it only applies to the `nb201` space.

- `objective_column` is the search signal (e.g. a low-fidelity validation accuracy);
  `direction: min` turns a loss or an error rate into a higher-is-better objective.
- `report_columns` are reported beside it (e.g. the final test accuracy the search never sees).
- `cost_column` (optional) is the simulated training time in seconds; it becomes the trial's
  `cost_s`, so accuracy can be plotted against simulated time. Without it `cost_s` is the
  (tiny) lookup time.
- `budget_columns` (optional) maps epoch budgets to columns, e.g. "12:val_acc_12,200:val_acc_200"
  (NAS-Bench-201 after 12 and after 200 epochs). A trial with budget {"epochs": e} reads the
  column of the smallest listed budget >= e, so Hyperband's promotions see the better-trained
  value; a trial without an epochs budget reads the largest; one above the largest fails,
  naming the option. The value is reported as `objective_column` (which then need not be a
  column) and the budget read as `table_epochs`.
- A first column with an empty name (the index `DataFrame.to_csv()` writes) is ignored.

The estimator declares `needs_model = False`: with no constraint set, the loop never builds
the network (params/FLOPs/latency are then only known if the table reports them).

The table is parsed and checked once per (path, modification time, size) and shared by every
estimator in the process. Bad tables fail at construction with a DatasetError naming the file,
the field (column or line) and the reason; an architecture missing from the table makes its
trial fail with a message naming it (the loop records a failed trial and the search goes on).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..data import DatasetError
from ..data.tabular import _read_csv
from ..registry import ConfigError, Option, register_estimator
from ..spaces.nb201 import EDGE_LABELS, NB201Space
from ..task import Task
from ..types import Architecture, ReportFn, Result
from .base import Estimator

MAX_TABLE_BYTES = 256 * 1024 * 1024
MAX_TABLE_ROWS = 1_000_000
_NB201 = NB201Space()  # only its string conversion is used: C and N do not matter


class ArchitectureNotInTable(LookupError):
    """Raised from estimate(): the loop records that trial as failed, with this message."""


class BudgetNotInTable(LookupError):
    """Raised from estimate() for an epoch budget above every column of budget_columns."""


# The name given to an unnamed leading index column; angle brackets keep it out of the way of
# real column names, and messages leave it out.
_INDEX_COLUMN = "<unnamed index>"


@dataclass(frozen=True)
class Table:
    file: str
    columns: tuple[str, ...]
    rows: dict[str, dict[str, float]]  # canonical nb201 string -> column -> value
    lines: dict[str, int]  # canonical nb201 string -> line in the file, for messages


_TABLES: dict[tuple, Table] = {}
_TABLE_CACHE_SIZE = 8


def _number(file: str, column: str, line: int, text: str, finite: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(file, column, f"line {line}: {text!r} is not a number") from None
    if finite and not math.isfinite(value):
        raise DatasetError(file, column, f"line {line}: {text!r} is not a finite number")
    return value


def load_table(path: str, key_column: str, numeric: dict[str, bool], delimiter: str = ",") -> Table:
    """Parse and check the table; `numeric` maps each value column to "must be finite".

    Cached by (path, mtime, size, columns): editing the file invalidates the cache."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(path, "path", "no such file; give the path of a CSV table") from None
    except OSError as exc:
        raise DatasetError(path, "path", f"cannot be read: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise DatasetError(path, "path", "is not a file")
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, key_column, tuple(sorted(numeric.items())),
           delimiter)
    table = _TABLES.get(key)
    if table is None:
        table = _parse(path, key_column, numeric, delimiter)
        if len(_TABLES) >= _TABLE_CACHE_SIZE:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = table
    return table


def _parse(path: str, key_column: str, numeric: dict[str, bool], delimiter: str) -> Table:
    csv_table = _read_csv(path, max_bytes=MAX_TABLE_BYTES, max_rows=MAX_TABLE_ROWS, delimiter=delimiter,
                          index_name=_INDEX_COLUMN)
    file, columns = csv_table.file, csv_table.columns
    listed = ", ".join(c for c in columns if c != _INDEX_COLUMN)
    if key_column not in columns:
        if _looks_like_key(columns[0]):
            raise DatasetError(file, "header", f"the first row looks like data ({columns[0]!r}), not column "
                                               f"names; add a header row naming the columns")
        raise DatasetError(file, key_column, f"no such column (columns: {listed}); set key_column "
                                             f"to the column holding NAS-Bench-201 strings")
    for column, _ in numeric.items():
        if column not in columns:
            raise DatasetError(file, column, f"no such column (columns: {listed})")
    key_index = columns.index(key_column)
    value_indices = {column: columns.index(column) for column in numeric}
    rows: dict[str, dict[str, float]] = {}
    lines: dict[str, int] = {}
    for cells, line in zip(csv_table.rows, csv_table.lines):
        try:
            canonical = _NB201.to_string(_NB201.from_string(cells[key_index]))
        except ConfigError as exc:
            raise DatasetError(file, key_column, f"line {line}: {exc.reason}") from None
        if canonical in rows:
            raise DatasetError(file, key_column, f"line {line}: {cells[key_index]!r} repeats the architecture "
                                                 f"of line {lines[canonical]}; keep one row per architecture")
        rows[canonical] = {
            column: _number(file, column, line, cells[index], numeric[column])
            for column, index in value_indices.items()
        }
        lines[canonical] = line
    return Table(file=file, columns=tuple(columns), rows=rows, lines=lines)


def _budget_columns(text: str) -> list[tuple[int, str]]:
    """"12:val_acc_12,200:val_acc_200" -> [(12, "val_acc_12"), (200, "val_acc_200")], sorted."""
    pairs: dict[int, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        epochs, sep, column = (piece.strip() for piece in item.partition(":"))
        if not sep or not column or not epochs.isdigit() or int(epochs) < 1:
            raise ConfigError("budget_columns", f"{item!r} is not EPOCHS:COLUMN with EPOCHS a positive "
                                                f"integer (e.g. 12:val_acc_12,200:val_acc_200)")
        if int(epochs) in pairs:
            raise ConfigError("budget_columns", f"epochs {epochs} is listed twice")
        pairs[int(epochs)] = column
    return sorted(pairs.items())


def _looks_like_key(text: str) -> bool:
    try:
        _NB201.from_string(text)
    except ConfigError:
        return False
    return True


@register_estimator("tabular")
class TabularEstimator(Estimator):
    """Tabular benchmark: look each nb201 candidate's metrics up in a CSV (no training)."""

    trains_model = False
    needs_model = False  # a lookup: the loop need not build the network (see loop.needs_network)
    options = {
        "path": Option(str, "", "the CSV table (one row per architecture, with a header row)"),
        "key_column": Option(str, "arch", "column holding the NAS-Bench-201 string of each architecture"),
        "objective_column": Option(str, "val_acc", "column used as the search objective"),
        "direction": Option(str, "max", "max: higher values are better; min: lower ones (a loss, an error)",
                            choices=("max", "min")),
        "report_columns": Option(list, [], "columns reported beside the objective (comma separated)"),
        "cost_column": Option(str, "", "optional column of simulated training seconds, reported as cost_s"),
        "delimiter": Option(str, ",", "the CSV field separator"),
        "budget_columns": Option(str, "", "epochs:column pairs, e.g. 12:val_acc_12,200:val_acc_200; a trial "
                                          "with epochs e reads the smallest listed budget >= e, one "
                                          "without an epochs budget the largest"),
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        if not self.config["path"]:
            raise ConfigError("path", "the tabular estimator needs the path of a CSV table")
        for option in ("key_column", "objective_column"):
            if not self.config[option].strip():
                raise ConfigError(option, "must name a column of the table")
        self.budgets = _budget_columns(self.config["budget_columns"])
        numeric = {column: False for column in self.config["report_columns"]}
        # Objective and cost must be finite; with budget columns the objective is read from them.
        for column in [column for _, column in self.budgets] or [self.config["objective_column"]]:
            numeric[column] = True
        if self.config["cost_column"]:
            numeric[self.config["cost_column"]] = True
        if self.config["key_column"] in numeric:
            raise ConfigError("key_column", f"{self.config['key_column']!r} is also used as a value column")
        self.table = load_table(self.config["path"], self.config["key_column"], numeric, self.config["delimiter"])

    def lookup(self, arch: Architecture) -> tuple[str, dict[str, float]]:
        if not isinstance(arch, dict) or set(arch) != set(EDGE_LABELS):
            raise ConfigError("space", "the tabular estimator is keyed by NAS-Bench-201 strings: use the nb201 space")
        key = _NB201.to_string(arch)
        try:
            return key, self.table.rows[key]
        except KeyError:
            raise ArchitectureNotInTable(
                f"architecture {key} is not in the table {self.table.file} "
                f"({len(self.table.rows)} architectures)"
            ) from None

    def estimate(
        self,
        arch: Architecture,
        model: nn.Module,
        task: Task,
        budget: dict[str, Any],
        report: ReportFn,
    ) -> Result:
        started = time.perf_counter()
        _, row = self.lookup(arch)
        objective_column = self.config["objective_column"]
        metrics: dict[str, Any] = {}
        if self.budgets:
            epochs, column = self._budget_column(budget)
            metrics["table_epochs"] = epochs
        else:
            column = objective_column
        value = row[column]
        metrics[objective_column] = value
        for column in self.config["report_columns"]:
            metrics[column] = row[column]
        lookup_s = time.perf_counter() - started
        cost_s = lookup_s
        if self.config["cost_column"]:
            cost_s = row[self.config["cost_column"]]
            metrics["simulated_cost_s"] = cost_s
        metrics["lookup_time_s"] = lookup_s
        report(1, {k: v for k, v in metrics.items() if k not in ("lookup_time_s", "table_epochs")})
        objective = value if self.config["direction"] == "max" else -value
        return Result(metrics=metrics, objective=objective, cost_s=cost_s)

    def _budget_column(self, budget: dict[str, Any]) -> tuple[int, str]:
        epochs = budget.get("epochs")
        if epochs is None:
            return self.budgets[-1]
        for listed, column in self.budgets:
            if listed >= epochs:
                return listed, column
        raise BudgetNotInTable(
            f"budget_columns: no column for {epochs} epochs (the table lists up to {self.budgets[-1][0]}); "
            f"add one or lower the strategy's max_epochs"
        )
