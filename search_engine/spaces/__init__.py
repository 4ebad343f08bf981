from . import mlp, mobilenet, nb201  # noqa: F401  (registers the spaces)
from .base import SearchSpace

__all__ = ["SearchSpace"]
