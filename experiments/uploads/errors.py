"""How a refused upload is reported: UploadError (400, naming the request field, the file, the
field inside it and the reason) and UploadTooLarge (413, raised while the body is parsed)."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException

from search_engine.data import DatasetError
from search_engine.data.common import human_bytes

# Loader options a person may set per kind. Limits (max_bytes, max_entries, ...) stay the
# server's; the seed is the experiment's (engine.build passes it when it loads the file).
UPLOAD_OPTIONS = {
    "csv": ("target", "exclude", "delimiter", "val_fraction", "test_fraction", "max_categories"),
    "npz": ("channels_last", "val_fraction", "test_fraction"),
    "zip": ("image_size", "grayscale", "val_fraction", "test_fraction"),
}
OPTION_NAMES = frozenset(name for names in UPLOAD_OPTIONS.values() for name in names) | {"seed"}


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
