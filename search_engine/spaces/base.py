"""The SearchSpace interface. A space owns its operators (as in NASLib).

Most spaces here are products of categorical choices, some of them conditional (an MLP's
`width_3` only matters when `depth >= 3`). The base class implements sample / mutate /
neighbors / encode / fingerprint / cardinality over `choices()` and `active(arch)`; a space
only has to declare its choices and build a network.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from torch import nn

from ..registry import ConfigError, Option, resolve_options
from ..task import Task
from ..types import Architecture


class SearchSpace(ABC):
    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **config: Any):
        self.config = resolve_options(f"space {self.name!r}", self.options, config)

    # -- what a subclass declares ------------------------------------------------------
    @abstractmethod
    def choices(self) -> dict[str, list]:
        """Ordered label -> list of allowed values (JSON scalars)."""

    def active(self, arch: Architecture) -> list[str]:
        """Labels that influence the network for `arch` (all of them unless conditional)."""
        return list(self.choices())

    @abstractmethod
    def build(self, arch: Architecture, task: Task) -> nn.Module:
        """A fresh, untrained network for `task` (raises ConfigError if the task does not fit)."""

    # -- operators shared by every space -----------------------------------------------
    def validate(self, arch: Architecture) -> Architecture:
        """Check `arch` against the choices; returns a copy with labels in canonical order."""
        if not isinstance(arch, dict):
            raise ConfigError("architecture", "must be a mapping of choice label to value")
        choices = self.choices()
        unknown = sorted(set(arch) - set(choices))
        if unknown:
            raise ConfigError("architecture", f"unknown choice {unknown[0]!r} for space {self.name!r}")
        out = {}
        for label, values in choices.items():
            if label not in arch:
                raise ConfigError("architecture", f"missing choice {label!r}")
            if arch[label] not in values:
                raise ConfigError("architecture", f"{label}={arch[label]!r} is not one of {values}")
            out[label] = arch[label]
        return out

    def canonical(self, arch: Architecture) -> Architecture:
        """Inactive choices reset to their first value, so equal networks compare equal."""
        choices = self.choices()
        active = set(self.active(arch))
        return {k: (v if k in active else choices[k][0]) for k, v in arch.items()}

    def sample(self, rng: np.random.Generator) -> Architecture:
        arch = {label: values[int(rng.integers(len(values)))] for label, values in self.choices().items()}
        return self.canonical(arch)

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Change one active choice to a different value."""
        choices = self.choices()
        labels = [label for label in self.active(arch) if len(choices[label]) > 1]
        label = labels[int(rng.integers(len(labels)))]
        others = [v for v in choices[label] if v != arch[label]]
        child = dict(arch)
        child[label] = others[int(rng.integers(len(others)))]
        return self.canonical(child)

    def neighbors(self, arch: Architecture) -> list[Architecture]:
        """Every architecture one active choice away, deduplicated, in a fixed order."""
        choices = self.choices()
        seen = {self.fingerprint(arch)}
        out = []
        for label in self.active(arch):
            for value in choices[label]:
                if value == arch[label]:
                    continue
                child = self.canonical({**arch, label: value})
                fp = self.fingerprint(child)
                if fp not in seen:
                    seen.add(fp)
                    out.append(child)
        return out

    def encode(self, arch: Architecture) -> np.ndarray:
        """One-hot per choice (inactive choices all zero), for surrogates and predictors."""
        active = set(self.active(arch))
        parts = []
        for label, values in self.choices().items():
            vec = np.zeros(len(values), dtype=np.float32)
            if label in active:
                vec[values.index(arch[label])] = 1.0
            parts.append(vec)
        return np.concatenate(parts)

    def fingerprint(self, arch: Architecture) -> str:
        canon = self.canonical(arch)
        payload = json.dumps({k: canon[k] for k in sorted(canon)}, sort_keys=True)
        return hashlib.sha1(f"{self.name}:{payload}".encode()).hexdigest()[:16]

    def cardinality(self) -> int:
        """Number of distinct networks (distinct canonical architectures)."""
        return len({self.fingerprint(a) for a in self.enumerate()})

    def enumerate(self):
        """Every canonical architecture (only sensible for small spaces, e.g. grid search)."""
        choices = self.choices()
        seen = set()
        for values in itertools.product(*choices.values()):
            arch = self.canonical(dict(zip(choices, values)))
            fp = self.fingerprint(arch)
            if fp not in seen:
                seen.add(fp)
                yield arch

    def describe(self, arch: Architecture) -> str:
        """A short human-readable form of `arch` for tables and logs."""
        return ",".join(f"{k}={arch[k]}" for k in self.active(arch))
