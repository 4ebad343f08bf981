"""Dataset uploads: a size limit enforced while the body arrives, a staging area in storage, and
the preview a person checks before saving.

    POST file ──> stage_upload ──> build_preview (+ signed upload token) ──> save_dataset ──> Dataset
                  uploads/staging/<id>/<name>                                  datasets/<project>/...

Everything goes through Django's default storage, so the web server that takes the upload and the
worker that later trains on it need not be the same machine. The engine's loaders do every check
on the file's content (CSV shape, no pickles in NPZ, ZIP traversal, symlinks and bombs); this module
decides where bytes live and turns the loaders' DatasetError(file, field, reason) into a response.

Nothing of a rejected upload is kept: a refused preview or save deletes its staged file, the size
limit stops the upload before it reaches storage, and staged files nobody saved expire after
UPLOAD_STAGING_SECONDS (removed on the next upload).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler
from django.db import transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException

from search_engine.data import DatasetError, describe_task, load_dataset, preview_csv, sample_images

from .choices import DatasetSource

STAGING_DIR = "uploads/staging"
TOKEN_SALT = "experiments.uploads.staged"
# A multipart body is the file plus boundaries and a few small fields: a request declaring more
# than this over the file limit can not hold an acceptable file and is refused before parsing.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
PREVIEW_ROWS = 8
PREVIEW_FEATURES = 60
SAMPLES_PER_CLASS = 4
SAMPLE_CLASSES = 24
THUMBNAIL_PX = 96
DEFAULT_IMAGE_SIZE = 32
MAX_NAME_CHARS = 120

UPLOAD_SOURCES = (DatasetSource.CSV, DatasetSource.NPZ, DatasetSource.ZIP)
SUFFIX_SOURCES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npz": "npz", ".zip": "zip"}
# Loader options a person may set per kind. Limits (max_bytes, max_entries, ...) stay the
# server's; the seed is the experiment's (engine_bridge passes it when it loads the file).
UPLOAD_OPTIONS = {
    "csv": ("target", "exclude", "delimiter", "val_fraction", "test_fraction", "max_categories"),
    "npz": ("channels_last", "val_fraction", "test_fraction"),
    "zip": ("image_size", "grayscale", "val_fraction", "test_fraction"),
}
OPTION_NAMES = frozenset(name for names in UPLOAD_OPTIONS.values() for name in names) | {"seed"}


def staging_seconds() -> int:
    return int(getattr(settings, "UPLOAD_STAGING_SECONDS", 3600))


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# Errors ---------------------------------------------------------------------------------------------
class UploadError(Exception):
    """A refused upload. `field` is the request field to blame (file, options, upload_token, source),
    `message` names the file, the field inside it and the reason; `error` is the same, structured."""

    def __init__(self, field: str, message: str, error: dict | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.error = error

    def as_dict(self) -> dict:
        body: dict = {self.field: [self.message]}
        if self.error:
            body["error"] = self.error
        return body


def rejection(exc: DatasetError, file: str) -> UploadError:
    """A loader's DatasetError as an UploadError: options the person chose (target, image_size,
    fractions) are blamed on `options`, everything inside the file on `file`."""
    file = exc.file or file
    field = "options" if exc.file is None or exc.field in OPTION_NAMES else "file"
    error = {"file": file, "field": exc.field, "reason": exc.reason}
    return UploadError(field, f"{file}: {exc.field}: {exc.reason}", error)


class UploadTooLarge(APIException):
    """Raised from the upload handler while the body is parsed; DRF answers 413, pages catch it."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"

    def __init__(self, file: str | None, size: int | None, limit: int):
        file = file or "upload"
        size_text = f"is {human_bytes(size)}, over" if size else "is larger than"
        reason = f"{size_text} the upload limit of {human_bytes(limit)} (UPLOAD_MAX_BYTES); nothing was stored"
        self.error = {"file": file, "field": "file", "reason": reason}
        self.message = f"{file}: file: {reason}"
        super().__init__({"file": [self.message], "error": self.error})


