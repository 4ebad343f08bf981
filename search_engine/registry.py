"""Name -> class registries for spaces, strategies, estimators and one-shot methods (as in timm's
registry): one mechanism for every component.

The database and the CLI store only a registered name plus a JSON config; forms and
`python -m search_engine list` read the choices and their options from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration value; `field` names the option a person has to fix."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Option:
    """One configurable option of a registered component, with its validation rules."""

    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    def coerce(self, name: str, value: Any) -> Any:
        if value is None:
            return self.default
        try:
            if self.type is bool:
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                        raise ValueError(value)
                    value = lowered in {"true", "1", "yes"}
                elif not isinstance(value, (bool, int)):
                    raise ValueError(value)
                value = bool(value)
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                value = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError(value)
                value = float(value)
            elif self.type is str:
                value = str(value)
            elif self.type is list:
                if isinstance(value, str):
                    value = [v.strip() for v in value.split(",") if v.strip()]
                value = list(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"expected {self.type.__name__}, got {value!r}") from None
        if self.choices is not None:
            values = value if self.type is list else [value]
            for v in values:
                if v not in self.choices:
                    allowed = ", ".join(map(str, self.choices))
                    raise ConfigError(name, f"{v!r} is not one of: {allowed}")
        if self.min is not None and value < self.min:
            raise ConfigError(name, f"must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ConfigError(name, f"must be <= {self.max}, got {value}")
        return value

    def describe(self) -> dict:
        d = asdict(self)
        d["type"] = self.type.__name__
        return d


def resolve_options(owner: str, schema: dict[str, Option], config: dict | None) -> dict:
    """Validate `config` against `schema`: unknown keys and bad values raise ConfigError."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(schema))
    if unknown:
        known = ", ".join(sorted(schema)) or "none"
        raise ConfigError(unknown[0], f"unknown option for {owner} (known: {known})")
    return {name: opt.coerce(name, config.get(name)) for name, opt in schema.items()}


# Numeric options a component leaves unbounded get these maxima, by name (an option name means
# the same thing in every component): without them `epochs: 1e9` or `batch_size: 2**62` would be
# accepted and run for ever. A component's own `max` wins. A contract test checks that every
# numeric option of every registered component has a maximum.
DEFAULT_MAXIMA: dict[str, float] = {
    "epochs": 10_000,
    "batch_size": 65_536,
    "patience": 10_000,
    "threads": 256,
    "batch_seed": 2**31 - 1,
    "population_size": 10_000,
    "sample_size": 10_000,
    "lr": 10.0,
    "lr_min": 10.0,
    "arch_lr": 10.0,
    "weight_decay": 1.0,
    "arch_weight_decay": 1.0,
    "grad_clip": 1_000.0,
}


def bounded(name: str, option: Option) -> Option:
    """`option` with the default maximum for its name where it declares none."""
    if option.max is None and option.type in (int, float) and name in DEFAULT_MAXIMA:
        return replace(option, max=option.type(DEFAULT_MAXIMA[name]))
    return option


@dataclass
class Registry:
    kind: str
    entries: dict[str, type] = field(default_factory=dict)

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            if hasattr(cls, "options"):
                cls.options = {k: bounded(k, o) for k, o in cls.options.items()}
            self.entries[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise ConfigError(self.kind, f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self.entries)

    def describe(self) -> dict[str, dict]:
        """Name -> {help, options} for forms and the CLI's `list`."""
        out = {}
        for name in self.names():
            cls = self.entries[name]
            doc = (cls.__doc__ or "").strip().splitlines()
            out[name] = {
                "help": doc[0] if doc else "",
                "options": {k: o.describe() for k, o in getattr(cls, "options", {}).items()},
            }
        return out


SPACES = Registry("space")
STRATEGIES = Registry("strategy")
ESTIMATORS = Registry("estimator")
ONESHOT = Registry("one-shot method")
# Section -> registry, in the order listings show them (`python -m search_engine list`, forms).
CATALOGUE: dict[str, Registry] = {
    "spaces": SPACES, "strategies": STRATEGIES, "estimators": ESTIMATORS, "oneshot": ONESHOT,
}

register_space = SPACES.register
register_strategy = STRATEGIES.register
register_estimator = ESTIMATORS.register
register_oneshot = ONESHOT.register


def create_space(name: str, **config):
    return SPACES.get(name)(**config)


def create_strategy(name: str, space, seed: int = 0, **config):
    return STRATEGIES.get(name)(space, seed=seed, **config)


def create_estimator(name: str, **config):
    return ESTIMATORS.get(name)(**config)


def create_oneshot(name: str, space, seed: int = 0, **config):
    return ONESHOT.get(name)(space, seed=seed, **config)
