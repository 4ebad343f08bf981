"""`load_dataset(spec)`: the one entry point the CLI and the web side share."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..task import Task
from .builtin import load_builtin
from .common import DatasetError
from .images import load_image_zip
from .npz import load_npz
from .tabular import load_csv

_LOADERS = {"builtin": load_builtin, "csv": load_csv, "npz": load_npz, "zip": load_image_zip}


def load_dataset(spec: Mapping[str, Any]) -> Task:
    """Load from a spec shared by the CLI and the web side: exactly one of
    {"builtin": name}, {"csv": path, "target": column}, {"npz": path}, {"zip": path}, plus that
    loader's keyword options (seed, val_fraction, image_size, ...). Unknown options are refused."""
    if not isinstance(spec, Mapping):
        raise DatasetError(
            None, "dataset", f"expected a mapping like {{'builtin': 'digits'}}, got {type(spec).__name__}"
        )
    kinds = [kind for kind in _LOADERS if kind in spec]
    if len(kinds) != 1:
        given = ", ".join(kinds) if kinds else "none"
        raise DatasetError(None, "dataset", f"give exactly one of {', '.join(_LOADERS)} (got {given})")
    kind = kinds[0]
    loader = _LOADERS[kind]
    params = list(inspect.signature(loader).parameters.values())[1:]
    options = {key: value for key, value in spec.items() if key != kind}
    known = {p.name for p in params}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DatasetError(
            None, unknown[0], f"unknown option for {kind} datasets (known: {', '.join(sorted(known))})"
        )
    for p in params:
        if p.default is inspect.Parameter.empty and p.name not in options:
            raise DatasetError(None, p.name, f"required for {kind} datasets")
    return loader(spec[kind], **options)
