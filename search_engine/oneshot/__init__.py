"""One-shot NAS: a weight-sharing supernet and DARTS, each run as one resumable job.

    from search_engine.oneshot import create_oneshot
    job = create_oneshot("darts", create_space("nb201", C=8), seed=0, epochs=10)
    result = job.run(task, report_progress=print, checkpoint_dir="runs/darts-ckpt")

The methods register in `search_engine.registry.ONESHOT`, next to the spaces, strategies and
estimators (re-exported here with `create_oneshot`); the `fixed` strategy, registered here, retrains
a job's top architectures as normal trials.
"""

from ..registry import ONESHOT, create_oneshot, register_oneshot
from . import darts, fixed_strategy, supernet  # noqa: F401  (fills the registries)
from .darts import DartsJob, alpha_table, most_likely_cells
from .fixed_strategy import FixedList
from .job import (
    CheckpointError,
    OneShotJob,
    OneShotResult,
    fixed_strategy_config,
    load_checkpoint,
    load_progress,
)
from .supernet import NB201SuperNet, SupernetJob, inherited_accuracy, recalibrate_bn

__all__ = [
    "ONESHOT", "CheckpointError", "DartsJob", "FixedList", "NB201SuperNet", "OneShotJob", "OneShotResult",
    "SupernetJob", "alpha_table", "create_oneshot", "fixed_strategy_config", "inherited_accuracy",
    "load_checkpoint", "load_progress", "most_likely_cells", "recalibrate_bn", "register_oneshot",
]