# The size limit -------------------------------------------------------------------------------------
class UploadLimitHandler(FileUploadHandler):
    """Counts file bytes as the multipart parser hands them over and stops the upload once they pass
    `max_bytes`: the parser reads no further and nothing reaches storage. A declared Content-Length
    that can not fit is refused before parsing starts. (Under ASGI the server has received the body
    by then; RequestBodyLimit stops it earlier, on the wire.)

    Installed first (`limit_upload_size`) so it sees each chunk before the handlers that buffer it."""

    def __init__(self, request=None, max_bytes: int | None = None):
        super().__init__(request)
        self.max_bytes = settings.UPLOAD_MAX_BYTES if max_bytes is None else max_bytes
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.max_bytes + MULTIPART_OVERHEAD_BYTES:
            raise UploadTooLarge(None, content_length, self.max_bytes)
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            raise UploadTooLarge(self.file_name, None, self.max_bytes)
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler builds the UploadedFile


UPLOAD_PATHS = re.compile(r"^/(api/datasets/|api/datasets/preview/|projects/\d+/datasets/new/)$")


class RequestBodyLimit:
    """ASGI middleware for the upload URLs: refuse a body over the limit while it arrives.

    Django's ASGI handler reads the whole request body into a temporary file before any view (and
    so any upload handler) runs; without this, a 10 GB upload would fill the disk before the 413.
    Wrap the HTTP app with it in nasweb/asgi.py: `"http": RequestBodyLimit(django_asgi_app)`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not UPLOAD_PATHS.match(scope["path"]):
            return await self.app(scope, receive, send)
        limit = settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, int(declared))
        received, over, started = 0, False, False

        async def counted_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if over and not started:
            await self._refuse(scope, send, None)  # the total is unknown: it was never read

    @staticmethod
    async def _refuse(scope, send, size: int | None) -> None:
        refusal = UploadTooLarge(None, size, settings.UPLOAD_MAX_BYTES)
        if scope["path"].startswith("/api/"):
            body, content_type = json.dumps(refusal.detail).encode(), b"application/json"
        else:
            body, content_type = refusal.message.encode(), b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def limit_upload_size(request) -> None:
    """Put the limit in front of the request's upload handlers. Must run before anything reads
    request.POST/FILES (DRF: before authentication, whose CSRF check reads the form; pages: the
    view is csrf_exempt and protects itself after calling this)."""
    request.upload_handlers.insert(0, UploadLimitHandler(request))


# Staging --------------------------------------------------------------------------------------------
@dataclass
class StagedUpload:
    """A file waiting in storage for its preview and save, and the signed token that names it."""

    id: str
    path: str  # storage name
    file: str  # the file's name as the person sees it (also what loader messages say)
    source: str
    size: int
    sha256: str
    user_id: int
    project_id: int
    fresh: bool = False  # came with this request (versus found again through its token)

    @property
    def token(self) -> str:
        payload = {k: getattr(self, k) for k in ("id", "path", "file", "source", "size", "sha256", "user_id",
                                                 "project_id")}  # fmt: skip
        return signing.dumps(payload, salt=TOKEN_SALT, compress=True)

    @property
    def expires_at(self):
        return timezone.now() + timedelta(seconds=staging_seconds())

    def open(self):
        return default_storage.open(self.path, "rb")

    def discard(self) -> None:
        _delete_folder(f"{STAGING_DIR}/{self.id}")


def infer_source(file_name: str) -> str:
    source = SUFFIX_SOURCES.get(PurePosixPath(file_name).suffix.lower())
    if source is None:
        raise UploadError(
            "source",
            f"{file_name}: source: can not tell the kind of file from its name; give source csv, npz or zip",
        )
    return source


def _safe_name(file_name: str) -> str:
    name = default_storage.get_valid_name(PurePosixPath(file_name.replace("\\", "/")).name) or "upload"
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix


def stage_upload(uploaded, *, user, project, source: str | None) -> StagedUpload:
    """Store an uploaded file under uploads/staging/<id>/ with its size and sha256."""
    purge_expired_staging()
    name = _safe_name(uploaded.name or "upload")
    source = source or infer_source(name)
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    staging_id = secrets.token_hex(16)
    path = default_storage.save(f"{STAGING_DIR}/{staging_id}/{name}", uploaded)
    return StagedUpload(
        id=staging_id, path=path, file=name, source=source, size=uploaded.size, sha256=digest.hexdigest(),
        user_id=user.pk, project_id=project.pk, fresh=True,
    )  # fmt: skip


def open_staged(token: str, *, user, project, source: str | None = None) -> StagedUpload:
    """The staged upload a token names, if it is this user's, for this project, and not expired."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT, max_age=staging_seconds())
    except signing.SignatureExpired:
        raise UploadError("upload_token", "has expired; upload the file again") from None
    except signing.BadSignature:
        raise UploadError("upload_token", "is not a valid upload token; upload the file again") from None
    staged = StagedUpload(**payload)
    if staged.user_id != user.pk or staged.project_id != project.pk:
        raise UploadError("upload_token", "belongs to another upload (another user or project)")
    if source and source != staged.source:
        raise UploadError("source", f"{staged.file} was uploaded as {staged.source}; upload it again as {source}")
    if not default_storage.exists(staged.path):
        raise UploadError("upload_token", f"{staged.file} is no longer staged (saved or expired); upload it again")
    return staged


