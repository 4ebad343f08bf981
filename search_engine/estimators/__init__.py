from . import tabular, training, zero_cost  # noqa: F401  (registers the estimators)
from .base import Estimator

__all__ = ["Estimator"]
