"""Run the model in this folder on your own data, as it came:

    python predict.py INPUT [--out predictions.csv] [--rows train|val|test]

INPUT is data like the model was trained on: a CSV with the training file's columns (the label
column may be there and is then scored), an NPZ with an array X (and optionally y), an image file,
a folder of images (class folders give labels) or a ZIP of them. One row per input goes to --out
with the predicted label and its probability; the accuracy is printed when labels are present.
--rows picks the training, validation or test rows (split.json) of the original file, so the test
accuracy in MODEL_CARD.md can be checked. Needs numpy and onnxruntime, and Pillow for images.

The engine that trained the model uses this file too (to read images and to measure the card's
numbers), so what it prints and what the card says come from the same code.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BATCH = 4096  # rows per onnxruntime call; the card is measured with the same batches
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
MISSING = frozenset({"", "na", "n/a", "nan", "null", "#n/a", "?"})
DELIMITERS = (",", ";", "\t", "|")


class InputError(Exception):
    """Input the model cannot take; the message names the file, the column or array, and why."""


@dataclass
class Batch:
    X: np.ndarray  # what model.onnx takes
    keys: list[str]  # row numbers (tables, arrays) or file names (images)
    truth: list[str] | None = None  # label strings, when the input has labels


@dataclass
class Package:
    spec: dict  # architecture.json's raw_input
    labels: list[str]
    split: dict
    model: Path

    @classmethod
    def load(cls, folder: str | Path = HERE) -> Package:
        folder = Path(folder)
        description = json.loads((folder / "architecture.json").read_text(encoding="utf-8"))
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
        return cls(description["raw_input"], labels, split, folder / "model.onnx")


# -- images ----------------------------------------------------------------------------------------
def fit_image(img, size: int):
    """(the image as L or RGB, resized to size x size; whether it was grayscale), exactly as NAS
    Studio's loader prepares every training image."""
    from PIL import Image, ImageOps

    # JPEG can decode at 1/2..1/8 scale directly, much cheaper for photos shrunk to a thumbnail.
    img.draft(img.mode, (size, size))
    gray = img.mode in GRAY_MODES
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        img = Image.fromarray((np.asarray(img, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    img = img.convert("L" if gray else "RGB")
    return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), gray


def image_array(data: bytes, name: str, spec: dict) -> np.ndarray:
    """One image file's bytes -> uint8 (H, W, C) at the training size."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading images needs Pillow (pip install pillow)") from None
    size, channels = spec["image_size"], spec["channels"]
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            fitted, _ = fit_image(img, size)
    except Exception as exc:  # decoders fail on bad input with many exception types
        raise InputError(f"{name}: not a readable PNG or JPEG image ({exc})") from None
    return np.asarray(fitted.convert("L" if channels == 1 else "RGB"), dtype=np.uint8).reshape(size, size, channels)


def _image_files(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a file, folder or ZIP, sorted; names keep their class folder."""
    def wanted(parts):
        return parts[-1].lower().endswith(IMAGE_SUFFIXES) and not any(
            p.startswith(".") or p == "__MACOSX" for p in parts)

    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and wanted(p.relative_to(path).parts)]
        return [(p.relative_to(path).as_posix(), p.read_bytes()) for p in sorted(files)]
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir() and wanted(i.filename.split("/"))]
            return [(n, zf.read(n)) for n in sorted(names)]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [(path.name, path.read_bytes())]
    raise InputError(f"{path.name}: expected an image (PNG/JPEG), a folder of images or a ZIP of them")


def read_images(path: Path, spec: dict, labels: list[str]) -> Batch:
    files = _image_files(path)
    if not files:
        raise InputError(f"{path.name}: empty input, no PNG or JPEG images found")
    keys = ["/".join(name.split("/")[-2:]) for name, _ in files]  # <class>/<file>, as in split.json
    X = np.stack([image_array(data, name, spec) for name, data in files])
    folders = [k.split("/")[0] if "/" in k else None for k in keys]
    truth = folders if all(f in labels for f in folders) else None
    return Batch(X, keys, truth)


