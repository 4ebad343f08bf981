"""The downloadable model package: the engine's export files plus a model card, zipped.

The card is the Django template templates/experiments/model_card.md; this module only works out
the values it shows.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from django.template.loader import render_to_string

import search_engine
from search_engine import export as engine_export
from search_engine.loop import trial_seed
from search_engine.rules import CONSTRAINT_LIMITS

from ..choices import DatasetSource
from .records import jsonable

CARD_TEMPLATE = "experiments/model_card.md"
CARD_LIBRARIES = ("onnx", "onnxruntime", "safetensors", "numpy")


@dataclass
class ModelPackage:
    zip_bytes: bytes
    sha256: str
    files: list[str]
    test_acc: float | None


def export_package(experiment, trial, model: torch.nn.Module, search, *, retrained: bool,
                   title: str | None = None, provenance: str | None = None,
                   extra_results: tuple[str, ...] = ()) -> ModelPackage:
    """The downloadable ZIP of a trained model: TorchScript, ONNX, safetensors weights,
    architecture JSON (from search_engine.export) plus a MODEL_CARD.md. `title`, `provenance`
    and `extra_results` adapt the card to packages other than the search's best model
    (jobs/packages.py: any completed trial, a retrain on train+val)."""
    with tempfile.TemporaryDirectory(prefix="nas-export-") as tmp:
        folder = Path(tmp) / "model"
        engine_export.export_model(
            model=model, arch=search.space.validate(trial.arch), space_name=search.space.name,
            space_config=search.space.config, task=search.task, out_dir=folder, metrics=jsonable(trial.metrics),
        )  # fmt: skip
        # Measured on the model as loaded back from the exported files, not the one in memory.
        test_acc = _exported_test_accuracy(folder, search.task, format="torchscript")
        card = model_card(experiment, trial, search, test_acc=test_acc, retrained=retrained, title=title,
                          provenance=provenance, extra_results=extra_results)
        (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        blob, files = _zip(folder)
    return ModelPackage(blob, hashlib.sha256(blob).hexdigest(), files, test_acc)


def _exported_test_accuracy(folder: Path, task, format: str) -> float | None:
    try:
        return engine_export.exported_test_accuracy(folder, task, format=format)
    except engine_export.ModelFileError:  # the card then says the number was not re-measured
        return None


def _zip(folder: Path) -> tuple[bytes, list[str]]:
    buffer = io.BytesIO()
    files = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                arcname = path.relative_to(folder).as_posix()
                zf.write(path, arcname)
                files.append(arcname)
    return buffer.getvalue(), files


# The model card ---------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def model_card(experiment, trial, search, *, test_acc: float | None, retrained: bool,
               title: str | None = None, provenance: str | None = None, extra_results: tuple[str, ...] = ()) -> str:
    dataset = experiment.dataset
    metrics = trial.metrics or {}
    info = search.task.describe()
    context = {
        "experiment": experiment,
        "trial": trial,
        "dataset": dataset,
        "info": info,
        "title": title or f"best model (trial #{trial.number})",
        "source": _dataset_source(dataset),
        "input_shape": tuple(info["input_shape"]),
        "split_seed": search.task.meta.get("split_seed", experiment.seed),
        "class_names": ", ".join(map(str, info["class_names"])),
        "space_config": json.dumps(experiment.space_config or {}),
        "strategy_config": json.dumps(experiment.strategy_config or {}),
        "estimator_config": json.dumps(experiment.estimator_config or {}),
        "counted_trials": experiment.counted_trials().count(),
        "trial_seed": trial_seed(experiment.seed, search.space, search.space.validate(trial.arch), trial.budget or {}),
        "arch": json.dumps(trial.arch, sort_keys=True),
        "objective": _fmt(trial.objective),
        "search_test_acc": _fmt(metrics.get("test_acc")),
        "search_test_loss": _fmt(metrics.get("test_loss")),
        "test_acc": _fmt(test_acc),
        "extra_results": extra_results,
        "weights_note": provenance or (
            "Weights were retrained with the trial's seed because the trial's own weights were not stored."
            if retrained else "Weights are the ones the trial trained (restored best-validation epoch)."
        ),
        "constraint_rows": _constraint_rows(experiment.constraints or {}, metrics),
        "shape": ", ".join(str(d) for d in info["input_shape"]),
        "normalize_line": _normalize_line(search.task.meta.get("normalize") or {}),
        "versions": list(_library_versions().items()),
    }
    return render_to_string(CARD_TEMPLATE, context)


def _dataset_source(dataset) -> str:
    if dataset.source == DatasetSource.BUILTIN:
        return f"built-in `{dataset.builtin_name}`"
    return f"uploaded {dataset.source.upper()} `{Path(dataset.file.name).name}` (sha256 {dataset.checksum or '-'})"


def _constraint_rows(limits: dict, metrics: dict) -> list[dict]:
    rows = []
    for name, limit_key in CONSTRAINT_LIMITS.items():
        value, limit = metrics.get(name), limits.get(limit_key)
        within = "-" if limit is None or value is None else ("yes" if value <= limit else "NO")
        rows.append({"name": name, "value": _fmt(value), "limit": _fmt(limit), "within": within})
    return rows


def _normalize_line(normalize: dict) -> str:
    if isinstance(normalize.get("mean"), (int, float)):
        return f"x = (x - {normalize['mean']:.6g}) / {normalize['std']:.6g}"
    if normalize:
        return "x = (x - mean) / std, per feature, with `normalize` from `architecture.json`"
    return "inputs are used as they are (no normalisation)"


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if getattr(search_engine, "__version__", None):
        versions["search_engine"] = search_engine.__version__
    for module in CARD_LIBRARIES:
        try:
            versions[module] = importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001 - the card says "-" for a library this machine lacks
            versions[module] = "-"
    return versions
