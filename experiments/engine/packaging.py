"""The downloadable model package: the engine's package (search_engine.package.write_package), zipped.

The engine writes every file, the model card included (its template is the engine's
`search_engine/package/model_card.md`); this module only adds what the web knows to the card:
experiment, project, dataset source and checksum, search configuration, constraint limits, seeds.
The card's test accuracy is the engine's: model.onnx on the raw test rows of the dataset's own file,
measured with the package's predict.py, so a user gets the same figure from the ZIP alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

import search_engine
from search_engine.loop import trial_seed
from search_engine.package import CardContext, library_versions, write_package

from ..choices import DatasetSource
from .records import jsonable
from .storage import local_dataset_path


@dataclass
class ModelPackage:
    zip_bytes: bytes
    sha256: str
    files: list[str]
    test_acc: float | None


def export_package(experiment, trial, model: torch.nn.Module, search, *, retrained: bool,
                   title: str | None = None, provenance: str | None = None,
                   extra_results: tuple[str, ...] = ()) -> ModelPackage:
    """The downloadable ZIP of a trained model (see search_engine.package for its files). `title`,
    `provenance` and `extra_results` adapt the card to packages other than the search's best model
    (jobs/packages.py: any completed trial, a retrain on train+val)."""
    card = card_context(experiment, trial, search, retrained=retrained, title=title, provenance=provenance,
                        extra_results=extra_results)  # fmt: skip
    dataset = experiment.dataset
    source = None if dataset.source == DatasetSource.BUILTIN else local_dataset_path(dataset)
    with tempfile.TemporaryDirectory(prefix="nas-export-") as tmp:
        folder = Path(tmp) / "model"
        info = write_package(folder, model=model, arch=search.space.validate(trial.arch), space=search.space,
                             task=search.task, metrics=jsonable(trial.metrics or {}), card=card, source=source)  # fmt: skip
        blob, files = _zip(folder)
    return ModelPackage(blob, hashlib.sha256(blob).hexdigest(), files, info.test_acc)


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


# The card's web context ------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def card_context(experiment, trial, search, *, retrained: bool, title: str | None = None,
                 provenance: str | None = None, extra_results: tuple[str, ...] = ()) -> CardContext:
    metrics = trial.metrics or {}
    arch = search.space.validate(trial.arch)
    return CardContext(
        title=f"{experiment.name}: {title or f'best model (trial #{trial.number})'}",
        intro=f'Exported by NAS Studio from experiment {experiment.pk} in project "{experiment.project.name}".',
        source=f"{experiment.dataset.name} ({_dataset_source(experiment.dataset)})",
        search=_search_lines(experiment, trial, search, arch),
        constraints=dict(experiment.constraints or {}),
        results=[
            f"- Validation accuracy (the search's objective, trial #{trial.number}): {_fmt(trial.objective)}",
            f"- Test loss during the search: {_fmt(metrics.get('test_loss'))}",
            *extra_results,
        ],
        weights_note=provenance or (
            "Weights were retrained with the trial's seed because the trial's own weights were not stored."
            if retrained else "Weights are the ones the trial trained (restored best-validation epoch)."
        ),
        versions=_versions(),
    )  # fmt: skip


def _search_lines(experiment, trial, search, arch) -> list[str]:
    seed = trial_seed(experiment.seed, search.space, arch, trial.budget or {})
    return [
        f"- Space `{experiment.space}` {json.dumps(experiment.space_config or {})}",
        f"- Strategy `{experiment.strategy}` {json.dumps(experiment.strategy_config or {})}",
        f"- Estimator `{experiment.estimator}` {json.dumps(experiment.estimator_config or {})}",
        f"- Trials: {experiment.counted_trials().count()} evaluated (budget {experiment.budget_trials}), "
        f"device {experiment.device}",
        f"- Search seed {experiment.seed}; trial seed {seed}",
        f"- Architecture: `{json.dumps(trial.arch, sort_keys=True)}`",
    ]


def _dataset_source(dataset) -> str:
    if dataset.source == DatasetSource.BUILTIN:
        return f"built-in `{dataset.builtin_name}`"
    return f"uploaded {dataset.source.upper()} `{Path(dataset.file.name).name}` (sha256 {dataset.checksum or '-'})"


def _versions() -> dict[str, str]:
    versions = library_versions()
    if getattr(search_engine, "__version__", None):
        versions["search_engine"] = search_engine.__version__
    return versions
