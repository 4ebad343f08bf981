"""`python -m search_engine list [--json]`: every registered component with its options."""

from __future__ import annotations

import json

from .. import data
from ..registry import CATALOGUE
from .output import json_default


def catalogue() -> dict:
    return {**{section: registry.describe() for section, registry in CATALOGUE.items()},
            "datasets": builtin_datasets()}


def builtin_datasets() -> dict[str, str]:
    return dict(sorted(data.BUILTIN_DATASETS.items()))


def cmd_list(args) -> int:
    cat = catalogue()
    if args.json:
        print(json.dumps(cat, indent=2, default=json_default))
        return 0
    for section in CATALOGUE:
        print(f"{section}:")
        for name, entry in cat[section].items():
            print(f"  {name}" + (f"  - {entry['help']}" if entry["help"] else ""))
            for opt_name, opt in entry["options"].items():
                extras = []
                if opt.get("choices") is not None:
                    extras.append("choices: " + ", ".join(map(str, opt["choices"])))
                if opt.get("min") is not None:
                    extras.append(f"min {opt['min']:g}")
                if opt.get("max") is not None:
                    extras.append(f"max {opt['max']:g}")
                line = f"      {opt_name} ({opt['type']}, default {opt['default']!r})"
                if opt.get("help"):
                    line += f": {opt['help']}"
                if extras:
                    line += f" [{'; '.join(extras)}]"
                print(line)
        print()
    print("datasets (built in):")
    for name, help_text in cat["datasets"].items():
        print(f"  {name}" + (f"  - {help_text}" if help_text else ""))
    return 0

