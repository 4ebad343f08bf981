"""The model package on the user's raw data: predict.py and the card's snippet, run with `python -I`
from a folder holding only the package and the raw source file, reproduce the card's test accuracy."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from search_engine.data import load_dataset
from search_engine.package import write_package
from search_engine.registry import create_space

PACKAGE_FILES = {"MODEL_CARD.md", "architecture.json", "labels.json", "model.onnx", "model.pt", "predict.py",
                 "split.json", "weights.safetensors"}  # fmt: skip


def _trained(task, epochs: int = 30):
    """A small MLP fitted full-batch for a few steps: enough to beat chance, fast."""
    space = create_space("mlp")
    arch = space.sample(np.random.default_rng(1))
    torch.manual_seed(0)
    model = space.build(arch, task)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(task.X_train), task.y_train).backward()
        optimizer.step()
    return space, arch, model.eval()


def _package(tmp_path: Path, spec: dict, raw_file: Path | None, source: Path | None = None):
    """Write the package of a model trained on `spec`; returns (folder with the raw file, info)."""
    task = load_dataset(spec)
    space, arch, model = _trained(task)
    folder = tmp_path / "unzipped"
    info = write_package(folder, model=model, arch=arch, space=space, task=task,
                         metrics={"val_acc": 0.5}, source=source)  # fmt: skip
    if raw_file is not None:
        shutil.copy(raw_file, folder / raw_file.name)
    return folder, info, task


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    # -I: no user site, no PYTHONPATH and no script folder on sys.path, so neither Django nor
    # search_engine can be imported; only numpy, onnxruntime and Pillow are used.
    return subprocess.run([sys.executable, "-I", *args], cwd=folder, capture_output=True, text=True, timeout=120)


def _card_accuracy(folder: Path) -> str:
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    return re.search(r"Test accuracy of the exported model .*: \*\*([0-9.]+) \((\d+)/(\d+)\)\*\*", card).group(1)


def _check_reproduces(folder: Path, raw_name: str, info) -> str:
    """predict.py --rows test and the card's python block both print the card's test accuracy."""
    assert PACKAGE_FILES <= {p.name for p in folder.iterdir()}
    card_acc = _card_accuracy(folder)
    assert card_acc == f"{info.test_acc:.4f}"
    proc = _run(folder, "predict.py", raw_name, "--rows", "test")
    assert proc.returncode == 0, proc.stderr
    printed = re.search(r"^accuracy ([0-9.]+) \((\d+)/(\d+)\)$", proc.stdout, re.M)
    assert printed.group(1) == card_acc
    assert (int(printed.group(2)), int(printed.group(3))) == (info.test_correct, info.test_total)
    predictions = (folder / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "row,predicted,probability,label" and len(predictions) == info.test_total + 1

    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 1
    (folder / "card_snippet.py").write_text(blocks[0])
    proc = _run(folder, "card_snippet.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"accuracy {card_acc}"
    return card_acc


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


# -- built-in datasets ---------------------------------------------------------------------------
def test_it_reproduces_the_digits_card_from_load_digits_data(tmp_path):
    from sklearn.datasets import load_digits

    folder, info, task = _package(tmp_path, {"builtin": "digits"}, None)
    d = load_digits()
    np.savez(folder / "digits.npz", X=d.data, y=d.target)  # as the card says to make it
    card = (folder / "MODEL_CARD.md").read_text()
    assert 'np.savez("digits.npz", X=d.data, y=d.target)' in card
    assert "load_digits().data" in card and "0-16" in card
    assert info.test_total == len(task.y_test) and info.test_acc > 0.5
    _check_reproduces(folder, "digits.npz", info)
    split = json.loads((folder / "split.json").read_text())
    assert split["kind"] == "rows" and split["n_rows"] == len(d.data)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(len(d.data)))


def test_it_names_the_classes_of_breast_cancer(tmp_path):
    from sklearn.datasets import load_breast_cancer

    folder, info, _ = _package(tmp_path, {"builtin": "breast_cancer"}, None)
    d = load_breast_cancer()
    np.savez(folder / "breast_cancer.npz", X=d.data, y=d.target)
    assert json.loads((folder / "labels.json").read_text()) == ["malignant", "benign"]
    _check_reproduces(folder, "breast_cancer.npz", info)
    _run(folder, "predict.py", "breast_cancer.npz")
    rows = (folder / "predictions.csv").read_text().splitlines()
    assert len(rows) == len(d.data) + 1
    assert {r.split(",")[1] for r in rows[1:]} <= {"malignant", "benign"}


# -- a user's CSV with string labels and feature names with spaces ------------------------------
@pytest.fixture
def flowers_csv(tmp_path):
    from sklearn.datasets import load_iris

    d = load_iris()
    path = tmp_path / "my flowers.csv"
    header = ["sepal length", "sepal width", "petal length", "petal width", "colour", "species"]
    colours = ["red", "blue", "white"]
    lines = [",".join(header)]
    for i, (row, target) in enumerate(zip(d.data, d.target)):
        lines.append(",".join([*(f"{v:g}" for v in row), colours[i % 3], str(d.target_names[target])]))
        if i == 10:
            lines.append("")  # blank lines are skipped by the loader and by predict.py alike
    path.write_text("\n".join(lines) + "\n")
    return path


def test_it_reproduces_a_csv_card_with_text_labels_and_a_text_feature(tmp_path, flowers_csv):
    spec = {"csv": str(flowers_csv), "target": "species"}
    folder, info, task = _package(tmp_path, spec, flowers_csv, source=flowers_csv)
    raw_input = json.loads((folder / "architecture.json").read_text())["raw_input"]
    assert [f["name"] for f in raw_input["features"]] == ["sepal length", "sepal width", "petal length",
                                                          "petal width", "colour"]  # fmt: skip
    assert raw_input["features"][4] == {"name": "colour", "kind": "categorical", "categories": ["blue", "red", "white"]}
    assert json.loads((folder / "labels.json").read_text()) == ["setosa", "versicolor", "virginica"]
    assert "one-hot encoded by `predict.py`" in (folder / "MODEL_CARD.md").read_text()
    _check_reproduces(folder, flowers_csv.name, info)
    # Without the label column: predictions only, no accuracy.
    unlabelled = folder / "new.csv"
    unlabelled.write_text("\n".join(",".join(r.split(",")[:5]) for r in flowers_csv.read_text().splitlines()))
    proc = _run(folder, "predict.py", "new.csv", "--out", "new.csv.out")
    assert proc.returncode == 0 and "accuracy" not in proc.stdout
    assert (folder / "new.csv.out").read_text().splitlines()[0] == "row,predicted,probability"


def test_it_reproduces_a_csv_card_with_numeric_labels(tmp_path):
    from sklearn.datasets import load_wine

    d = load_wine()
    path = tmp_path / "wine.csv"
    names = [n.replace("_", " ") for n in d.feature_names]
    rows = [";".join([*(f"{v:g}" for v in r), f"{t + 1}.0"]) for r, t in zip(d.data, d.target)]
    path.write_text(";".join([*names, "cultivar"]) + "\n" + "\n".join(rows) + "\n")
    folder, info, _ = _package(tmp_path, {"csv": str(path), "target": "cultivar"}, path, source=path)
    assert json.loads((folder / "labels.json").read_text()) == ["1", "2", "3"]
    _check_reproduces(folder, "wine.csv", info)
    proc = _run(folder, "-c", "import search_engine")
    assert proc.returncode != 0 and "No module named 'search_engine'" in proc.stderr


def test_it_refuses_a_csv_with_other_columns(tmp_path, flowers_csv):
    folder, _, _ = _package(tmp_path, {"csv": str(flowers_csv), "target": "species"}, flowers_csv)
    text = flowers_csv.read_text()
    (folder / "missing.csv").write_text(text.replace("petal width", "petal_width", 1))
    _one_line_error(_run(folder, "predict.py", "missing.csv"), "missing column 'petal width'")
    (folder / "extra.csv").write_text("\n".join(line + ",1" if line else line for line in text.splitlines()))
    (folder / "extra.csv").write_text((folder / "extra.csv").read_text().replace("species,1", "species,id", 1))
    _one_line_error(_run(folder, "predict.py", "extra.csv"), "unexpected column 'id'")
    (folder / "empty.csv").write_text(text.splitlines()[0] + "\n")
    _one_line_error(_run(folder, "predict.py", "empty.csv"), "empty input")


# -- NPZ images and an image ZIP -----------------------------------------------------------------
def _blobs(n_per_class: int = 20, side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose class is where the bright square sits."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 60, size=(3 * n_per_class, side, side, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), n_per_class)
    for i, cls in enumerate(y):
        X[i, :, cls * 2 : cls * 2 + 3] = 220
    return X, y


def test_it_reproduces_an_npz_image_card_and_refuses_a_wrong_size(tmp_path):
    X, y = _blobs()
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=np.array(["left", "middle", "right"])[y])
    folder, info, _ = _package(tmp_path, {"npz": str(path)}, path, source=path)
    raw_input = json.loads((folder / "architecture.json").read_text())["raw_input"]
    assert raw_input["dtype"] == "uint8" and raw_input["shape"] == [8, 8, 3] and raw_input["layout"] == "NHWC"
    assert _check_reproduces(folder, "blobs.npz", info) == f"{info.test_acc:.4f}"
    np.savez(folder / "small.npz", X=X[:, :6, :6])
    _one_line_error(_run(folder, "predict.py", "small.npz"), "wrong image size", "(6, 6, 3)", "(8, 8, 3)")
    np.savez(folder / "none.npz", X=X[:0])
    _one_line_error(_run(folder, "predict.py", "none.npz"), "empty input")


def test_it_reproduces_an_image_zip_card_from_the_zip_and_from_a_folder(tmp_path):
    from PIL import Image

    X, y = _blobs(side=10)
    names = ["left", "middle", "right"]
    path = tmp_path / "blobs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, (img, cls) in enumerate(zip(X, y)):
            buffer = io.BytesIO()
            Image.fromarray(img).save(buffer, format="PNG")
            zf.writestr(f"blobs/{names[cls]}/{i:03d}.png", buffer.getvalue())
    folder, info, _ = _package(tmp_path, {"zip": str(path), "image_size": 8}, path, source=path)
    split = json.loads((folder / "split.json").read_text())
    assert split["kind"] == "files" and split["test"][0].startswith("blobs/")
    acc = _check_reproduces(folder, "blobs.zip", info)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder / "images")
    proc = _run(folder, "predict.py", "images", "--rows", "test")
    assert proc.returncode == 0, proc.stderr
    assert f"accuracy {acc} " in proc.stdout
    proc = _run(folder, "predict.py", "images/blobs/left/000.png")
    assert proc.returncode == 0 and "1 predictions" in proc.stdout
    (folder / "nothing").mkdir()
    _one_line_error(_run(folder, "predict.py", "nothing"), "empty input")
