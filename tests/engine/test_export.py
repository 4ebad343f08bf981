"""Exported artifacts (TorchScript, ONNX, safetensors + architecture.json) and loading them back."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from search_engine import export
from search_engine.estimators.training import evaluate_accuracy
from search_engine.export import ExportError, ModelFileError, export_model, load_model, verify_onnx
from search_engine.rawinput import raw_input_model
from search_engine.registry import create_space
from search_engine.task import make_task

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return make_task("digits", data.data.reshape(-1, 1, 8, 8) / 16.0, data.target, seed=0)


def _trained(space_name: str, task):
    """A network from a registered space whose BatchNorm statistics have moved off their init."""
    space = create_space(space_name)
    arch = space.sample(np.random.default_rng(3))
    torch.manual_seed(0)
    model = space.build(arch, task)
    model.train()
    with torch.no_grad():
        for start in range(0, 256, 64):
            model(task.X_train[start : start + 64])
    return space, arch, model.eval()


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    space, arch, model = _trained("nb201", digits)
    out = tmp_path_factory.mktemp("export")
    paths = export_model(model, arch, space.name, space.config, digits, out, metrics={"val_acc": np.float32(0.5)})
    return model, arch, space, out, paths


def _reference(model, X):
    with torch.inference_mode():
        return model.eval()(X).numpy()


def test_it_writes_every_format(exported):
    _, _, _, out, paths = exported
    assert set(paths) == {"torchscript", "onnx", "weights", "architecture"}
    assert {p.name for p in out.iterdir()} == {
        "model.pt", "model.onnx", "weights.safetensors", "architecture.json"
    }  # fmt: skip


def test_it_describes_the_model_in_architecture_json(exported, digits):
    _, arch, space, _, paths = exported
    description = json.loads(paths["architecture"].read_text())
    assert description["space"] == "nb201"
    assert description["space_config"] == space.config
    assert description["arch"] == arch
    assert description["input_shape"] == [1, 8, 8]
    assert description["num_classes"] == 10
    assert description["class_names"] == digits.class_names
    assert description["normalize"] == digits.meta["normalize"]
    assert description["metrics"] == {"val_acc": 0.5}
    assert description["torch_version"] == torch.__version__
    assert description["files"]["onnx"] == "model.onnx"
    assert description["checks"]["onnx_max_abs_diff"] <= TOLERANCE


@pytest.mark.parametrize("fmt", ["weights", "torchscript", "onnx"])
def test_it_round_trips_predictions(exported, digits, fmt):
    # Since issue 10 model.pt / model.onnx take the raw rows and return probabilities (the network
    # wrapped in its preprocessing and a softmax); the weights stay the bare network.
    model, _, _, out, _ = exported
    X = digits.X_test[:37]  # not the traced batch size
    raw = torch.from_numpy(digits.X_test_raw[:37])
    loaded = load_model(out, format=fmt)
    reference = _reference(model, X) if fmt == "weights" else _reference(raw_input_model(model, digits), raw)
    if fmt == "onnx":
        got = loaded.predict(raw.numpy())
    else:
        assert not loaded.training
        with torch.inference_mode():
            got = loaded(X if fmt == "weights" else raw).numpy()
    assert np.abs(got - reference).max() <= TOLERANCE
    assert (got.argmax(1) == _reference(model, X).argmax(1)).all()
    if fmt != "weights":
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_the_weights_rebuild_the_same_network(exported, digits):
    model, _, _, out, paths = exported
    loaded = load_model(paths["weights"])  # the file itself works as well as its directory
    assert type(loaded) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert evaluate_accuracy(loaded, digits.X_test, digits.y_test) == evaluate_accuracy(
        model, digits.X_test, digits.y_test
    )


def test_verify_onnx_measures_the_difference(exported, digits):
    model, _, _, _, paths = exported
    raw = torch.from_numpy(digits.X_test_raw[:5])  # the graph takes raw rows (issue 10)
    assert verify_onnx(raw_input_model(model, digits), paths["onnx"], raw) <= TOLERANCE
    changed = load_model(paths["weights"])
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.5)
    assert verify_onnx(raw_input_model(changed, digits), paths["onnx"], raw) > 1e-2


def test_it_exports_a_tabular_network_with_only_the_requested_formats(digits, tmp_path):
    space, arch, model = _trained("mlp", digits)
    was_rng = torch.random.get_rng_state()
    model.train()
    paths = export_model(model, arch, "mlp", space.config, digits, tmp_path, formats=("torchscript", "weights"))
    assert set(paths) == {"torchscript", "weights", "architecture"}
    assert model.training, "export restores the training flag"
    assert torch.equal(torch.random.get_rng_state(), was_rng), "export must not draw from torch's RNG"
    loaded = load_model(tmp_path)  # the weights: the bare network
    X = digits.X_val[:9]
    assert np.abs(_reference(loaded, X) - _reference(model, X)).max() <= TOLERANCE


def test_it_raises_when_onnx_does_not_match(digits, tmp_path, monkeypatch):
    space, arch, model = _trained("mlp", digits)
    monkeypatch.setattr(export, "verify_onnx", lambda *args: 1.0)
    with pytest.raises(ExportError, match="differ"):
        export_model(model, arch, "mlp", space.config, digits, tmp_path, formats=("onnx",))
    assert not (tmp_path / "model.onnx").exists()


def test_it_rejects_an_unknown_format(exported, tmp_path):
    model, arch, space, out, _ = exported
    with pytest.raises(ValueError, match="tflite"):
        export_model(model, arch, space.name, space.config, None, tmp_path, formats=("tflite",))
    with pytest.raises(ValueError, match="tflite"):
        load_model(out, format="tflite")


@pytest.mark.parametrize("fmt", ["weights", "torchscript", "onnx"])
def test_it_refuses_a_missing_file(tmp_path, fmt):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "nowhere", format=fmt)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path, format=fmt)


@pytest.fixture
def copy_of_export(exported, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(exported[3], target)
    return target


@pytest.mark.parametrize(
    "fmt,name", [("weights", "weights.safetensors"), ("torchscript", "model.pt"), ("onnx", "model.onnx")]
)
def test_it_refuses_a_garbled_file(copy_of_export, fmt, name):
    (copy_of_export / name).write_bytes(b"\x00garbage, not a model\xff" * 10)
    with pytest.raises(ModelFileError, match=name):
        load_model(copy_of_export, format=fmt)


def test_it_refuses_garbled_architecture_json(copy_of_export):
    (copy_of_export / "architecture.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="architecture.json: not valid JSON"):
        load_model(copy_of_export)


def test_it_refuses_weights_that_do_not_fit_the_described_network(copy_of_export):
    description = json.loads((copy_of_export / "architecture.json").read_text())
    description["num_classes"] = 3
    (copy_of_export / "architecture.json").write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="do not load"):
        load_model(copy_of_export)


def test_it_refuses_an_architecture_the_space_does_not_know(copy_of_export):
    description = json.loads((copy_of_export / "architecture.json").read_text())
    description["space"] = "no-such-space"
    (copy_of_export / "architecture.json").write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="buildable"):
        load_model(copy_of_export)


@pytest.mark.parametrize("fmt", ["weights", "torchscript", "onnx"])
def test_it_re_measures_test_accuracy_from_the_exported_file(exported, digits, fmt):
    model, _, _, out, _ = exported
    measured = export.exported_test_accuracy(out, digits, format=fmt)
    assert isinstance(measured, float)
    assert measured == pytest.approx(evaluate_accuracy(model, digits.X_test, digits.y_test), abs=1 / len(digits.y_test))


def test_it_re_measures_nothing_without_test_rows(exported, digits):
    _, _, _, out, _ = exported
    no_test = dataclasses.replace(digits, X_test=digits.X_test[:0], y_test=digits.y_test[:0])
    assert export.exported_test_accuracy(out, no_test) is None


def test_it_re_measures_from_the_file_not_the_model_in_memory(digits, tmp_path):
    space, arch, model = _trained("mlp", digits)
    export_model(model, arch, "mlp", space.config, digits, tmp_path, formats=("torchscript",))
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        export.exported_test_accuracy(tmp_path, digits)
