"""Device choice, determinism and thread control for trials."""

from __future__ import annotations

import contextlib
import hashlib

import torch

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str = "cpu") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from .registry import ConfigError

        raise ConfigError("device", "cuda was requested but no CUDA device is available")
    if name not in DEVICES:
        from .registry import ConfigError

        raise ConfigError("device", f"{name!r} is not one of {', '.join(DEVICES)}")
    return torch.device(name)


def derive_seed(*parts) -> int:
    """A stable 31-bit seed from any printable parts (e.g. search seed + architecture fingerprint)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: int, threads: int | None = None):
    """Run a block with torch's RNG seeded and restored afterwards (no global RNG leaks)."""
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if threads:
                torch.set_num_threads(previous_threads)
