"""The tabular benchmark estimator: every strategy against a synthetic table of all 15625 nb201
cells, and the errors a person gets for a bad table or an architecture the table lacks."""

from __future__ import annotations

import itertools
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from search_engine import Budget, ConfigError, DatasetError, create_estimator, create_space, make_task
from search_engine.estimators.tabular import ArchitectureNotInTable, BudgetNotInTable
from search_engine.loop import run_search
from search_engine.registry import STRATEGIES, create_strategy
from search_engine.runtime import derive_seed
from search_engine.spaces.nb201 import EDGE_LABELS, OPS, NB201Space
from search_engine.types import COMPLETED, FAILED

OP_VALUE = {"none": 0.0, "skip_connect": 0.02, "nor_conv_1x1": 0.05, "nor_conv_3x3": 0.08, "avg_pool_3x3": 0.01}


def synthetic_row(arch: dict) -> dict:
    """A deterministic landscape: additive per-edge terms plus a hashed wiggle; 4 decimals."""
    wiggle = (derive_seed("tabular", sorted(arch.items())) % 1000) / 1e5
    val = round(0.4 + sum(OP_VALUE[arch[e]] for e in EDGE_LABELS) + wiggle, 4)
    convs = sum(arch[e].startswith("nor_conv") for e in EDGE_LABELS)
    return {"val_acc": val, "test_acc": round(val - 0.0123, 4), "train_time": 10.0 + 2.5 * convs}


@cache
def full_table() -> tuple[str, dict[str, dict]]:
    """(CSV text, nb201 string -> row) for every cell of the space."""
    space = create_space("nb201")
    rows = {}
    for ops in itertools.product(OPS, repeat=len(EDGE_LABELS)):
        arch = dict(zip(EDGE_LABELS, ops))
        rows[space.to_string(arch)] = synthetic_row(arch)
    lines = ["arch,val_acc,test_acc,train_time"]
    lines += [f"{k},{r['val_acc']},{r['test_acc']},{r['train_time']}" for k, r in rows.items()]
    return "\n".join(lines) + "\n", rows


@pytest.fixture
def table_path(tmp_path) -> Path:
    path = tmp_path / "nb201.csv"
    path.write_text(full_table()[0])
    return path


@cache
def tiny_images():
    """The loop still builds each network (static constraints, latency): keep it small."""
    rng = np.random.default_rng(0)
    return make_task("tiny", rng.random((40, 1, 8, 8), dtype=np.float32), np.arange(40) % 4, seed=0)


class TableOnlyNB201(NB201Space):
    """nb201's choices and strings with a one-layer network: a tabular benchmark never trains the
    network, and the loop's static FLOP count of a real nb201 one costs 0.1-0.5 s per trial."""

    def build(self, arch, task):
        self.validate(arch)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def tabular(path, **config):
    return create_estimator("tabular", path=str(path), objective_column="val_acc",
                            report_columns=["test_acc"], cost_column="train_time", **config)


def strategy_for(name: str, space, task):
    config = {"limit": space.cardinality()} if name == "grid" else {}
    if name == "zc_prescreen":
        config = {"proxy": "params", "pool": 20, "top_k": 5}
    strategy = create_strategy(name, space, seed=3, **config)
    if getattr(strategy, "needs_task", False):
        strategy.bind_task(task)
    return strategy


@pytest.mark.parametrize("strategy_name", STRATEGIES.names())
def test_it_reports_the_tables_values_for_every_strategy(strategy_name, table_path):
    space = TableOnlyNB201()
    task = tiny_images()
    _, rows = full_table()

    result = run_search(task=task, space=space, strategy=strategy_for(strategy_name, space, task),
                        estimator=tabular(table_path), budget=Budget(trials=20), seed=0)

    completed = [o for o in result.outcomes if o.state == COMPLETED]
    assert len(completed) == 20, [o.error for o in result.outcomes if o.state != COMPLETED][:1]
    for outcome in completed:
        row = rows[space.to_string(outcome.arch)]
        assert outcome.objective == row["val_acc"]
        assert outcome.metrics["val_acc"] == row["val_acc"]
        assert outcome.metrics["test_acc"] == row["test_acc"]
        assert outcome.metrics["cost_s"] == row["train_time"]
    assert result.best.objective == max(o.objective for o in completed)


def test_it_parses_each_table_once(table_path):
    first = tabular(table_path)
    second = tabular(table_path)
    assert first.table is second.table

    table_path.write_text(full_table()[0] + "\n")
    os.utime(table_path, ns=(1, 1))  # a new mtime: the file changed
    assert tabular(table_path).table is not first.table


