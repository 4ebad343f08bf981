from . import (  # noqa: F401  (registers)
    evolution,
    hyperband,
    predictor,  # noqa: F401  (registers)
    random_search,
    reinforce,
    tpe,
    zc_prescreen,
)
from .base import Strategy

__all__ = ["Strategy"]
