"""The engine components an experiment names (space, strategy, estimator, one-shot method), each
through its registry: one table that the form, the registry endpoint and validation loop over,
so a one-shot method is listed, offered and checked like any other component."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rest_framework import serializers

from search_engine.oneshot import ONESHOT
from search_engine.registry import ESTIMATORS, SPACES, STRATEGIES, ConfigError, Registry, create_estimator
from search_engine.task import Task

from ...engine.tables import resolve_table
from ...models import Dataset


@dataclass(frozen=True)
class Component:
    kind: str  # the experiment field that names it
    registry: Registry
    listing: str  # its key in GET /api/registry/
    config_field: str  # where its options are stored, and where errors about them go
    hidden: tuple[str, ...] = ()  # options the page does not offer: the experiment or the worker decides

    def describe(self) -> dict:
        """The registry's description without the hidden options (what the page offers)."""
        described = self.registry.describe()
        for info in described.values():
            info["options"] = {k: o for k, o in info["options"].items() if k not in self.hidden}
        return described

    def options(self, name: str) -> dict:
        return {k: o for k, o in self.registry.get(name).options.items() if k not in self.hidden}

    def error(self, exc: ConfigError) -> dict:
        """A ConfigError as the response names it: an unknown name on the name field (`space`),
        an option on the config field (`space_config`: "option: reason"). A one-shot method's name
        and options share one field (`oneshot`), so its messages say which ("name: ...")."""
        if exc.field == self.registry.kind:
            if self.config_field == self.kind:
                return {self.kind: [f"name: {exc.reason}"]}
            return {self.kind: [exc.reason]}
        return {self.config_field: [f"{exc.field}: {exc.reason}"]}


COMPONENTS = {
    "space": Component("space", SPACES, "spaces", "space_config"),
    "strategy": Component("strategy", STRATEGIES, "strategies", "strategy_config"),
    "estimator": Component("estimator", ESTIMATORS, "estimators", "estimator_config"),
    # {"name", "config"} in one field; the device is the experiment's, torch threads the worker's.
    "oneshot": Component("oneshot", ONESHOT, "oneshot", "oneshot", hidden=("device", "threads")),
}
# The components stored as a name column plus a `<kind>_config` column.
COLUMN_KINDS = ("space", "strategy", "estimator")


def create_tabular_aware_estimator(name: str, config: dict):
    """create_estimator, with the `tabular` estimator's table given by name: it must be one of the
    CSV files in TABULAR_BENCHMARK_DIR (never a path of the person's choosing), and is stored by name."""
    if name != "tabular":
        return create_estimator(name, **config)
    table = config.get("path", "")
    estimator = create_estimator(name, **{**config, "path": str(resolve_table(table))})
    estimator.config["path"] = table
    return estimator


def _placeholder_task(dataset: Dataset) -> Task:
    """A Task with the dataset's shape and no rows: enough for a space to build a network."""
    empty = torch.zeros((0, *dataset.input_shape))
    labels = torch.zeros(0, dtype=torch.long)
    return Task(dataset.name, empty, labels, empty, labels, empty, labels, tuple(dataset.input_shape),
                max(dataset.num_classes, 2))  # fmt: skip


def check_space_fits(space, dataset: Dataset) -> None:
    """Build one network of the space for the dataset's shape (on the meta device: no memory, no
    initialisation, milliseconds even for large spaces), so a space that needs images refuses
    tabular data now rather than in every trial."""
    if not dataset.input_shape:
        return
    arch, task = space.sample(np.random.default_rng(0)), _placeholder_task(dataset)
    try:
        try:
            with torch.device("meta"):
                space.build(arch, task)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001  (something in the builder needs real tensors)
            space.build(arch, task)
    except ConfigError as exc:
        raise serializers.ValidationError({"space": [exc.reason]}) from None
    except Exception as exc:  # noqa: BLE001  (a person gets the reason, not a 500)
        raise serializers.ValidationError(
            {"space": [f"{space.name} can not build a network for {dataset.name!r}: {exc}"]}
        ) from None
