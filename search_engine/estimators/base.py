"""The Estimator interface: how good is an architecture?"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import nn

from ..registry import Option, resolve_options
from ..task import Task
from ..types import Architecture, ReportFn, Result


class Estimator(ABC):
    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    trains_model: ClassVar[bool] = True  # False for proxies / lookups: nothing to export
    needs_model: ClassVar[bool] = True  # False for lookups: no network is built unless a constraint needs it

    def __init__(self, **config: Any):
        self.config = resolve_options(f"estimator {self.name!r}", self.options, config)

    @abstractmethod
    def estimate(
        self,
        arch: Architecture,
        model: nn.Module,
        task: Task,
        budget: dict[str, Any],
        report: ReportFn,
    ) -> Result:
        """Score `model` (built from `arch`) on `task`; `budget` may override epochs etc.

        Calls `report(step, metrics)` as it goes; raising TrialPruned from it stops early.
        """