def staged_upload(*, user, project, source=None, file=None, token=None) -> StagedUpload:
    """From this request's file, or from the token of an earlier preview: exactly one of the two."""
    if (file is None) == (not token):
        raise UploadError("file", "give either a file or the upload_token of a preview, not both or neither")
    if file is not None:
        return stage_upload(file, user=user, project=project, source=source)
    return open_staged(token, user=user, project=project, source=source)


def _delete_folder(folder: str) -> None:
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError, OSError):
        files = []
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    try:
        default_storage.delete(folder)  # FileSystemStorage removes the empty folder; object stores have none
    except (NotImplementedError, OSError):
        pass


def purge_expired_staging() -> int:
    """Delete staged uploads older than the token lifetime (no token can name them any more)."""
    try:
        folders, _ = default_storage.listdir(STAGING_DIR)
    except (FileNotFoundError, NotImplementedError, OSError):
        return 0
    cutoff = timezone.now() - timedelta(seconds=staging_seconds())
    purged = 0
    for staging_id in folders:
        folder = f"{STAGING_DIR}/{staging_id}"
        try:
            _, files = default_storage.listdir(folder)
            times = [default_storage.get_modified_time(f"{folder}/{name}") for name in files]
        except (FileNotFoundError, NotImplementedError, OSError):
            continue  # another request is purging it
        if all(t < cutoff for t in times):
            _delete_folder(folder)
            purged += 1
    return purged


# Loading and previews --------------------------------------------------------------------------------
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


def load_staged(staged: StagedUpload, options: dict):
    """The Task, loaded exactly as engine_bridge will load the saved file. Raises DatasetError."""
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
        return load_dataset({staged.source: fh, **options})


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
    from PIL import Image

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


def build_preview(staged: StagedUpload, options) -> dict:
    """What the person checks before saving: the file, the shape and classes as the loader sees
    them, sample images, and for a CSV its columns with the target chooser's default.

    For a CSV a target that does not work (wrong column, gaps in the labels) is reported as
    `problem`, not refused: picking another column fixes it. Anything wrong with the file itself
    is an UploadError, and a file uploaded with this request is then deleted."""
    try:
        options = clean_options(staged.source, options)
        preview = {
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
        if staged.source == DatasetSource.CSV:
            with staged.open() as fh:
                preview["csv"] = preview_csv(fh, max_rows=PREVIEW_ROWS)
            options.setdefault("target", preview["csv"]["suggested_target"])
        try:
            task = load_staged(staged, options)
        except DatasetError as exc:
            if staged.source != DatasetSource.CSV:
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


def save_dataset(staged: StagedUpload, *, project, name: str, options: dict, task, user):
    """Copy the staged file to its final storage path (Dataset.file's upload_to) and create the row
    with the checksum, size and the shape the loader reported; the staged copy is then removed."""
    from .models import Dataset

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


# Samples of a saved dataset ---------------------------------------------------------------------------
def dataset_samples(dataset) -> dict:
    """Sample images (image data) or the first rows (CSV) of a saved dataset, for its page."""
    from django.core.cache import cache

    from . import engine_bridge

    key = f"dataset-samples:{dataset.pk}:{dataset.checksum}:{dataset.builtin_name}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    out: dict = {"kind": dataset.kind, "samples": [], "csv": None, "problem": None}
    try:
        task = engine_bridge.load_task(dataset, 0)
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
