"""The `fixed` strategy: propose a given list of architectures in order.

This is how a one-shot job's top-k architectures are retrained as normal trials (the loop,
constraints, per-epoch reports and exports all stay the same); it equally serves a researcher
who wants to train a hand-picked list of cells. What happens once the list is used up is the
`then` option: "stop" (the strategy is finished) or "random" (random search fills the rest of
the trial budget; also what an empty list means, so the strategy is usable with no config).
"""

from __future__ import annotations

import json
from typing import Any

from ..registry import ConfigError, Option, register_strategy
from ..spaces.base import SearchSpace
from ..strategies.base import Strategy
from ..strategies.random_search import RandomSearch
from ..types import Architecture, Candidate, TrialRecord


def parse_arch(space: SearchSpace, value: Any, index: int) -> Architecture:
    """A mapping, a JSON-encoded mapping, or (nb201) a NAS-Bench-201 string -> a valid arch."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError("archs", f"entry {index}: not valid JSON ({exc})") from None
        elif hasattr(space, "from_string"):
            try:
                return space.from_string(text)
            except ConfigError as exc:
                raise ConfigError("archs", f"entry {index}: {exc.reason}") from None
        else:
            raise ConfigError("archs", f"entry {index}: space {space.name!r} needs a mapping, got {text!r}")
    try:
        return space.canonical(space.validate(value))
    except ConfigError as exc:
        raise ConfigError("archs", f"entry {index}: {exc.reason}") from None


@register_strategy("fixed")
class FixedList(Strategy):
    """Proposes the architectures of `archs` in order (skipping those already in the history)."""

    options = {
        "archs": Option(list, [], "architectures to train, in order: mappings or (nb201) "
                                  "NAS-Bench-201 strings; comma-separated on the command line"),
        "then": Option(str, "random", "once the list is used up: stop, or continue with random search",
                       choices=("stop", "random")),
    }

    def __init__(self, space: SearchSpace, seed: int = 0, **config: Any):
        super().__init__(space, seed=seed, **config)
        self.archs = [parse_arch(space, value, i) for i, value in enumerate(self.config["archs"])]
        # Stored canonically so state_dict() is JSON and rebuilds the same list.
        self.config["archs"] = [dict(a) for a in self.archs]
        self._filler = RandomSearch(space, seed=seed)

    def _remaining(self, seen: set[str]) -> list[Architecture]:
        out, listed = [], set()
        for arch in self.archs:
            fp = self.space.fingerprint(arch)
            if fp not in seen and fp not in listed:
                listed.add(fp)
                out.append(arch)
        return out

    def ask(self, history: list[TrialRecord], n: int = 1) -> list[Candidate]:
        seen = self.seen(history)
        listed = [Candidate(arch=dict(a), meta={"listed": True}) for a in self._remaining(seen)[:n]]
        if len(listed) == n or self.config["then"] == "stop":
            return listed
        # Random fill, told about the listed candidates just proposed so it never repeats them.
        pending = [TrialRecord(len(history) + i, c.arch, "queued") for i, c in enumerate(listed)]
        return listed + self._filler.ask([*history, *pending], n - len(listed))

    def is_finished(self, history: list[TrialRecord]) -> bool:
        return self.config["then"] == "stop" and not self._remaining(self.seen(history))
