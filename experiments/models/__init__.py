"""Projects, datasets, experiments and trials. Domain verbs live here; views and actors call them.

Every queryset that reaches a user goes through `for_user(user)`, which scopes by membership.
The models live in one module per part and are all importable from here.
"""

from ..choices import ActivityVerb
from .activity import ActivityLog, Comment
from .artifacts import Artifact, artifact_upload_path
from .datasets import Dataset, dataset_upload_path
from .projects import (
    AlreadyMember,
    LastOwner,
    Membership,
    MembershipError,
    NoSuchUser,
    Project,
    StateError,
    find_user,
)
from .runs import Experiment, ExperimentProgress, Trial, TrialMetric, budget_spent_q

__all__ = [
    "ActivityLog", "ActivityVerb", "AlreadyMember", "Artifact", "Comment", "Dataset", "Experiment",
    "ExperimentProgress", "LastOwner", "Membership", "MembershipError", "NoSuchUser", "Project", "StateError",
    "Trial", "TrialMetric", "artifact_upload_path", "budget_spent_q", "dataset_upload_path", "find_user",
]  # fmt: skip
