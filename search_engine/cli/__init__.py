"""Command line: `python -m search_engine run ...` and `python -m search_engine list`.

    python -m search_engine run --dataset digits --space nb201 --strategy evolution \
        --estimator train --trials 20 --epochs 3 --max-params 100000 --seed 0 --out runs/demo
    python -m search_engine list [--json]

Bad input (an unknown option, a value of the wrong type, an unreadable file) exits with
status 2 and a "field: reason" line on stderr, never a traceback.

Layout: `main` (parser, dispatch), `options` (arguments -> configs), `run` (the search, export
and results.json), `oneshot` (`run --oneshot`), `listing` (`list`), `output` (bar, lines, tables).
"""

from .main import build_parser, main
from .options import parse_key_values

__all__ = ["build_parser", "main", "parse_key_values"]
