"""The upload size limit inside Django: counted while the multipart parser reads the body.

Under ASGI the server has received the body by the time a view runs; nasweb.middleware's
RequestBodyLimit stops it earlier, on the wire. Both allow the same multipart overhead."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from .errors import UploadTooLarge

# A multipart body is the file plus boundaries and a few small fields: a request declaring more
# than this over the file limit can not hold an acceptable file and is refused before parsing.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadLimitHandler(FileUploadHandler):
    """Counts file bytes as the multipart parser hands them over and stops the upload once they pass
    `max_bytes`: the parser reads no further and nothing reaches storage. A declared Content-Length
    that can not fit is refused before parsing starts.

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


def limit_upload_size(request) -> None:
    """Put the limit in front of the request's upload handlers. Must run before anything reads
    request.POST/FILES (DRF: before authentication, whose CSRF check reads the form; pages: the
    view is csrf_exempt and protects itself after calling this)."""
    request.upload_handlers.insert(0, UploadLimitHandler(request))
