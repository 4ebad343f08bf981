from . import evolution, hyperband, random_search, reinforce, tpe, zc_prescreen  # noqa: F401  (registers)
from .base import Strategy

__all__ = ["Strategy"]
