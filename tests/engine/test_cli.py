"""`python -m search_engine list` and `run`, called through main(argv) and once as a module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search_engine import cli, export
from search_engine.data import BUILTIN_DATASETS, load_builtin
from search_engine.registry import ESTIMATORS, SPACES, STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
TINY_RUN = ["run", "--dataset", "iris", "--space", "mlp", "--strategy", "random", "--trials", "2",
            "--epochs", "1", "--seed", "0", "--device", "cpu", "--threads", "1"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- list ------------------------------------------------------------------------------------
def test_it_lists_every_registered_component_with_its_options(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for registry in (SPACES, STRATEGIES, ESTIMATORS):
        for name, entry in registry.describe().items():
            assert f"  {name}" in out
            for option in entry["options"]:
                assert f"      {option} (" in out
    assert "epochs (int, default 10)" in out  # type and default of the train estimator's epochs
    assert "choices: adam, adamw, sgd" in out
    for dataset in BUILTIN_DATASETS:
        assert f"  {dataset}" in out


def test_it_lists_as_json(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert set(listing) == {"spaces", "strategies", "estimators", "oneshot", "datasets"}
    assert set(listing["spaces"]) == set(SPACES.names())
    assert set(listing["strategies"]) == set(STRATEGIES.names())
    epochs = listing["estimators"]["train"]["options"]["epochs"]
    assert epochs["type"] == "int" and epochs["default"] == 10 and "help" in epochs
    assert listing["estimators"]["train"]["options"]["optimizer"]["choices"] == ["adam", "adamw", "sgd"]
    assert set(listing["datasets"]) == set(BUILTIN_DATASETS)


def test_it_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "search_engine", "list", "--json"], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "nb201" in json.loads(proc.stdout)["spaces"]


# -- run -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = cli.main([*TINY_RUN, "--out", str(out)])
    return code, out


def test_it_writes_the_results(tiny_run):
    code, out = tiny_run
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["space"] == {"name": "mlp", "config": {"max_depth": 4}}
    assert results["config"]["estimator"]["config"]["epochs"] == 1
    assert results["config"]["dataset"] == {"builtin": "iris", "seed": 0}
    assert results["dataset"]["name"] == "iris" and results["dataset"]["num_classes"] == 3
    assert [t["number"] for t in results["trials"]] == [0, 1]
    for trial in results["trials"]:
        assert trial["state"] == "completed"
        assert {"val_acc", "test_acc", "params", "flops", "latency_ms"} <= set(trial["metrics"])
    # The shared rule: the highest objective, ties to the smaller model, then the earlier trial.
    best = max(results["trials"], key=lambda t: (t["objective"], -t["metrics"]["params"], -t["number"]))
    assert results["best"]["number"] == best["number"]
    assert results["pareto"] and all("val_acc" in p for p in results["pareto"])
    assert results["stopped_because"] == "trial budget spent"
    assert results["wall_time_s"] > 0


def test_it_exports_the_best_model(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "results.json").read_text())
    exported = results["exported"]
    for name in ("model.pt", "model.onnx", "weights.safetensors", "architecture.json", "labels.json",
                 "split.json", "predict.py", "MODEL_CARD.md"):
        assert (out / "best" / name).is_file()
    assert json.loads((out / "best" / "architecture.json").read_text())["arch"] == results["best"]["arch"]
    task = load_builtin("iris", seed=0)
    model = export.load_model(out / "best", format="torchscript")
    with torch.no_grad():  # the exported graph takes the raw rows (load_iris().data) since issue 10
        acc = (model(torch.from_numpy(task.X_test_raw)).argmax(1) == task.y_test).float().mean().item()
    assert exported["test_acc"] == pytest.approx(acc)
    assert exported["test_acc"] == pytest.approx(results["best"]["metrics"]["test_acc"])
    assert set(exported["test_acc_by_format"]) == {"torchscript", "onnx", "weights"}


def test_it_prints_trials_tables_and_paths(tmp_path, capsys):
    code, out, _ = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "run"), "--max-params", "3000")
    assert code == 0
    assert "#0 " in out and "completed" in out
    assert "top " in out and "Pareto front over val_acc (max), params (min), latency_ms (min)" in out
    assert f"results: {tmp_path / 'run' / 'results.json'}" in out
    assert "exported best model test accuracy:" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    trained = [t for t in results["trials"] if t["state"] != "infeasible"]
    assert len(trained) == 2
    assert all(t["metrics"]["params"] <= 3000 for t in trained)
    for t in results["trials"]:
        if t["state"] == "infeasible":
            assert f"[violates params={t['metrics']['params']} > 3000]" in out


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--space-opt", "max_depth=deep"], "max_depth: expected int, got 'deep'"),
        (["--space-opt", "max_depth=99"], "max_depth: must be <= 8"),
        (["--space-opt", "colour=red"], "colour: unknown option for space 'mlp'"),
        (["--strategy", "evolution", "--strategy-opt", "population_size=x"], "population_size: expected int"),
        (["--estimator-opt", "optimizer=rmsprop"], "optimizer: 'rmsprop' is not one of: adam, adamw, sgd"),
        (["--estimator-opt", "lr"], "estimator-opt: expected KEY=VALUE"),
        (["--space", "transformer"], "space: unknown space 'transformer'"),
        (["--max-params", "-5"], "max_params: must be a positive number"),
        (["--objectives", "val_acc:up"], "objectives: "),
        (["--trials", "0"], "trials: must be > 0"),
    ],
)
def test_it_exits_2_naming_the_bad_field(tmp_path, capsys, argv, field):
    code, out, err = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "bad"), *argv)
    assert code == 2
    assert field in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_it_exits_2_on_a_bad_dataset(tmp_path, capsys):
    argv = [a if a != "iris" else "cifar" for a in TINY_RUN]
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown dataset 'cifar'" in err and "Traceback" not in err

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,label\n1,2,x\n")
    argv = ["run", "--csv", str(bad_csv), "--target", "nope", "--trials", "1", "--out", str(tmp_path / "bad")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "bad.csv" in err and "Traceback" not in err


def test_it_refuses_two_data_sources(tmp_path, capsys):
    code, _, err = run_cli(capsys, *TINY_RUN, "--npz", str(tmp_path / "x.npz"))
    assert code == 2 and "dataset: give exactly one of --dataset, --csv, --npz, --zip" in err


def test_it_runs_a_one_shot_job_then_retrains_its_top_architectures(tmp_path, capsys):
    out = tmp_path / "oneshot"
    argv = ["run", "--dataset", "digits", "--space", "nb201", "--space-opt", "C=4",
            "--oneshot", "supernet", "--oneshot-opt", "epochs=1", "--oneshot-opt", "top_k=2",
            "--oneshot-opt", "cycles=4", "--oneshot-opt", "population_size=4", "--oneshot-opt", "sample_size=2",
            "--epochs", "1", "--seed", "0", "--out", str(out)]  # fmt: skip
    code, stdout, _ = run_cli(capsys, *argv)

    assert code == 0, stdout
    results = json.loads((out / "results.json").read_text())
    assert results["oneshot"]["method"] == "supernet"
    assert results["config"]["strategy"]["name"] == "fixed"
    retrained = [t["arch"] for t in results["trials"] if t["state"] == "completed"]
    assert retrained == [entry["arch"] for entry in results["oneshot"]["top_archs"]][: len(retrained)]
    assert len(retrained) == 2
    assert (out / "oneshot" / "checkpoint.pt").exists()

    # Running the same command again resumes from the checkpoint instead of training again.
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    assert json.loads((out / "results.json").read_text())["oneshot"]["top_archs"] == results["oneshot"]["top_archs"]
