"""Dataset uploads: a size limit enforced while the body arrives, a staging area in storage, and
the preview a person checks before saving.

    POST file ──> stage_upload ──> build_preview (+ signed upload token) ──> save_dataset ──> Dataset
                  uploads/staging/<id>/<name>                                  datasets/<project>/...

Everything goes through Django's default storage, so the web server that takes the upload and the
worker that later trains on it need not be the same machine. The parts:

    errors    UploadError (400) and UploadTooLarge (413), a loader's DatasetError as a response
    limits    the size limit while Django parses the body (nasweb.middleware stops it on the wire)
    staging   staged files and their signed tokens; expiry
    preview   loading a staged file as the worker will, and what the person sees of it
    saved     saving, deleting and showing the samples of a saved dataset

Memory is bounded by the upload limit: staging copies the file a chunk at a time, the NPZ loader gets
the upload limit as the most its arrays may declare together (`preview.server_limits`), and the CSV
preview reads a bounded prefix.

Nothing of a rejected upload is kept: a refused preview or save deletes its staged file, the size
limit stops the upload before it reaches storage, and staged files nobody saved expire after
UPLOAD_STAGING_SECONDS (removed on the next upload).
"""

from .errors import OPTION_NAMES, UPLOAD_OPTIONS, UploadError, UploadTooLarge, human_bytes, rejection
from .limits import MULTIPART_OVERHEAD_BYTES, UploadLimitHandler, limit_upload_size
from .preview import PREVIEW_ROWS, build_preview, clean_options, load_staged, summarize, thumbnails
from .saved import dataset_samples, default_name, delete_dataset, save_dataset
from .staging import (
    SUFFIX_SOURCES,
    StagedUpload,
    infer_source,
    open_staged,
    purge_expired_staging,
    stage_upload,
    staged_upload,
    staging_seconds,
)

__all__ = [
    "MULTIPART_OVERHEAD_BYTES", "OPTION_NAMES", "PREVIEW_ROWS", "SUFFIX_SOURCES", "UPLOAD_OPTIONS", "StagedUpload",
    "UploadError", "UploadLimitHandler", "UploadTooLarge", "build_preview", "clean_options", "dataset_samples",
    "default_name", "delete_dataset", "human_bytes", "infer_source", "limit_upload_size", "load_staged",
    "open_staged", "purge_expired_staging", "rejection", "save_dataset", "stage_upload", "staged_upload",
    "staging_seconds", "summarize", "thumbnails",
]  # fmt: skip
