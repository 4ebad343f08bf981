"""Performance predictors: learn the objective from trained trials, with cheap scores as features.

    from search_engine.predictors import Predictor, ArchFeatures, rank_correlation
"""

from .acquisition import ACQUISITIONS, acquire, expected_improvement, upper_confidence_bound
from .features import FEATURE_PROXIES, ArchFeatures, signed_log
from .model import Predictor, RankCorrelation, rank_correlation, scored_points

__all__ = [
    "ACQUISITIONS", "FEATURE_PROXIES", "ArchFeatures", "Predictor", "RankCorrelation", "acquire",
    "expected_improvement", "rank_correlation", "scored_points", "signed_log", "upper_confidence_bound",
]
