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
from search_engine.estimators.tabular import ArchitectureNotInTable
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
