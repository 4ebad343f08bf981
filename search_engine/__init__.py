"""NAS Studio's search engine: search spaces, strategies and estimators, usable on their own.

    from search_engine import load_builtin, create_space, create_strategy, create_estimator, run_search
"""

from . import estimators, oneshot, spaces, strategies  # noqa: F401  (fills the registries)
from .constraints import Constraints, count_flops, count_params, measure_latency_ms, model_size_mb
from .data import BUILTIN_DATASETS, DatasetError, load_builtin, load_dataset
from .estimators.base import Estimator
from .export import export_model, load_model
from .loop import Callbacks, Outcome, SearchResult, run_search
from .pareto import pareto_front
from .registry import (
    ESTIMATORS,
    ONESHOT,
    SPACES,
    STRATEGIES,
    ConfigError,
    Option,
    create_estimator,
    create_oneshot,
    create_space,
    create_strategy,
    register_estimator,
    register_oneshot,
    register_space,
    register_strategy,
)
from .spaces.base import SearchSpace
from .strategies.base import Strategy
from .task import Task, make_task
from .types import Architecture, Budget, Candidate, Result, TrialPruned, TrialRecord

__all__ = [
    "BUILTIN_DATASETS", "DatasetError", "load_builtin", "load_dataset",
    "Callbacks", "Outcome", "SearchResult", "run_search", "pareto_front", "export_model", "load_model",
    "ONESHOT", "create_oneshot", "register_oneshot",
    "Architecture", "Budget", "Candidate", "ConfigError", "Constraints", "ESTIMATORS", "Estimator",
    "Option", "Result", "SPACES", "STRATEGIES", "SearchSpace", "Strategy", "Task", "TrialPruned",
    "TrialRecord", "count_flops", "count_params", "create_estimator", "create_space",
    "create_strategy", "make_task", "measure_latency_ms", "model_size_mb", "register_estimator",
    "register_space", "register_strategy",
]
