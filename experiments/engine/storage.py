"""Files the workers keep in Django's storage: dataset copies, trained weights, one-shot checkpoints.

With FileSystemStorage the files live in the storage folder itself (shared by every worker
machine that shares MEDIA_ROOT). With remote storage (S3 and the like) a worker keeps a local copy
under DATA_DIR/cache and moves files to and from storage, so a job started on one machine can
continue on another.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from safetensors.torch import load, save

from search_engine.loop import build_model, trial_seed


def _storage_path(name: str) -> Path | None:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


# Datasets -------------------------------------------------------------------------------------
def dataset_file_exists(dataset) -> bool:
    """The uploaded file is in storage (asked every time: a copy cached by one worker must not
    make it look present there while it is gone everywhere else)."""
    return bool(dataset.file.name) and default_storage.exists(dataset.file.name)


def local_dataset_path(dataset) -> Path:
    """A path on this machine for an uploaded dataset file.

    With FileSystemStorage that is the stored file itself; with remote storage the file is
    downloaded once into the data directory's cache.
    """
    name = dataset.file.name
    local = _storage_path(name)
    if local is not None:
        return local
    cache_dir = Path(settings.DATA_DIR) / "cache" / "datasets"
    cache_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix
    # The original file name matters to the loader (it names the task), so it is kept.
    target = cache_dir / f"{dataset.pk}-{dataset.checksum or 'nochecksum'}" / Path(name).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_to(name, target, suffix=suffix)
    return target


def _copy_to(name: str, target: Path, suffix: str = "") -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=suffix, delete=False) as tmp:
        with default_storage.open(name, "rb") as src:
            shutil.copyfileobj(src, tmp, length=1 << 20)
    # Rename is atomic: a concurrent reader sees either no file or the whole file.
    Path(tmp.name).replace(target)


# Trained weights --------------------------------------------------------------------------------
# A completed trial that is the best so far keeps its trained weights in storage, so the final
# export needs no retraining (see jobs/finalize.py). Only the weights are stored (safetensors:
# never unpickled); the network is rebuilt from the architecture.
def weights_path(trial) -> str:
    return f"trial-weights/{trial.experiment_id}/{trial.pk}.safetensors"


def save_weights(trial, model: torch.nn.Module) -> str:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"trial": str(trial.pk), "arch": json.dumps(trial.arch, sort_keys=True)})
    path = weights_path(trial)
    if default_storage.exists(path):
        default_storage.delete(path)
    default_storage.save(path, ContentFile(blob, name=Path(path).name))
    return path


def load_trained_model(experiment, trial, search) -> torch.nn.Module | None:
    """The trial's trained network, rebuilt from its architecture and its stored weights; None
    when no weights were stored for it."""
    path = weights_path(trial)
    if not default_storage.exists(path):
        return None
    with default_storage.open(path, "rb") as fh:
        state = load(fh.read())
    arch = search.space.validate(trial.arch)
    model = build_model(search.space, arch, search.task, trial_seed(experiment.seed, search.space, arch, trial.budget or {}))
    model.load_state_dict(state)
    return model.eval()


def delete_weights(experiment_id: int) -> None:
    folder = f"trial-weights/{experiment_id}"
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")


# One-shot checkpoints ------------------------------------------------------------------------------
# A one-shot job writes one file, checkpoint.pt, after every epoch. With remote storage the job
# writes it to a local folder, which is copied to storage after every epoch and fetched from there
# before a resume, so a job killed on one machine resumes on another.
def checkpoint_name(experiment_id: int) -> str:
    return f"oneshot/{experiment_id}/checkpoint.pt"


def checkpoint_dir(experiment_id: int) -> Path:
    """The local folder the job checkpoints into (created)."""
    local = _storage_path(checkpoint_name(experiment_id))
    folder = local.parent if local is not None else Path(settings.DATA_DIR) / "cache" / "oneshot" / str(experiment_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch_checkpoint(experiment_id: int) -> None:
    """Remote storage only: replace the local checkpoint with the stored one (the newest anywhere)."""
    name = checkpoint_name(experiment_id)
    if _storage_path(name) is not None or not default_storage.exists(name):
        return
    _copy_to(name, checkpoint_dir(experiment_id) / "checkpoint.pt")


def push_checkpoint(experiment_id: int) -> None:
    """Remote storage only: copy the local checkpoint (just written) to storage."""
    name = checkpoint_name(experiment_id)
    if _storage_path(name) is not None:
        return
    local = checkpoint_dir(experiment_id) / "checkpoint.pt"
    if not local.exists():
        return
    if default_storage.exists(name):
        default_storage.delete(name)
    with local.open("rb") as fh:
        default_storage.save(name, fh)


def delete_checkpoint(experiment_id: int) -> None:
    name = checkpoint_name(experiment_id)
    if default_storage.exists(name):
        default_storage.delete(name)
    local = checkpoint_dir(experiment_id)
    shutil.rmtree(local, ignore_errors=True)
