"""`run --oneshot METHOD`: train a one-shot job first; its top architectures become the trials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..oneshot import OneShotJob, OneShotResult, fixed_strategy_config
from ..registry import create_oneshot, create_strategy
from ..strategies.base import Strategy
from ..task import Task
from .options import parse_key_values
from .output import oneshot_line


def run_oneshot(
    args, space, task: Task, out: Path, say: Callable[..., None]
) -> tuple[OneShotJob, OneShotResult, Strategy]:
    """Run (or resume from OUT/oneshot/) the job and return it, its result and the `fixed`
    strategy that retrains its top architectures."""
    job = create_oneshot(args.oneshot, space, seed=args.seed, **parse_key_values("oneshot-opt", args.oneshot_opt))
    say(f"one-shot {args.oneshot}: training on {task.name}, checkpoints in {out / 'oneshot'}")
    result = job.run(
        task, report_progress=lambda step, values: say(oneshot_line(step, values)),
        checkpoint_dir=out / "oneshot", resume=not args.fresh,
    )
    say(f"one-shot {args.oneshot}: {result.stopped_because} after {result.cost_s:.1f}s; "
        f"retraining its top {len(result.top_archs)} architectures")
    # The job's top architectures become the trials: training, constraints, export and the
    # Pareto front then work exactly as for any other search.
    strategy = create_strategy("fixed", space, seed=args.seed, **fixed_strategy_config(result, space))
    return job, result, strategy
