"""Saved datasets: a staged upload becomes a Dataset row with its file in place, a dataset is
deleted with its file, and a saved dataset's samples are shown on its page."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from django.core.cache import cache
from django.db import transaction

from search_engine.data import DatasetError, preview_csv

from ..choices import DatasetSource
from ..engine import build
from ..models import Dataset
from .preview import PREVIEW_ROWS, thumbnails
from .staging import StagedUpload, staging_seconds


def save_dataset(staged: StagedUpload, *, project, name: str, options: dict, task, user) -> Dataset:
    """Copy the staged file to its final storage path (Dataset.file's upload_to) and create the row
    with the checksum, size and the shape the loader reported; the staged copy is then removed."""
    dataset = Dataset(
        project=project, name=name, source=staged.source, options=options, checksum=staged.sha256,
        size_bytes=staged.size, created_by=user,
    )  # fmt: skip
    dataset.describe_from_task(task)
    with staged.open() as fh:
        dataset.file.save(staged.file, fh, save=False)
    try:
        dataset.save()
    except BaseException:
        dataset.file.delete(save=False)
        raise
    staged.discard()
    return dataset


def delete_dataset(dataset, user) -> None:
    """Delete the row (logged, see Dataset.delete_by) and, once that commits, its uploaded file.
    Raises ProtectedError while experiments use it: the foreign key decides, so an experiment
    created meanwhile still wins."""
    name, storage = dataset.file.name, dataset.file.storage
    with transaction.atomic():
        dataset.delete_by(user)
        if name:
            transaction.on_commit(lambda: storage.delete(name))


def default_name(file_name: str) -> str:
    stem = PurePosixPath(file_name).stem
    return re.sub(r"[_\s]+", " ", stem).strip()[:100] or file_name[:100]


def dataset_samples(dataset) -> dict:
    """Sample images (image data) or the first rows (CSV) of a saved dataset, for its page."""
    key = f"dataset-samples:{dataset.pk}:{dataset.checksum}:{dataset.builtin_name}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    out: dict = {"kind": dataset.kind, "samples": [], "csv": None, "problem": None}
    try:
        task = build.load_task(dataset, 0)
        if task.kind == "image":
            out["samples"] = thumbnails(task)
        elif dataset.source == DatasetSource.CSV:
            with dataset.file.open("rb") as fh:
                out["csv"] = preview_csv(fh, max_rows=PREVIEW_ROWS)
    except (DatasetError, OSError) as exc:
        out["problem"] = str(exc)
        return out  # not cached: the storage may be back on the next look
    cache.set(key, out, timeout=staging_seconds())
    return out
