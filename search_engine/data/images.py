"""ZIP archives of image folders, one folder per class; entries are never written to disk."""

from __future__ import annotations

import io
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from ..package.predict import fit_image
from ..task import Task
from .common import (
    DatasetError,
    MiB,
    Source,
    _check_int_option,
    _check_split_options,
    _display_name,
    _finish,
    _open_binary,
    _quote_list,
    _read_limited,
    _stem,
    human_bytes,
)

IMAGE_FORMATS = ("PNG", "JPEG")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
JUNK_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_READ_CHUNK = 1 << 20




def _entry_parts(file: str, info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components, after refusing names that point outside the archive.

    Entries are never extracted, but a name like that is either a damaged or a hostile archive, and
    it would otherwise turn into a class name."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise DatasetError(file, info.filename, "is an absolute path; archive entries must be relative")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(file, info.filename, "contains '..' and would point outside the archive")
    return parts


def _is_junk(parts: list[str]) -> bool:
    return any(p == "__MACOSX" or p.startswith(".") for p in parts) or parts[-1].lower() in JUNK_FILE_NAMES


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, limit: int) -> bytes:
    # Declared sizes come from the archive and can lie, so count what actually comes out.
    chunks, total = [], 0
    try:
        with zf.open(info) as member:
            while chunk := member.read(_READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise DatasetError(
                        file,
                        info.filename,
                        f"decompresses to more than {human_bytes(limit)} although it declares "
                        f"{human_bytes(info.file_size)}; refusing it as a possible zip bomb",
                    )
                chunks.append(chunk)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise DatasetError(
            file, info.filename, f"cannot be decompressed ({exc}); the archive is damaged, zip it again"
        ) from None
    return b"".join(chunks)


def _decode_image(file: str, entry: str, data: bytes, size: int, max_pixels: int):
    """(resized PIL image in L or RGB, whether the original was grayscale)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DatasetError(
                    file,
                    entry,
                    f"is {width}x{height} pixels, over the limit of {max_pixels} "
                    f"(max_image_pixels); scale it down first",
                )
            # The package's predict.py prepares images with the same function, so a download
            # sees exactly what training saw.
            return fit_image(img, size)
    except DatasetError:
        raise
    except Image.DecompressionBombError:
        raise DatasetError(file, entry, "declares an implausibly large image (decompression bomb)") from None
    except Exception as exc:  # decoders fail on corrupt input with all kinds of exception types
        raise DatasetError(file, entry, f"is not a readable PNG or JPEG image ({exc})") from None


@contextmanager
def _open_zip(source: Source, file: str, max_bytes: int) -> Iterator[zipfile.ZipFile]:
    with _open_binary(source, file) as handle:
        seekable = getattr(handle, "seekable", None)
        if seekable is None or not seekable():
            handle = io.BytesIO(_read_limited(handle, file, max_bytes))
        try:
            zf = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise DatasetError(
                file, "file", f"is not a ZIP archive ({exc}); upload a .zip with one folder per class"
            ) from None
        with zf:
            yield zf


@dataclass(frozen=True)
class _ZipLimits:
    max_entries: int
    max_total_bytes: int
    max_entry_bytes: int
    max_compression_ratio: float
    max_image_pixels: int


def _check_image_entry(file: str, info: zipfile.ZipInfo, parts: list[str], limits: _ZipLimits) -> None:
    """Refuse an image entry from its declared header, before a byte of it is decompressed."""
    if info.flag_bits & 0x1:
        raise DatasetError(file, info.filename, "is encrypted; upload an archive without a password")
    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        raise DatasetError(
            file, info.filename, "is not a PNG or JPEG image; remove it or convert it to PNG/JPEG"
        )
    if info.file_size > limits.max_entry_bytes:
        raise DatasetError(
            file,
            info.filename,
            f"declares {human_bytes(info.file_size)} uncompressed, over the per-file limit of "
            f"{human_bytes(limits.max_entry_bytes)} (max_entry_bytes)",
        )
    if info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
        raise DatasetError(
            file,
            info.filename,
            f"is compressed {info.file_size / max(info.compress_size, 1):.0f}:1, over the limit "
            f"of {limits.max_compression_ratio:.0f}:1 (max_compression_ratio); refusing it as a possible zip bomb",
        )


def _scan_entries(
    zf: zipfile.ZipFile, file: str, limits: _ZipLimits
) -> tuple[list[tuple[list[str], zipfile.ZipInfo]], list[list[str]], int]:
    """(image entries with their path parts, every folder seen, the number of junk files ignored)."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise DatasetError(
            file, "entries", f"has {len(infos)} entries, over the limit of {limits.max_entries} (max_entries)"
        )
    images: list[tuple[list[str], zipfile.ZipInfo]] = []
    folders: list[list[str]] = []  # every folder seen, to find class folders left empty
    ignored = declared_total = 0
    for info in infos:
        parts = _entry_parts(file, info)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(
                file, info.filename, "is a symbolic link; archives may hold only files and folders"
            )
        if not parts:
            continue
        if info.is_dir():
            if not _is_junk(parts):
                folders.append(parts)
            continue
        if _is_junk(parts):
            ignored += 1
            parent = parts[:-1]
            if parent and not _is_junk(parent):
                folders.append(parent)
            continue
        _check_image_entry(file, info, parts, limits)
        declared_total += info.file_size
        images.append((parts, info))
    if declared_total > limits.max_total_bytes:
        raise DatasetError(
            file,
            "entries",
            f"images add up to {human_bytes(declared_total)} uncompressed, over the limit of "
            f"{human_bytes(limits.max_total_bytes)} (max_total_bytes)",
        )
    if not images:
        raise DatasetError(
            file, "entries", "contains no PNG or JPEG images; expected one folder per class"
        )
    return images, folders, ignored


