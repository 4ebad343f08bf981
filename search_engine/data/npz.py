"""NPZ archives holding arrays X and y, loaded without pickle."""

from __future__ import annotations

import math
import zipfile
from typing import Any

import numpy as np

from ..task import Task
from .common import (
    DatasetError,
    MiB,
    Source,
    _check_split_options,
    _display_name,
    _encode_numeric_labels,
    _finish,
    _open_binary,
    _stem,
    human_bytes,
)


def _npy_header(npz: Any, key: str, file: str) -> tuple[tuple[int, ...], np.dtype, zipfile.ZipInfo]:
    """Shape and dtype from the array's header, and its archive entry, before numpy allocates memory
    for it."""
    fmt = np.lib.format
    member_name = f"{key}.npy" if f"{key}.npy" in npz.zip.namelist() else key
    try:
        info = npz.zip.getinfo(member_name)
        with npz.zip.open(member_name) as member:
            version = fmt.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(member)
            else:
                raise DatasetError(file, key, f"uses .npy format version {version}; save it with np.savez")
    except DatasetError:
        raise
    except Exception as exc:  # a damaged header can fail in many ways; all mean the same to the user
        raise DatasetError(file, key, f"is not a readable .npy array ({exc})") from None
    return tuple(shape), dtype, info


def _check_declared(file: str, key: str, shape: tuple, dtype: np.dtype, info: zipfile.ZipInfo,
                    max_bytes: int, max_compression_ratio: float) -> int:  # fmt: skip
    """The array's size as its header declares it, refused when the archive entry can not hold it or
    would decompress to more than `max_compression_ratio` times its stored size: numpy allocates the
    whole array before reading a byte of it, so a small file of zeros must not get that far."""
    if dtype.hasobject:
        raise DatasetError(
            file,
            key,
            "is an object array (pickled Python objects), which is never loaded because "
            "unpickling can run code; save numbers, or labels as np.array(labels, dtype=str)",
        )
    size = math.prod(shape) * dtype.itemsize
    if size > max_bytes:
        raise DatasetError(file, key, f"needs {human_bytes(size)} in memory (limit max_bytes={max_bytes})")
    if size > info.file_size:
        raise DatasetError(
            file,
            key,
            f"declares shape {shape} of {dtype} ({human_bytes(size)}) but its entry holds only "
            f"{human_bytes(info.file_size)}; the archive is damaged, save it again with np.savez",
        )
    stored = max(info.compress_size, 1)
    if info.file_size > max_compression_ratio * stored:
        raise DatasetError(
            file,
            key,
            f"declares {human_bytes(info.file_size)} compressed into {human_bytes(stored)} "
            f"({info.file_size / stored:.0f}:1, over the limit of {max_compression_ratio:.0f}:1, "
            f"max_compression_ratio); refusing it as a possible zip bomb",
        )
    return size


def _images_from_array(
    file: str, X: np.ndarray, channels_last: bool | None
) -> tuple[np.ndarray, list[float]]:
    """(N, C, H, W) float32 and the value range a preview maps to 0..255."""
    if X.ndim == 3:
        X = X[:, None]
    else:
        first, last = X.shape[1], X.shape[3]
        if channels_last is None:
            if first in (1, 3):
                channels_last = False
            elif last in (1, 3):
                channels_last = True
            else:
                raise DatasetError(
                    file,
                    "X",
                    f"cannot tell the channel axis of shape {X.shape}: images need 1 or 3 channels, "
                    f"as (N, C, H, W) or (N, H, W, C)",
                )
        if channels_last:
            X = X.transpose(0, 3, 1, 2)
        if X.shape[1] not in (1, 3):
            layout = "(N, H, W, C)" if channels_last else "(N, C, H, W)"
            raise DatasetError(
                file, "X", f"read as {layout}, shape {X.shape} has {X.shape[1]} channels; images need 1 or 3"
            )
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(X.dtype)
    X = X.astype(np.float32)  # a copy, so scaling in place leaves the caller's array alone
    if scale:
        X /= scale
        return X, [0.0, 1.0]
    low, high = float(X.min()), float(X.max())
    return X, ([0.0, 1.0] if 0.0 <= low and high <= 1.0 else [low, high])


def _npz_labels(file: str, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(file, "y", f"must be 1-d (one label per row of X), got shape {y.shape}")
    kind = y.dtype.kind
    if kind in "US":
        if kind == "S":
            try:
                y = np.char.decode(y, "utf-8")
            except UnicodeDecodeError:
                raise DatasetError(file, "y", "holds byte strings that are not UTF-8") from None
        uniques, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(u) for u in uniques]
    if kind == "b":
        uniques, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(bool(u)) for u in uniques]
    if kind in "iu":
        return _encode_numeric_labels(y)
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DatasetError(file, "y", f"has {len(bad)} NaN or infinite labels (first at index {bad[0]})")
        fractional = np.flatnonzero(y != np.round(y))
        if len(fractional):
            raise DatasetError(
                file,
                "y",
                f"holds non-integer values (e.g. {y[fractional[0]]} at index {fractional[0]}); labels "
                f"must be class ids or names, since NAS Studio does classification",
            )
        return _encode_numeric_labels(y)
    raise DatasetError(file, "y", f"has dtype {y.dtype}; labels must be integers or strings")


