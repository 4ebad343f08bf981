"""Export a trained network as deployable artifacts, and load them back.

One directory per model:

    model.pt             TorchScript (torch.jit.trace in eval mode), any batch size
    model.onnx           ONNX with a dynamic batch dimension, checked against PyTorch with onnxruntime
    weights.safetensors  the network's state dict (never pickle); rebuilt through the search space
    architecture.json    space, space config, architecture, input/label description, metrics

model.pt and model.onnx take the source data's raw rows (`raw_input` in architecture.json, see
rawinput.py) and return class probabilities: preprocessing + network + softmax in one graph.
weights.safetensors holds the bare network, which takes standardised input and returns logits.

ONNX: torch >= 2.9 exports through torch.export by default (`dynamo=True`, which needs
onnxscript); that path is used first with a dynamic batch `Dim`. A model torch.export cannot
capture falls back to the TorchScript-based exporter (`dynamo=False`). Either way the file is
run with onnxruntime and compared with the PyTorch outputs before the export counts as done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .rawinput import example_raw_batch, raw_input_model, raw_input_spec
from .task import Task
from .types import Architecture

FORMATS = ("torchscript", "onnx", "weights")
FILENAMES = {
    "torchscript": "model.pt",
    "onnx": "model.onnx",
    "weights": "weights.safetensors",
    "architecture": "architecture.json",
}
TOLERANCE = 1e-4
FORMAT_VERSION = 1


class ExportError(RuntimeError):
    """An artifact could not be written, or does not reproduce the PyTorch model's outputs."""


class ModelFileError(ValueError):
    """A model file is missing, unreadable or does not match its architecture.json."""


# -- writing -------------------------------------------------------------------------------