def _label_entries(
    file: str, images: list[tuple[list[str], zipfile.ZipInfo]], folders: list[list[str]]
) -> tuple[list[tuple[str, zipfile.ZipInfo]], list[str]]:
    """(class label, entry) pairs sorted by label and name, and the sorted class names."""
    # One shared top-level folder (what zipping a folder produces) is not a class level.
    top = images[0][0][0]
    strip = int(all(len(p) >= 3 and p[0] == top for p, _ in images))
    labelled: list[tuple[str, zipfile.ZipInfo]] = []
    for parts, info in images:
        parts = parts[strip:]
        if len(parts) == 1:
            raise DatasetError(
                file,
                info.filename,
                "is not inside a class folder; put each image in a folder named after its class",
            )
        if len(parts) > 2:
            raise DatasetError(
                file,
                info.filename,
                "is nested too deep; expected <class>/<image> (optionally inside one top-level folder)",
            )
        labelled.append((parts[0], info))
    classes = sorted({label for label, _ in labelled})
    declared_classes = {p[strip] for p in folders if len(p) > strip and p[:strip] == images[0][0][:strip]}
    empty = sorted(declared_classes - set(classes))
    if empty:
        raise DatasetError(
            file,
            empty[0],
            f"class folder has no images; add PNG/JPEG images or remove {_quote_list(empty)}",
        )
    if len(classes) < 2:
        raise DatasetError(
            file,
            "classes",
            f"found only one class folder ({_quote_list(classes)}); a classifier needs at least 2",
        )
    # Sorted so the rows, and therefore the seeded split, do not depend on the zip tool's order.
    labelled.sort(key=lambda item: (item[0], item[1].filename))
    return labelled, classes


def _decode_entries(
    zf: zipfile.ZipFile, file: str, labelled: list[tuple[str, zipfile.ZipInfo]], classes: list[str],
    image_size: int, limits: _ZipLimits,
) -> tuple[list, list[int], bool]:
    """(resized images, class ids, whether every image was grayscale); decompression is counted
    against the total byte limit as it happens."""
    budget = limits.max_total_bytes
    decoded, labels, all_gray = [], [], True
    index = {label: i for i, label in enumerate(classes)}
    for label, info in labelled:
        data = _read_entry(zf, info, file, min(limits.max_entry_bytes, budget))
        budget -= len(data)
        img, gray = _decode_image(file, info.filename, data, image_size, limits.max_image_pixels)
        all_gray &= gray
        decoded.append(img)
        labels.append(index[label])
    return decoded, labels, all_gray


