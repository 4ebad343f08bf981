"""Peak memory and seconds of the dataset loaders on hostile and large uploads (issue 9, item 7).

Each case runs in a fresh Python process doing what an upload preview does (CSV: preview_csv, then
load_csv with the suggested target; NPZ and ZIP: the loader with the limits the web side passes),
so the figure is that process's own peak RSS, not the bench's. Files are generated in a temp dir.

  npz_bomb       a ~1 MB compressed NPZ of zeros whose X declares about 1e9 bytes
  npz_large      a legit uncompressed NPZ of uint8 images (N, 32, 32, 3) of about --npz-mb MB
  csv_tiny       a CSV of tiny rows ("1,0") of --csv-mb MB
  csv_large      a legit CSV near the loader's limits: 100,000 rows, 60 numeric columns, a text column
  zip_large      an image ZIP of noise PNGs, 10 classes, about --zip-mb MB

    python bench/bench_upload_memory.py
    python bench/bench_upload_memory.py --cases npz_bomb,csv_tiny --csv-mb 60 --limit-mb 200
    python bench/bench_upload_memory.py --root ../old-checkout   # the same cases on another checkout

--limit-mb is UPLOAD_MAX_BYTES: the web passes it to the NPZ loader as max_bytes (1024 gives the
engine's default, which is what the web passed before issue 9).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ("npz_bomb", "npz_large", "csv_tiny", "csv_large", "zip_large")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
from search_engine.data import DatasetError, load_csv, load_image_zip, load_npz, preview_csv
kind, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
outcome = "ok"
try:
    if kind == "csv":
        preview = preview_csv(path, max_rows=8)
        outcome = f"preview n_rows={preview['n_rows']}"
        load_csv(path, preview["suggested_target"])
        outcome += ", loaded"
    elif kind == "npz":
        load_npz(path, max_bytes=limit)
    else:
        load_image_zip(path, image_size=32)
except DatasetError as exc:
    outcome += f"; refused: {exc}"
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": seconds, "outcome": outcome}))
"""


def make_npz_bomb(folder: Path) -> Path:
    path = folder / "bomb.npz"
    # ~1 GB of zeros compresses to ~1 MB; written member by member so the bench stays small too.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (1_000_000, 1000)}
            )
            block = bytes(1 << 24)
            for _ in range(1_000_000_000 // len(block)):
                member.write(block)
            member.write(bytes(1_000_000_000 % len(block)))
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(1_000_000, dtype=np.int64))
        zf.writestr("y.npy", buffer.getvalue())
    return path


def make_npz_large(folder: Path, mb: float) -> Path:
    path = folder / "images.npz"
    n = max(10, int(mb * 1e6 / 3072))
    X = np.random.default_rng(0).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    np.savez(path, X=X, y=np.arange(n) % 10)
    return path


def make_csv_tiny(folder: Path, mb: float) -> Path:
    path = folder / "tiny.csv"
    rows = int(mb * 1e6) // 4
    with open(path, "w") as fh:
        fh.write("x,label\n")
        chunk = "1,0\n2,1\n" * 50_000
        for _ in range(rows // 100_000):
            fh.write(chunk)
    return path


def make_csv_large(folder: Path) -> Path:
    path = folder / "large.csv"
    rng = np.random.default_rng(0)
    n, width = 100_000, 60
    with open(path, "w") as fh:
        fh.write(",".join([f"f{i}" for i in range(width)] + ["colour", "label"]) + "\n")
        for _ in range(0, n, 10_000):
            block = rng.normal(size=(10_000, width))
            colours = rng.choice(["red", "green", "blue"], size=10_000)
            labels = rng.integers(0, 5, size=10_000)
            lines = [
                ",".join(f"{v:.6f}" for v in row) + f",{c},{y}\n" for row, c, y in zip(block, colours, labels)
            ]
            fh.writelines(lines)
    return path


def make_zip_large(folder: Path, mb: float) -> Path:
    from PIL import Image

    path = folder / "images.zip"
    rng = np.random.default_rng(0)
    side = 128
    per_image = side * side * 3  # noise barely compresses
    count = max(20, int(mb * 1e6 / per_image))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
            zf.writestr(f"class{i % 10}/img{i}.png", buffer.getvalue())
    return path


def run_case(kind: str, path: Path, limit: int, timeout: float, root: Path) -> dict:
    command = [sys.executable, "-c", CHILD, kind, str(path), str(limit), str(root)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"outcome": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"outcome": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--csv-mb", type=float, default=60.0)
    parser.add_argument("--zip-mb", type=float, default=100.0)
    parser.add_argument("--npz-mb", type=float, default=100.0)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose search_engine is measured")
    parser.add_argument("--limit-mb", type=float, default=200.0, help="UPLOAD_MAX_BYTES, in MiB")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    limit = int(args.limit_mb * (1 << 20))
    makers = {
        "npz_bomb": ("npz", make_npz_bomb),
        "npz_large": ("npz", lambda folder: make_npz_large(folder, args.npz_mb)),
        "csv_tiny": ("csv", lambda folder: make_csv_tiny(folder, args.csv_mb)),
        "csv_large": ("csv", make_csv_large),
        "zip_large": ("zip", lambda folder: make_zip_large(folder, args.zip_mb)),
    }
    print(f"{'case':<10} {'file MB':>8} {'base MB':>8} {'peak MB':>8} {'growth':>8} {'seconds':>8}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            kind, make = makers[case]
            path = make(Path(tmp))
            size = os.path.getsize(path) / 1e6
            started = time.perf_counter()
            result = run_case(kind, path, limit, args.timeout, args.root.resolve())
            if "peak_mb" in result:
                print(
                    f"{case:<10} {size:8.1f} {result['base_mb']:8.0f} {result['peak_mb']:8.0f} "
                    f"{result['peak_mb'] - result['base_mb']:8.0f} {result['seconds']:8.2f}  {result['outcome'][:150]}"
                )
            else:
                print(f"{case:<10} {size:8.1f} {'':>8} {'':>8} {'':>8} {time.perf_counter() - started:8.2f}  {result['outcome']}")
            path.unlink()


if __name__ == "__main__":
    main()
