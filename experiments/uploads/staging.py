"""The staging area: an uploaded file waits under uploads/staging/<id>/ in the default storage
for its preview and save, named by a signed token; staged files nobody saved expire after
UPLOAD_STAGING_SECONDS (removed on the next upload)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from .errors import UploadError

STAGING_DIR = "uploads/staging"
TOKEN_SALT = "experiments.uploads.staged"
MAX_NAME_CHARS = 120
CHUNK_BYTES = 1 << 20
SUFFIX_SOURCES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npz": "npz", ".zip": "zip"}


def staging_seconds() -> int:
    return int(getattr(settings, "UPLOAD_STAGING_SECONDS", 3600))


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
    """Store an uploaded file under uploads/staging/<id>/ with its size and sha256, reading it a
    chunk at a time: nothing here holds a whole upload in memory."""
    purge_expired_staging()
    name = _safe_name(uploaded.name or "upload")
    source = source or infer_source(name)
    digest = hashlib.sha256()
    uploaded.seek(0)
    while chunk := uploaded.read(CHUNK_BYTES):
        digest.update(chunk)
    staging_id = secrets.token_hex(16)
    # A file Django spooled to disk is moved into place; anything else is copied chunk by chunk
    # (UploadedFile.chunks() of an in-memory upload is one read of all of it).
    content = uploaded if hasattr(uploaded, "temporary_file_path") else File(uploaded, name=name)
    path = default_storage.save(f"{STAGING_DIR}/{staging_id}/{name}", content)
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
