"""Small files that explode (issue 9, item 7): an NPZ whose arrays declare far more than the file holds,
and a CSV of millions of tiny rows. Each is refused with a 400 naming the file, the array or field and
the reason, quickly and in bounded memory; the upload itself is staged in chunks, never read whole.

Memory is measured in a fresh subprocess that loads the file as the preview does and reports its own
peak RSS, so the figure does not depend on what this test process allocated before."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from experiments import uploads
from experiments.engine import build
from experiments.models import Dataset

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from search_engine.data import DatasetError, load_csv, load_npz, preview_csv
call, path = sys.argv[2], sys.argv[3]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    result = eval(call)
    outcome = result if isinstance(result, dict) else "loaded"
except DatasetError as exc:
    outcome = {"field": exc.field, "reason": exc.reason}
print(json.dumps({"growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
                  "seconds": time.perf_counter() - start, "outcome": outcome}))
"""


def measured(call: str, path: Path) -> dict:
    """Run `call` (with `path` bound) in a fresh interpreter: its RSS growth (MB), seconds and outcome."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), call, str(path)], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def zeros_npz(path: Path, declared: int) -> Path:
    """An NPZ whose X is `declared` bytes of zeros, deflated to about a thousandth of that."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (declared // 1000, 1000)}
            )
            block = bytes(8 * MB)
            for _ in range(declared // len(block)):
                member.write(block)
            member.write(bytes(declared % len(block)))
        buffer = io.BytesIO()
        np.save(buffer, np.arange(declared // 1000) % 2)
        zf.writestr("y.npy", buffer.getvalue())
    return path


def tiny_rows_csv(path: Path, megabytes: int) -> Path:
    with open(path, "w") as fh:
        fh.write("x,label\n")
        for _ in range(megabytes * MB // 800_000):
            fh.write("1,0\n2,1\n" * 100_000)
    return path


# The loaders, in a process of their own --------------------------------------------------------------------
def test_an_npz_bomb_is_refused_from_its_headers_in_bounded_memory(tmp_path):
    path = zeros_npz(tmp_path / "bomb.npz", 400 * MB)
    assert path.stat().st_size < 2 * MB
    # The engine's own limits: the entry's 1000:1 ratio gives it away.
    ratio = measured("load_npz(path)", path)
    assert ratio["outcome"]["field"] == "X" and "possible zip bomb" in ratio["outcome"]["reason"], ratio
    # The web's: no more than the upload limit (here 200 MiB) together.
    cap = measured(f"load_npz(path, max_bytes={200 * MB})", path)
    assert cap["outcome"]["field"] == "X" and "in memory (limit max_bytes=" in cap["outcome"]["reason"], cap
    for result in (ratio, cap):
        assert result["growth_mb"] < 30 and result["seconds"] < 5, result


def test_a_csv_of_millions_of_tiny_rows_previews_a_prefix_in_bounded_time_and_memory(tmp_path):
    path = tiny_rows_csv(tmp_path / "tiny.csv", 60)  # 15 million rows, under the loader's 64 MiB
    preview = measured("preview_csv(path, max_rows=8)", path)
    assert preview["outcome"]["n_rows"] == 100_000 and preview["outcome"]["truncated"] is True, preview
    assert preview["growth_mb"] < 40 and preview["seconds"] < 30, preview
    load = measured("load_csv(path, 'label')", path)
    assert load["outcome"]["field"] == "rows" and "max_rows=100000" in load["outcome"]["reason"], load
    assert load["growth_mb"] < 40 and load["seconds"] < 30, load


def test_a_large_csv_loads_in_under_three_times_its_size(tmp_path):
    rng = np.random.default_rng(0)
    n, width = 100_000, 12  # the loader's row limit, numbers as a person's export writes them
    table = np.column_stack([rng.normal(size=(n, width)).round(4), rng.integers(0, 4, size=n)])
    path = tmp_path / "large.csv"
    np.savetxt(path, table, delimiter=",", fmt=["%.4f"] * width + ["%d"],
               header=",".join([f"f{i}" for i in range(width)] + ["label"]), comments="")  # fmt: skip
    size_mb = path.stat().st_size / MB
    result = measured("load_csv(path, 'label')", path)
    assert result["outcome"] == "loaded", result
    assert result["growth_mb"] < 3 * size_mb, (result, size_mb)


# Through the upload API -----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    build.clear_task_cache()
    return tmp_path / "media"


def post_preview(client, project, name: str, data: bytes):
    return client.post(
        "/api/datasets/preview/", {"project": project.pk, "file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def assert_refused(response, file: str, field: str, *words: str, media: Path):
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["file"], error["field"]) == (file, field), error
    for word in words:
        assert word in error["reason"], error
    assert not Dataset.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()] if media.exists() else True


@pytest.mark.django_db
def test_the_preview_refuses_an_npz_bomb_with_a_400_naming_the_array(editor_client, project, media, tmp_path,
                                                                      settings):  # fmt: skip
    data = zeros_npz(tmp_path / "zeros.npz", 64 * MB).read_bytes()
    started = time.perf_counter()
    response = post_preview(editor_client, project, "zeros.npz", data)
    assert_refused(response, "zeros.npz", "X", "possible zip bomb", "max_compression_ratio", media=media)
    assert time.perf_counter() - started < 10
    # Under a smaller upload limit the same file is over the total the arrays may declare.
    settings.UPLOAD_MAX_BYTES = 8 * MB
    response = post_preview(editor_client, project, "zeros.npz", data)
    assert_refused(response, "zeros.npz", "X", f"limit max_bytes={8 * MB}", media=media)


@pytest.mark.django_db
def test_the_preview_refuses_a_csv_of_too_many_tiny_rows_with_a_400(editor_client, project, media, tmp_path):
    data = tiny_rows_csv(tmp_path / "tiny.csv", 8).read_bytes()  # 2 million rows
    started = time.perf_counter()
    response = post_preview(editor_client, project, "tiny.csv", data)
    assert_refused(response, "tiny.csv", "rows", "more than 100000 data rows", media=media)
    assert time.perf_counter() - started < 30


class ReadsInChunksOnly:
    """An uploaded file that fails the test if anything reads it whole."""

    def read(self, size=-1):
        assert size is not None and 0 < size <= 8 * MB, f"read({size}) of a whole upload"
        return super().read(size)


class ChunkedMemoryUpload(ReadsInChunksOnly, SimpleUploadedFile):
    pass


class ChunkedTemporaryUpload(ReadsInChunksOnly, TemporaryUploadedFile):
    pass


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["memory", "temporary"])
def test_staging_writes_the_upload_in_chunks(editor, project, media, kind):
    data = b"a,label\n" + b"1,x\n2,y\n" * 200_000
    if kind == "memory":
        uploaded = ChunkedMemoryUpload("big.csv", data)
    else:
        uploaded = ChunkedTemporaryUpload("big.csv", "text/csv", len(data), None)
        for start in range(0, len(data), MB):
            uploaded.write(data[start : start + MB])
        uploaded.seek(0)
    staged = uploads.stage_upload(uploaded, user=editor, project=project, source=None)
    uploaded.close()  # as Django does after the request: the spooled file was moved, not copied
    assert staged.size == len(data) and (media / staged.path).read_bytes() == data
