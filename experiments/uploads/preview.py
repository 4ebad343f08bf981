"""What a person checks before saving an upload: the file loaded exactly as the worker will load
it, its shape and classes, sample images, and for a CSV its columns with the target picked.

The engine's loaders do every check on the file's content (CSV shape, no pickles in NPZ, ZIP
traversal, symlinks and bombs); this module turns their DatasetError into an UploadError."""

from __future__ import annotations

import base64
import io

from django.conf import settings
from PIL import Image

from search_engine.data import DatasetError, describe_task, load_dataset, preview_csv, sample_images

from ..choices import DatasetSource
from .errors import UPLOAD_OPTIONS, UploadError, rejection
from .staging import StagedUpload

PREVIEW_ROWS = 8
PREVIEW_FEATURES = 60
SAMPLES_PER_CLASS = 4
SAMPLE_CLASSES = 24
THUMBNAIL_PX = 96
DEFAULT_IMAGE_SIZE = 32


def clean_options(source: str, options) -> dict:
    """The loader options a person gave, checked for names only (the loader checks values)."""
    if options in (None, ""):
        options = {}
    if not isinstance(options, dict):
        raise UploadError("options", 'expected an object of loader options, e.g. {"target": "species"}')
    allowed = UPLOAD_OPTIONS[source]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UploadError(
            "options", f"{unknown[0]}: not an option of {source} uploads (options: {', '.join(allowed)})"
        )
    options = {k: v for k, v in options.items() if v not in (None, "", [])}
    if source == DatasetSource.ZIP:
        options.setdefault("image_size", DEFAULT_IMAGE_SIZE)
    return options


def server_limits(source: str) -> dict:
    """Loader limits that are the server's, never the person's. An NPZ may declare no more than an
    upload may hold: a compressed archive must not unpack into more memory than an uncompressed one
    could bring (the loader also refuses entries compressed more than 200:1)."""
    if source == DatasetSource.NPZ:
        return {"max_bytes": settings.UPLOAD_MAX_BYTES}
    return {}


def load_staged(staged: StagedUpload, options: dict):
    """The Task, loaded exactly as engine.build will load the saved file. Raises DatasetError."""
    if staged.source == DatasetSource.CSV and "target" not in options:
        # Read the table first: a broken file is the thing to fix, whichever column is the label.
        with staged.open() as fh:
            table = preview_csv(fh, max_rows=0)
        raise DatasetError(
            staged.file, "target",
            f"required: name the label column (columns: {', '.join(table['columns'])}; "
            f"suggested: '{table['suggested_target']}')",
        )  # fmt: skip
    with staged.open() as fh:
        return load_dataset({staged.source: fh, **options, **server_limits(staged.source)})


def summarize(task) -> dict:
    info = describe_task(task)
    counts = info["class_counts"]
    summary = {
        "kind": info["kind"],
        "input_shape": list(info["input_shape"]),
        "num_classes": info["num_classes"],
        "num_rows": sum(info["sizes"].values()),
        "sizes": info["sizes"],
        "classes": [{"name": c["name"], "count": c["count"]} for c in info["classes"]],
        # How many times the most common class outnumbers the rarest: 1.0 is perfectly balanced.
        "imbalance": round(max(counts) / max(min(counts), 1), 2) if counts else None,
    }
    if info["kind"] == "tabular":
        features = info.get("features", [])
        summary["features"] = features[:PREVIEW_FEATURES]
        summary["num_features"] = len(features)
    return summary


def thumbnails(task, per_class: int = SAMPLES_PER_CLASS, max_classes: int = SAMPLE_CLASSES) -> list[dict]:
    """[{"class", "images": [PNG data URIs]}] for the first classes of an image task."""
    out = []
    for class_name, images in list(sample_images(task, per_class=per_class).items())[:max_classes]:
        uris = []
        for array in images:
            image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
        out.append({"class": class_name, "images": uris})
    return out


def _empty_preview(staged: StagedUpload, options: dict) -> dict:
    return {
        "upload_token": staged.token,
        "expires_at": staged.expires_at.isoformat(),
        "file": staged.file,
        "source": staged.source,
        "size_bytes": staged.size,
        "sha256": staged.sha256,
        "options": options,
        "csv": None,
        "dataset": None,
        "samples": [],
        "problem": None,
    }


def build_preview(staged: StagedUpload, options) -> dict:
    """What the person checks before saving: the file, the shape and classes as the loader sees
    them, sample images, and for a CSV its columns with the target chooser's default.

    For a CSV a target that does not work (wrong column, gaps in the labels) is reported as
    `problem`, not refused: picking another column fixes it. Anything wrong with the file itself
    is an UploadError, and a file uploaded with this request is then deleted."""
    try:
        options = clean_options(staged.source, options)
        preview = _empty_preview(staged, options)
        if staged.source == DatasetSource.CSV:
            with staged.open() as fh:
                preview["csv"] = preview_csv(fh, max_rows=PREVIEW_ROWS)
            options.setdefault("target", preview["csv"]["suggested_target"])
        try:
            task = load_staged(staged, options)
        except DatasetError as exc:
            # Too many rows is the file's fault whichever target is picked.
            if staged.source != DatasetSource.CSV or exc.field == "rows":
                raise
            preview["problem"] = rejection(exc, staged.file).error
            return preview
    except (DatasetError, UploadError) as exc:
        error = rejection(exc, staged.file) if isinstance(exc, DatasetError) else exc
        # An option a re-preview got wrong leaves the file as good as it was; anything else goes.
        if staged.fresh or error.field != "options":
            staged.discard()
        raise error from None
    preview["dataset"] = summarize(task)
    if task.kind == "image":
        preview["samples"] = thumbnails(task)
    return preview