def _stack_images(decoded: list, image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """((N, C, H, W) float32 in 0..1, the same as (N, H, W, C) uint8: what an exported model takes)."""
    mode = "L" if channels == 1 else "RGB"
    raw = np.stack([np.asarray(img.convert(mode), dtype=np.uint8) for img in decoded])
    raw = raw.reshape(len(raw), image_size, image_size, channels)
    return (raw.transpose(0, 3, 1, 2) / 255.0).astype(np.float32), raw


def load_image_zip(
    source: Source,
    *,
    image_size: int = 32,
    grayscale: bool | None = None,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_entries: int = 20_000,
    max_total_bytes: int = 1024 * MiB,
    max_entry_bytes: int = 32 * MiB,
    max_compression_ratio: float = 100.0,
    max_image_pixels: int = 40_000_000,
) -> Task:
    """An image Task from a ZIP with one folder of PNG/JPEG images per class.

    Hostile archives are refused before anything is decoded: too many entries, names escaping the
    archive, symlinks, encrypted entries, declared sizes over the limits or compressed more than
    `max_compression_ratio`:1 (images are already compressed, so a high ratio means padding or a bomb);
    decompression is then counted chunk by chunk against the same limits."""
    _check_split_options(val_fraction, test_fraction, seed)
    image_size = _check_int_option("image_size", image_size, 4, 512)
    if grayscale not in (None, True, False):
        raise DatasetError(None, "grayscale", f"must be true, false or empty (automatic), got {grayscale!r}")
    max_entries = _check_int_option("max_entries", max_entries, 1)
    limits = _ZipLimits(max_entries, max_total_bytes, max_entry_bytes, max_compression_ratio, max_image_pixels)
    file = _display_name(source)

    with _open_zip(source, file, max_total_bytes) as zf:
        images, folders, ignored = _scan_entries(zf, file, limits)
        labelled, classes = _label_entries(file, images, folders)
        decoded, labels, all_gray = _decode_entries(zf, file, labelled, classes, image_size, limits)

    channels = 1 if (grayscale if grayscale is not None else all_gray) else 3
    X, raw = _stack_images(decoded, image_size, channels)
    y = np.asarray(labels, dtype=np.int64)
    source_record = {
        "zip": file, "image_size": image_size, "grayscale": grayscale, "seed": seed,
        "val_fraction": val_fraction, "test_fraction": test_fraction,
    }  # fmt: skip
    meta = {"pixel_range": [0.0, 1.0], "channels": channels, "ignored_entries": ignored,
            "raw_input": _zip_raw_input(file, image_size, channels)}  # fmt: skip
    task = _finish(
        name or _stem(file), X, y, classes, file=file, label_field="classes", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta, raw=raw,
    )  # fmt: skip
    # Entry names rather than row numbers: a person has the files, not the loader's row order.
    task.meta["split"] = {part: [labelled[i][1].filename for i in rows] for part, rows in task.meta["split"].items()}
    return task


def _zip_raw_input(file: str, image_size: int, channels: int) -> dict:
    color = "grayscale" if channels == 1 else "RGB"
    return {
        "source": "zip", "file": file, "dtype": "uint8", "shape": [image_size, image_size, channels],
        "scale": 255.0, "layout": "NHWC", "labels": "value", "image_size": image_size, "channels": channels,
        "description": (
            f"{color} images as uint8 arrays of shape (N, {image_size}, {image_size}, {channels}) (height, width, "
            f"channels; values 0-255): PNG or JPEG files resized (bilinear, not cropped) to "
            f"{image_size}x{image_size}, transparency flattened onto white; the model divides by 255"
        ),
    }  # fmt: skip
