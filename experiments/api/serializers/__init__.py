"""Serializers: explicit fields, and every search option checked against the engine's registries.

    common       bounds, user-scoped relations, DetailSerializer
    components   the registries an experiment names components from (COMPONENTS), and their checks
    projects     projects and members
    datasets     built-ins, uploads and previews
    experiments  experiments, constraints, and what a clone copies (clone_config)
    trials       trials, points, artifacts, and the documented snapshot and registry shapes
"""

from .common import (
    DEVICES,
    MAX_BUDGET_TRIALS,
    MAX_BUDGET_WALL_TIME_S,
    MAX_DESCRIPTION_LENGTH,
    MAX_PARALLELISM,
    DetailSerializer,
    UserDatasetField,
    UserProjectField,
    UserScopedField,
)
from .components import COLUMN_KINDS, COMPONENTS, Component, check_space_fits
from .datasets import DatasetPreviewResponseSerializer, DatasetPreviewSerializer, DatasetSerializer
from .experiments import BestTrialSerializer, ConstraintsField, ExperimentSerializer, clone_config
from .projects import MemberSerializer, ProjectSerializer
from .trials import (
    ArtifactSerializer,
    PointSerializer,
    RegistrySerializer,
    SnapshotSerializer,
    TrialDetailSerializer,
    TrialSerializer,
)

__all__ = [
    "COLUMN_KINDS", "COMPONENTS", "DEVICES", "MAX_BUDGET_TRIALS", "MAX_BUDGET_WALL_TIME_S",
    "MAX_DESCRIPTION_LENGTH", "MAX_PARALLELISM", "ArtifactSerializer",
    "BestTrialSerializer", "Component", "ConstraintsField", "DatasetPreviewResponseSerializer",
    "DatasetPreviewSerializer", "DatasetSerializer", "DetailSerializer", "ExperimentSerializer", "MemberSerializer",
    "PointSerializer", "ProjectSerializer", "RegistrySerializer", "SnapshotSerializer", "TrialDetailSerializer",
    "TrialSerializer", "UserDatasetField", "UserProjectField", "UserScopedField", "check_space_fits", "clone_config",
]  # fmt: skip