def _read_arrays(
    source: Source, file: str, max_bytes: int, max_compression_ratio: float
) -> dict[str, np.ndarray]:
    """X and y from the archive, refusing pickles and, from their headers, arrays over `max_bytes`
    together or compressed suspiciously well (see _check_declared)."""
    with _open_binary(source, file) as handle:
        magic = handle.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise DatasetError(
                file, "file", "is a single .npy array; save X and y together with np.savez(path, X=X, y=y)"
            )
        if not magic.startswith(b"PK"):
            raise DatasetError(file, "file", "is not an .npz archive; save one with np.savez(path, X=X, y=y)")
        handle.seek(0)
        try:
            npz = np.load(handle, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(file, "file", f"is not a readable .npz archive ({exc})") from None
        with npz:
            total = 0
            for key in ("X", "y"):
                if key not in npz.files:
                    near = [k for k in npz.files if k.lower() == key.lower()]
                    hint = f"; rename '{near[0]}' to '{key}'" if near else ""
                    raise DatasetError(
                        file, key, f"array not found (arrays: {', '.join(npz.files) or 'none'}){hint}"
                    )
                shape, dtype, info = _npy_header(npz, key, file)
                total += _check_declared(file, key, shape, dtype, info, max_bytes, max_compression_ratio)
            if total > max_bytes:
                raise DatasetError(
                    file, "X", f"X and y need {human_bytes(total)} in memory together (limit max_bytes={max_bytes})"
                )
            arrays = {}
            for key in ("X", "y"):
                try:
                    arrays[key] = npz[key]
                except Exception as exc:  # truncated or corrupt member data
                    raise DatasetError(file, key, f"cannot be read ({exc})") from None
    return arrays


def _check_features(file: str, X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim not in (2, 3, 4):
        raise DatasetError(
            file,
            "X",
            f"has shape {X.shape}; expected (N, features) for tabular data or (N, H, W), "
            f"(N, C, H, W), (N, H, W, C) for images",
        )
    if X.dtype.kind not in "biuf":
        raise DatasetError(file, "X", f"has dtype {X.dtype}; features must be numbers")
    if len(X) == 0 or X.size == 0:
        raise DatasetError(file, "X", f"is empty (shape {X.shape})")
    if len(y) != len(X):
        raise DatasetError(
            file, "y", f"has {len(y)} labels but X has {len(X)} rows; they must match one to one"
        )
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
        if bad.any():
            raise DatasetError(
                file,
                "X",
                f"has NaN or infinite values in {int(bad.sum())} rows (first: row {int(np.argmax(bad))}); "
                f"fill or drop them",
            )


def load_npz(
    source: Source,
    *,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    channels_last: bool | None = None,
    max_bytes: int = 1024 * MiB,
    max_compression_ratio: float = 200.0,
) -> Task:
    """A Task from an .npz archive holding `X` (features or images) and `y` (labels); see the module
    docstring for accepted shapes. Nothing is unpickled; arrays over `max_bytes` together, or whose
    entry would decompress more than `max_compression_ratio`:1, are refused before numpy allocates them."""
    _check_split_options(val_fraction, test_fraction, seed)
    if channels_last not in (None, True, False):
        raise DatasetError(None, "channels_last", f"must be true, false or empty, got {channels_last!r}")
    file = _display_name(source)
    arrays = _read_arrays(source, file, max_bytes, max_compression_ratio)
    X, y = arrays["X"], arrays["y"]
    _check_features(file, X, y)
    y, class_names = _npz_labels(file, y)

    meta: dict[str, Any] = {}
    raw = X.astype(np.uint8 if X.dtype == np.uint8 else np.float32, copy=False)
    if X.ndim == 2:
        X = raw if raw.dtype == np.float32 else raw.astype(np.float32)
        meta["features"] = [f"x{i}" for i in range(X.shape[1])]
    else:
        X, meta["pixel_range"] = _images_from_array(file, X, channels_last)
    # The loader's own rule (channel-first wins when both axes could be channels).
    last = arrays["X"].ndim == 4 and (arrays["X"].shape[1] not in (1, 3) if channels_last is None else channels_last)
    meta["raw_input"] = _npz_raw_input(file, arrays["X"], bool(last))
    source_record = {
        "npz": file, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
        "channels_last": channels_last,
    }  # fmt: skip
    return _finish(
        name or _stem(file), X, y, class_names, file=file, label_field="y", source=source_record,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, meta=meta, raw=raw,
    )  # fmt: skip


def _npz_raw_input(file: str, stored: np.ndarray, channels_last: bool) -> dict:
    """The exported model takes X as stored in the file (uint8 as uint8, other numbers as float32),
    and does the loader's transpose and scaling itself."""
    shape = [int(d) for d in stored.shape[1:]]
    dtype = "uint8" if stored.dtype == np.uint8 else "float32"
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(stored.dtype) if stored.ndim > 2 else None
    layout = "(N, H, W, C)" if channels_last else {2: "(N, features)", 3: "(N, H, W)", 4: "(N, C, H, W)"}[stored.ndim]
    return {
        "source": "npz", "file": file, "dtype": dtype, "shape": shape, "scale": scale,
        "layout": "NHWC" if channels_last else "reshape", "labels": "value", "n_rows": int(len(stored)),
        "description": (
            f"an NPZ whose array X is laid out as in `{file}`: {layout}, shape (N, {', '.join(map(str, shape))}), "
            f"{stored.dtype} values" + (f" (0-{scale:g}; the model divides by {scale:g})" if scale else "")
            + ("" if dtype == str(stored.dtype) else f", passed to the model as {dtype}")
        ),
    }  # fmt: skip

