"""Command-line arguments turned into the configs the registries and data loaders take."""

from __future__ import annotations

from typing import Any

from ..registry import ESTIMATORS, ConfigError


def parse_key_values(flag: str, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def dataset_spec(args) -> dict:
    """The spec data.load_dataset shares with the web side: {"builtin": name} or a file plus options."""
    sources = [flag for flag in ("dataset", "csv", "npz", "zip") if getattr(args, flag) is not None]
    if len(sources) != 1:
        raise ConfigError("dataset", "give exactly one of --dataset, --csv, --npz, --zip")
    if args.target is not None and args.csv is None:
        raise ConfigError("target", "--target only applies to --csv")
    if args.image_size is not None and args.zip is None:
        raise ConfigError("image_size", "--image-size only applies to --zip")
    if args.dataset is not None:
        return {"builtin": args.dataset, "seed": args.seed}
    if args.csv is not None:
        if not args.target:
            raise ConfigError("target", "--csv needs --target COLUMN")
        return {"csv": str(args.csv), "target": args.target, "seed": args.seed}
    if args.npz is not None:
        return {"npz": str(args.npz), "seed": args.seed}
    extra = {"image_size": args.image_size} if args.image_size is not None else {}
    return {"zip": str(args.zip), "seed": args.seed, **extra}


def estimator_config(args) -> dict:
    config: dict[str, Any] = parse_key_values("estimator-opt", args.estimator_opt)
    schema = ESTIMATORS.get(args.estimator).options
    for key, value in (("epochs", args.epochs), ("device", args.device), ("threads", args.threads)):
        if value is None or (key == "device" and key not in schema and value != "cuda"):
            continue  # an estimator without a device option runs on the CPU; only cuda needs one
        if key not in schema:
            raise ConfigError(key, f"estimator {args.estimator!r} has no {key!r} option")
        if key in config and str(config[key]) != str(value):
            raise ConfigError(key, f"given both as --{key} and --estimator-opt {key}=")
        config[key] = value
    return config


def positive(name: str, value, kind=float):
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise ConfigError(name, f"must be > 0, got {value!r}")
    return kind(value) if value is not None else None