def test_it_minimizes_when_told(tmp_path):
    space = create_space("nb201")
    arch = space.sample(np.random.default_rng(0))
    path = tmp_path / "loss.csv"
    path.write_text(f"arch,val_loss\n{space.to_string(arch)},0.25\n")
    estimator = create_estimator("tabular", path=str(path), objective_column="val_loss", direction="min")
    result = estimator.estimate(arch, None, None, {}, lambda s, m: None)
    assert result.objective == -0.25 and result.metrics["val_loss"] == 0.25


def test_it_fails_the_trial_of_an_architecture_missing_from_the_table(tmp_path):
    space = create_space("nb201", C=4, N=1)
    present = {label: "nor_conv_3x3" for label in EDGE_LABELS}
    path = tmp_path / "one.csv"
    path.write_text(f"arch,val_acc\n{space.to_string(present)},0.9\n")
    estimator = create_estimator("tabular", path=str(path))
    missing = {label: "skip_connect" for label in EDGE_LABELS}

    with pytest.raises(ArchitectureNotInTable) as excinfo:
        estimator.estimate(missing, None, None, {}, lambda s, m: None)
    assert space.to_string(missing) in str(excinfo.value) and "one.csv" in str(excinfo.value)

    result = run_search(task=tiny_images(), space=space, strategy=create_strategy("random", space, seed=0),
                        estimator=estimator, budget=Budget(trials=3), seed=0)
    failed = [o for o in result.outcomes if o.state == FAILED]
    assert failed and all("is not in the table" in o.error for o in failed)


def test_it_refuses_other_spaces(table_path):
    mlp = create_space("mlp")
    arch = mlp.sample(np.random.default_rng(0))
    with pytest.raises(ConfigError) as excinfo:
        tabular(table_path).estimate(arch, None, None, {}, lambda s, m: None)
    assert excinfo.value.field == "space" and "nb201" in str(excinfo.value)


def test_it_ignores_an_unnamed_index_column_as_pandas_writes_it(tmp_path):
    space = create_space("nb201")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(3)]
    keys = list(dict.fromkeys(space.to_string(a) for a in archs))
    path = tmp_path / "pandas.csv"
    # What DataFrame.to_csv() writes: an index column whose header cell is empty.
    path.write_text(",arch,val_acc\n" + "".join(f"{i},{k},0.{i + 1}\n" for i, k in enumerate(keys)))

    estimator = create_estimator("tabular", path=str(path))

    for i, key in enumerate(keys):
        assert estimator.table.rows[key] == {"val_acc": float(f"0.{i + 1}")}
    path.write_text('"",arch,val_acc\n' + f"0,{keys[0]},0.5\n")
    assert create_estimator("tabular", path=str(path)).table.rows[keys[0]] == {"val_acc": 0.5}
    # Messages list the user's columns, not the name given to the index.
    error = table_error(tmp_path, f",arch,acc\n0,{GOOD_KEY},0.9\n")
    assert error.field == "val_acc" and "(columns: arch, acc)" in str(error)


