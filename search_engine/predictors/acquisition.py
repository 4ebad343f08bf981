"""Acquisition functions over a predictor's (mean, std), for maximising the objective."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

ACQUISITIONS = ("ei", "ucb")


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """E[max(f - best - xi, 0)] under f ~ N(mean, std); the plain improvement where std is 0."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    gain = mean - best - xi
    safe = np.where(std > 0, std, 1.0)
    z = gain / safe
    ei = gain * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(std > 0, ei, np.maximum(gain, 0.0))


def upper_confidence_bound(mean: np.ndarray, std: np.ndarray, kappa: float = 1.0) -> np.ndarray:
    return np.asarray(mean, float) + kappa * np.asarray(std, float)


def acquire(name: str, mean: np.ndarray, std: np.ndarray, best: float, *, kappa: float, xi: float,
            scale: float = 1.0) -> np.ndarray:
    """`name` ("ei" or "ucb") per candidate; `scale` (the objectives' spread) puts xi in objective units."""
    if name == "ei":
        return expected_improvement(mean, std, best, xi * scale)
    if name == "ucb":
        return upper_confidence_bound(mean, std, kappa)
    raise ValueError(f"unknown acquisition {name!r} (known: {', '.join(ACQUISITIONS)})")