def export_model(
    model: nn.Module,
    arch: Architecture,
    space_name: str,
    space_config: dict[str, Any],
    task: Task,
    out_dir: str | Path,
    formats: tuple[str, ...] = FORMATS,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the requested formats plus architecture.json into `out_dir`; returns format -> path.

    The network is exported from the CPU in eval mode, wrapped in its raw-input preprocessing and a
    softmax for TorchScript and ONNX; its training flag is restored afterwards.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r} (known: {', '.join(FORMATS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu")
    was_training = model.training
    model.eval()
    spec = raw_input_spec(task)
    graph = raw_input_model(model, task).eval()
    # Batch 2, not 1: torch.export specialises a size-1 dimension to a constant.
    example = example_raw_batch(spec, 2)
    paths: dict[str, Path] = {}
    checks: dict[str, Any] = {}
    try:
        if "torchscript" in formats:
            paths["torchscript"] = out / FILENAMES["torchscript"]
            checks["torchscript_max_abs_diff"] = _export_torchscript(graph, example, paths["torchscript"], spec)
        if "onnx" in formats:
            paths["onnx"] = out / FILENAMES["onnx"]
            checks.update(_export_onnx(graph, example, paths["onnx"], task))
        if "weights" in formats:
            from safetensors.torch import save_model

            paths["weights"] = out / FILENAMES["weights"]
            # save_model (not save_file) copes with tied weights by storing each tensor once.
            save_model(model, str(paths["weights"]), metadata={"space": space_name, "format": "pt"})
    finally:
        model.train(was_training)

    description = {
        "format_version": FORMAT_VERSION,
        "space": space_name,
        "space_config": dict(space_config or {}),
        "arch": dict(arch),
        "task": task.name,
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
        "class_names": list(task.class_names),
        "normalize": task.meta.get("normalize"),
        "raw_input": spec,
        "outputs": "probabilities",
        "metrics": dict(metrics or {}),
        "torch_version": torch.__version__,
        "files": {fmt: path.name for fmt, path in paths.items()},
        "checks": checks,
    }
    paths["architecture"] = out / FILENAMES["architecture"]
    paths["architecture"].write_text(json.dumps(_jsonable(description), indent=2, allow_nan=False) + "\n")
    return paths


@contextlib.contextmanager
def _quiet_exporters():
    """Silence deprecation chatter (torch.jit) and the exporter's torchvision notices."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            yield
    finally:
        logger.setLevel(level)


def _max_abs_diff(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, spec: dict) -> float:
    # Tracing handles every built-in space (no data-dependent control flow), where scripting
    # trips over ordinary Python in forward(). torch.jit is deprecated but still the format
    # that libtorch / C++ deployments load.
    with _quiet_exporters(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))
        # Another batch size than the one traced: catches a batch size baked into a reshape.
        check = example_raw_batch(spec, 3)
        diff = _max_abs_diff(torch.jit.load(str(path))(check), model(check))
    if not diff <= TOLERANCE:
        raise ExportError(f"TorchScript output differs from PyTorch by {diff:.3g} (> {TOLERANCE})")
    return diff


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, task: Task) -> dict[str, Any]:
    errors = []
    for exporter in ("dynamo", "torchscript"):
        try:
            with _quiet_exporters():
                if exporter == "dynamo":
                    batch = torch.export.Dim("batch", min=1, max=1 << 20)
                    torch.onnx.export(
                        model, (example,), str(path), dynamo=True, external_data=False,
                        input_names=["input"], output_names=["probabilities"],
                        dynamic_shapes=({0: batch},), verbose=False,
                    )  # fmt: skip
                else:
                    torch.onnx.export(
                        model, (example,), str(path), dynamo=False,
                        input_names=["input"], output_names=["probabilities"],
                        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                    )  # fmt: skip
            _add_onnx_metadata(path, task)
            spec = raw_input_spec(task)
            diff = max(verify_onnx(model, path, example_raw_batch(spec, n)) for n in (1, 3))
        except Exception as exc:  # any exporter failure: try the other one, report both
            errors.append(f"{exporter} exporter: {type(exc).__name__}: {str(exc)[:500]}")
            continue
        if not diff <= TOLERANCE:
            errors.append(f"{exporter} exporter: outputs differ from PyTorch by {diff:.3g} (> {TOLERANCE})")
            continue
        return {"onnx_exporter": exporter, "onnx_max_abs_diff": diff}
    path.unlink(missing_ok=True)
    raise ExportError("ONNX export failed; " + "; ".join(errors))


def _add_onnx_metadata(path: Path, task: Task) -> None:
    """Class names and input normalisation travel inside the .onnx for deployments without the json."""
    import onnx

    proto = onnx.load(str(path))
    entries = {
        "class_names": json.dumps(list(task.class_names)),
        "normalize": json.dumps(_jsonable(task.meta.get("normalize"))),
        "input_shape": json.dumps(list(task.input_shape)),
        "raw_input": json.dumps(_jsonable(raw_input_spec(task))),
    }
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))


def verify_onnx(model: nn.Module, onnx_path: str | Path, example: torch.Tensor) -> float:
    """Max abs difference between onnxruntime's and PyTorch's (eval-mode, CPU) outputs on `example`
    (rows of the graph's input type: `model` is the wrapped graph the file was exported from)."""
    session = _onnx_session(Path(onnx_path), threads=1)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model.to("cpu")(example.to("cpu"))
    finally:
        model.train(was_training)
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return _max_abs_diff(got, expected)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN/inf
    if isinstance(value, Path):
        return str(value)
    return value


# -- reading -------------------------------------------------------------------------------


class OnnxModel:
    """An onnxruntime session with `predict(raw rows) -> probabilities` (NumPy in, NumPy out)."""

    def __init__(self, session, description: dict | None = None):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.input_dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32
        self.description = description or {}

    def predict(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return self.session.run(None, {self.input_name: np.asarray(x, dtype=self.input_dtype)})[0]

    __call__ = predict


def read_description(path_or_dir: str | Path) -> dict:
    """architecture.json of an export directory (or of the directory holding a model file)."""
    path = Path(path_or_dir)
    json_path = path if path.suffix == ".json" else (path if path.is_dir() else path.parent) / FILENAMES["architecture"]
    if not json_path.is_file():
        raise ModelFileError(f"{json_path}: no such file (every export directory has one)")
    try:
        description = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{json_path}: not valid JSON ({exc})") from None
    required = ("space", "space_config", "arch", "input_shape", "num_classes")
    missing = [k for k in required if not isinstance(description, dict) or k not in description]
    if missing:
        raise ModelFileError(f"{json_path}: missing field {missing[0]!r}")
    return description


def load_model(path_or_dir: str | Path, format: str = "weights"):
    """Load an exported model.

    weights      -> the network (nn.Module) rebuilt from architecture.json through its search space,
                    eval mode: standardised input, logits out
    torchscript  -> torch.jit.ScriptModule, eval mode: raw input, probabilities out
    onnx         -> OnnxModel (onnxruntime) with predict(raw numpy rows) -> probabilities

    `path_or_dir` is the export directory or the file itself. Anything missing, garbled or
    inconsistent raises ModelFileError naming the file.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    path = Path(path_or_dir)
    file = path / FILENAMES[format] if path.is_dir() else path
    if not file.is_file():
        raise ModelFileError(f"{file}: no such file")
    if format == "torchscript":
        try:
            with _quiet_exporters():
                return torch.jit.load(str(file), map_location="cpu").eval()
        except Exception as exc:
            raise ModelFileError(f"{file}: not a readable TorchScript archive ({_first_line(exc)})") from None
    if format == "onnx":
        description = _optional_description(file)
        try:
            return OnnxModel(_onnx_session(file), description)
        except Exception as exc:
            raise ModelFileError(f"{file}: not a readable ONNX model ({_first_line(exc)})") from None
    return _load_weights(file)


TEST_BATCH = 512


@torch.no_grad()
def exported_test_accuracy(folder: str | Path, task: Task, format: str = "torchscript") -> float | None:
    """Test accuracy of the model as loaded back from its exported file (not the one in memory),
    so the figure a package reports is the one its file gives; None when the task has no test rows.
    TorchScript and ONNX get the raw test rows, the weights' network the standardised ones.
    A missing or unreadable file raises ModelFileError as `load_model` does."""
    n = len(task.y_test)
    if not n:
        return None
    model = load_model(folder, format=format)
    X = task.X_test if format == "weights" or task.X_test_raw is None else torch.from_numpy(task.X_test_raw)
    correct = 0
    for start in range(0, n, TEST_BATCH):
        logits = torch.as_tensor(model(X[start : start + TEST_BATCH]))
        correct += int((logits.argmax(dim=1) == task.y_test[start : start + TEST_BATCH]).sum())
    return correct / n


def _load_weights(file: Path) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_safetensors

    from .registry import ConfigError, create_space

    description = read_description(file)
    try:
        space = create_space(description["space"], **description["space_config"])
        model = space.build(description["arch"], _shape_only_task(description))
    except ConfigError as exc:
        raise ModelFileError(f"{file}: architecture.json does not describe a buildable network ({exc})") from None
    try:
        # strict: a missing or extra tensor means the json and the weights do not belong together.
        load_safetensors(model, str(file), strict=True)
    except (SafetensorError, RuntimeError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{file}: weights do not load into the described network ({_first_line(exc)})") from None
    return model.eval()


def _shape_only_task(description: dict) -> Task:
    """A Task with no samples: network builders only read the shapes and class count."""
    input_shape = tuple(int(d) for d in description["input_shape"])
    num_classes = int(description["num_classes"])
    empty_y = torch.zeros(0, dtype=torch.int64)
    empty_x = torch.zeros((0, *input_shape), dtype=torch.float32)
    return Task(
        name=description.get("task", "exported"),
        X_train=empty_x, y_train=empty_y, X_val=empty_x, y_val=empty_y, X_test=empty_x, y_test=empty_y,
        input_shape=input_shape,
        num_classes=num_classes,
        class_names=list(description.get("class_names") or [str(i) for i in range(num_classes)]),
        meta={"normalize": description.get("normalize")},
    )  # fmt: skip


def _optional_description(file: Path) -> dict | None:
    try:
        return read_description(file)
    except ModelFileError:
        return None  # an .onnx file is self-contained; the json only adds names


def _onnx_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
