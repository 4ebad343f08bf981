from . import training  # noqa: F401  (registers the estimators)
from .base import Estimator

__all__ = ["Estimator"]