# -- tables ----------------------------------------------------------------------------------------
def _csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, line of each row), read as NAS Studio's loader reads a CSV."""
    text = path.read_bytes().decode("utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = max((len(next(csv.reader([first], delimiter=d))), -i, d) for i, d in enumerate(DELIMITERS))[2]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, rows, lines, line = None, [], [], 1
    for row in reader:
        cells = [c.strip() for c in row]
        if any(cells):
            if header is None:
                header = cells
            elif len(cells) != len(header):
                raise InputError(f"{path.name}: line {line} has {len(cells)} values, the header {len(header)}")
            else:
                rows.append(cells)
                lines.append(line)
        line = reader.line_num + 1
    if header is None or not rows:
        raise InputError(f"{path.name}: empty input, no data rows")
    return header, rows, lines


def _check_columns(name: str, header: list[str], spec: dict) -> None:
    features = [f["name"] for f in spec["features"]]
    missing = [c for c in features if c not in header]
    if missing:
        raise InputError(f"{name}: missing column '{missing[0]}' (the model needs {', '.join(features)})")
    known = {*features, spec["target"], *spec.get("excluded", ())}
    extra = [c for c in header if c not in known]
    if extra:
        raise InputError(f"{name}: unexpected column '{extra[0]}' (the training file had {', '.join(spec['columns'])})")


def _encode(name: str, feature: dict, values: list[str], lines: list[int]) -> np.ndarray:
    column = feature["name"]
    for value, line in zip(values, lines):
        if value.lower() in MISSING:
            raise InputError(f"{name}: column '{column}' has a missing value on line {line}")
    if feature["kind"] == "numeric":
        try:
            return np.asarray([float(v) for v in values], dtype=np.float32)[:, None]
        except ValueError:
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise InputError(f"{name}: column '{column}' line {lines[bad]}: '{values[bad]}' is not a number") from None
    categories = feature["categories"]
    unknown = next((i for i, v in enumerate(values) if v not in categories), None)
    if unknown is not None:
        raise InputError(f"{name}: column '{column}' line {lines[unknown]}: '{values[unknown]}' was not seen in "
                         f"training (known: {', '.join(categories)})")
    onehot = np.zeros((len(values), len(categories)), dtype=np.float32)
    onehot[np.arange(len(values)), [categories.index(v) for v in values]] = 1.0
    return onehot


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def label_text(value) -> str:
    """A label as the loader names its class: integral numbers without '.0', strings as they are."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, str):
        return value
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def read_csv(path: Path, spec: dict) -> Batch:
    header, rows, lines = _csv_rows(path)
    _check_columns(path.name, header, spec)
    blocks = [_encode(path.name, f, [r[header.index(f["name"])] for r in rows], lines) for f in spec["features"]]
    truth = None
    if spec["target"] in header:
        values = [r[header.index(spec["target"])] for r in rows]
        numeric = spec["target_kind"] == "numeric" and all(_is_number(v) for v in values)
        truth = [label_text(float(v)) if numeric else v for v in values]
    return Batch(np.concatenate(blocks, axis=1), [str(i) for i in range(len(rows))], truth)


def read_npz(path: Path, spec: dict, labels: list[str]) -> Batch:
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, damaged, or a single .npy
        raise InputError(f"{path.name}: not a readable NPZ archive ({exc})") from None
    with npz:
        if "X" not in npz.files:
            raise InputError(f"{path.name}: no array X (arrays: {', '.join(npz.files) or 'none'})")
        X, y = npz["X"], (npz["y"] if "y" in npz.files else None)
    shape = tuple(spec["shape"])
    if len(X) == 0:
        raise InputError(f"{path.name}: empty input, X has no rows")
    if X.shape[1:] != shape:
        what = "wrong image size" if len(shape) > 1 else "wrong number of features"
        raise InputError(f"{path.name}: {what}: X has rows of shape {X.shape[1:]}, the model takes {shape}")
    if spec["dtype"] == "uint8" and X.dtype != np.uint8:
        raise InputError(f"{path.name}: X is {X.dtype}; the model takes uint8 images as in training")
    truth = None
    if y is not None:
        if len(y) != len(X):
            raise InputError(f"{path.name}: y has {len(y)} labels for {len(X)} rows of X")
        truth = [labels[int(v)] for v in y] if spec.get("labels") == "index" else [label_text(v) for v in y.tolist()]
    return Batch(X.astype(spec["dtype"]), [str(i) for i in range(len(X))], truth)


def read_input(path: str | Path, package: Package) -> Batch:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path.name}: no such file or folder")
    source = package.spec["source"]
    if source == "csv":
        return read_csv(path, package.spec)
    if source == "zip":
        return read_images(path, package.spec, package.labels)
    return read_npz(path, package.spec, package.labels)


def select_rows(batch: Batch, package: Package, rows: str, name: str) -> Batch:
    """The training, validation or test rows of the original file, as listed in split.json."""
    wanted = package.split[rows]
    if package.split["kind"] == "files":
        index = {key: i for i, key in enumerate(batch.keys)}
        keys = ["/".join(n.split("/")[-2:]) for n in wanted]
        absent = [k for k in keys if k not in index]
        if absent:
            raise InputError(f"{name}: {len(absent)} {rows} images are not in it (first: {absent[0]}); "
                             f"--rows needs the original images")
        picked = [index[k] for k in keys]
    else:
        if len(batch.keys) != package.split["n_rows"]:
            raise InputError(f"{name}: has {len(batch.keys)} rows, the training file had {package.split['n_rows']}; "
                             f"--rows needs the original file")
        picked = list(wanted)
    truth = [batch.truth[i] for i in picked] if batch.truth is not None else None
    return Batch(batch.X[picked], [batch.keys[i] for i in picked], truth)


# -- running ---------------------------------------------------------------------------------------
def probabilities(model: Path, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: X[i : i + BATCH]})[0] for i in range(0, len(X), BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def accuracy_text(correct: int, total: int) -> str:
    """The one format the card and this script print an accuracy in."""
    return f"{correct / total:.4f} ({correct}/{total})"


def count_correct(labels: list[str], probs: np.ndarray, truth: list[str]) -> int:
    return sum(labels[int(i)] == t for i, t in zip(probs.argmax(axis=1), truth))


def write_predictions(out: Path, batch: Batch, labels: list[str], probs: np.ndarray) -> None:
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "predicted", "probability", *(["label"] if batch.truth is not None else [])])
        for i, (key, p) in enumerate(zip(batch.keys, probs)):
            best = int(p.argmax())
            writer.writerow([key, labels[best], f"{p[best]:.6f}", *([batch.truth[i]] if batch.truth is not None else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="CSV, NPZ, image, folder of images or ZIP")
    parser.add_argument("--out", default="predictions.csv", help="where to write the predictions")
    parser.add_argument("--rows", choices=("train", "val", "test"), help="only these rows of the original file")
    args = parser.parse_args(argv)
    try:
        package = Package.load()
        batch = read_input(args.input, package)
        if args.rows:
            batch = select_rows(batch, package, args.rows, Path(args.input).name)
        probs = probabilities(package.model, batch.X)
        write_predictions(Path(args.out), batch, package.labels, probs)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a person gets one line, never a traceback
        print(f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
              file=sys.stderr)
        return 1
    print(f"{len(batch.keys)} predictions written to {args.out}")
    if batch.truth is not None:
        print(f"accuracy {accuracy_text(count_correct(package.labels, probs, batch.truth), len(batch.truth))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