def budget_table(tmp_path) -> tuple[Path, dict[str, dict]]:
    """Every nb201 cell with a value after 1, 3 and 9 epochs (better with more) and its params."""
    _, rows = full_table()
    table = {key: {"val_acc_1": round(row["val_acc"] - 0.3, 4), "val_acc_3": round(row["val_acc"] - 0.1, 4),
                   "val_acc_9": row["val_acc"], "params": 1000 + int(row["train_time"])}
             for key, row in rows.items()}
    path = tmp_path / "budgets.csv"
    lines = ["arch,val_acc_1,val_acc_3,val_acc_9,params"]
    lines += [f"{k},{r['val_acc_1']},{r['val_acc_3']},{r['val_acc_9']},{r['params']}" for k, r in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path, table


class NeverBuiltNB201(NB201Space):
    def build(self, arch, task):
        raise AssertionError("a table lookup without constraints must not build the network")


def test_it_reads_the_column_of_each_hyperband_budget_without_building(tmp_path):
    path, table = budget_table(tmp_path)
    space = NeverBuiltNB201()
    estimator = create_estimator("tabular", path=str(path), report_columns=["params"],
                                 budget_columns="1:val_acc_1,3:val_acc_3,9:val_acc_9")

    result = run_search(task=tiny_images(), space=space, strategy=create_strategy("hyperband", space, seed=0),
                        estimator=estimator, budget=Budget(trials=20), seed=0)

    completed = [o for o in result.outcomes if o.state == COMPLETED]
    assert len(completed) == 20, [o.error for o in result.outcomes if o.state != COMPLETED][:1]
    for outcome in completed:
        epochs = outcome.budget["epochs"]
        assert outcome.objective == table[space.to_string(outcome.arch)][f"val_acc_{epochs}"]
        assert outcome.metrics["table_epochs"] == epochs
        assert outcome.metrics["params"] == table[space.to_string(outcome.arch)]["params"]  # from the table
        assert "flops" not in outcome.metrics and "latency_ms" not in outcome.constraints
    promoted = [o for o in completed if o.meta["rung"] > 0]
    assert promoted, "20 trials reach the second rung of the first bracket"
    first_reads = {space.to_string(o.arch): o.objective for o in completed if o.meta["rung"] == 0}
    assert all(o.objective > first_reads[space.to_string(o.arch)] for o in promoted
               if space.to_string(o.arch) in first_reads)


def test_it_maps_budgets_to_the_nearest_listed_one_above(tmp_path):
    path, table = budget_table(tmp_path)
    estimator = create_estimator("tabular", path=str(path), budget_columns="3:val_acc_3, 9:val_acc_9")
    key = next(iter(table))
    arch = NB201Space().from_string(key)

    def read(budget):
        return estimator.estimate(arch, None, None, budget, lambda s, m: None).objective

    assert read({"epochs": 1}) == read({"epochs": 3}) == table[key]["val_acc_3"]
    assert read({"epochs": 4}) == read({}) == table[key]["val_acc_9"]
    with pytest.raises(BudgetNotInTable) as excinfo:
        read({"epochs": 10})
    assert "budget_columns" in str(excinfo.value) and "up to 9" in str(excinfo.value)


@pytest.mark.parametrize("text", ["12", "x:val_acc_1", "0:val_acc_1", "3:", "3:val_acc_3,3:val_acc_9"])
def test_it_names_bad_budget_columns(tmp_path, text):
    path, _ = budget_table(tmp_path)
    with pytest.raises(ConfigError) as excinfo:
        create_estimator("tabular", path=str(path), budget_columns=text)
    assert excinfo.value.field == "budget_columns"


def test_it_names_a_missing_budget_column(tmp_path):
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},0.9\n", budget_columns="12:val_acc_12")
    assert error.field == "val_acc_12" and "no such column" in str(error)


# -- bad tables ----------------------------------------------------------------------------

GOOD_KEY = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
OTHER_KEY = "|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


def table_error(tmp_path, text: str | None, **config) -> DatasetError:
    path = tmp_path / "t.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DatasetError) as excinfo:
        create_estimator("tabular", path=str(path), **config)
    return excinfo.value


def test_it_names_a_missing_file(tmp_path):
    error = table_error(tmp_path, None)
    assert error.field == "path" and "no such file" in str(error)


def test_it_needs_a_path():
    with pytest.raises(ConfigError) as excinfo:
        create_estimator("tabular")
    assert excinfo.value.field == "path"


def test_it_names_a_table_without_a_header(tmp_path):
    error = table_error(tmp_path, f"{GOOD_KEY},0.9\n{OTHER_KEY},0.8\n")
    assert error.field == "header" and "looks like data" in str(error)


def test_it_names_a_missing_column(tmp_path):
    error = table_error(tmp_path, f"arch,acc\n{GOOD_KEY},0.9\n")
    assert error.field == "val_acc" and "no such column" in str(error) and "arch, acc" in str(error)
    error = table_error(tmp_path, f"name,val_acc\n{GOOD_KEY},0.9\n")
    assert error.field == "arch"
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},0.9\n", report_columns="test_acc")
    assert error.field == "test_acc"


def test_it_names_a_non_numeric_value_and_its_line(tmp_path):
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},0.9\n{OTHER_KEY},high\n")
    assert error.field == "val_acc" and "line 3" in str(error) and "'high'" in str(error)
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},nan\n")
    assert "not a finite number" in str(error)


def test_it_names_duplicate_architectures(tmp_path):
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},0.9\n{OTHER_KEY},0.8\n {GOOD_KEY} ,0.7\n")
    assert error.field == "arch" and "line 4" in str(error) and "line 2" in str(error)


def test_it_names_a_malformed_architecture_string(tmp_path):
    error = table_error(tmp_path, f"arch,val_acc\n{GOOD_KEY},0.9\n|conv~0|+|x|,0.8\n")
    assert error.field == "arch" and "line 3" in str(error)


def test_it_names_an_empty_table(tmp_path):
    error = table_error(tmp_path, "arch,val_acc\n")
    assert "no data rows" in str(error)
    error = table_error(tmp_path, "")
    assert "empty" in str(error)
