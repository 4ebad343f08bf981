"""Benchmark tables for the `tabular` estimator: CSV files in settings.TABULAR_BENCHMARK_DIR.

The estimator reads a CSV from a path on the server. A person must never be able to point it at
an arbitrary file there, so the web side stores only a table's file name, lists the choices from
the folder, and resolves a name to a path here (the form, the serializer and engine.build all
call `resolve_table`): a name with a folder in it, a hidden file, anything that is not a .csv,
and anything whose real path (symlinks followed) leaves the folder is refused.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from search_engine.registry import ConfigError

TABLE_SUFFIX = ".csv"


def benchmark_dir() -> Path:
    return Path(settings.TABULAR_BENCHMARK_DIR).resolve()


def list_tables() -> list[str]:
    """File names of the CSV tables a person may pick, sorted."""
    folder = benchmark_dir()
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if _problem(folder, path.name) is None)


def resolve_table(name) -> Path:
    """The path of table `name` in the benchmark folder; ConfigError("path", ...) otherwise."""
    folder = benchmark_dir()
    problem = _problem(folder, name)
    if problem is not None:
        tables = list_tables()
        hint = (f"tables: {', '.join(tables)}" if tables
                else "no tables yet (an administrator puts CSV files in TABULAR_BENCHMARK_DIR)")
        raise ConfigError("path", f"{problem}; {hint}")
    return (folder / name).resolve()


def _problem(folder: Path, name) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "pick a benchmark table"
    if name != Path(name).name or name in (".", "..") or "\\" in name or "\x00" in name:
        return f"{name!r} is not a table name (give the file name only)"
    if name.startswith(".") or not name.lower().endswith(TABLE_SUFFIX):
        return f"{name!r} is not a {TABLE_SUFFIX} table"
    path = (folder / name).resolve()
    if path.parent != folder:
        return f"{name!r} is not in the benchmark folder"
    if not path.is_file():
        return f"no table called {name!r}"
    return None
