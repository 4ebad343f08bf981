"""Figures for the model package on raw data: a short `digits` search through the CLI, then the
package in OUT/best/ run as a user would (python -I from the folder, load_digits().data saved as the
card says): the card's test accuracy, predict.py --rows test and the card's python block.

    python bench/bench_package.py [--trials 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from search_engine import cli


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="nas-package-")) / "run"
    start = time.perf_counter()
    code = cli.main(["run", "--dataset", "digits", "--space", "mlp", "--strategy", "random", "--trials",
                     str(args.trials), "--epochs", str(args.epochs), "--quiet", "--out", str(out)])  # fmt: skip
    if code != 0:
        sys.exit(code)
    folder = out / "best"
    d = load_digits()
    np.savez(folder / "digits.npz", X=d.data, y=d.target)
    card = (folder / "MODEL_CARD.md").read_text()
    card_acc = re.search(r"Test accuracy of the exported model .*: \*\*(.*?)\*\*", card).group(1)

    def outside(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-I", *argv], cwd=folder, capture_output=True, text=True)
        return (done.stdout + done.stderr).strip().splitlines()[-1]

    (folder / "card_snippet.py").write_text(re.search(r"```python\n(.*?)```", card, re.S).group(1))
    print(f"search + package: {time.perf_counter() - start:.1f}s, package in {folder}")
    print(f"card test accuracy:        {card_acc}")
    print(f"predict.py --rows test:    {outside('predict.py', 'digits.npz', '--rows', 'test')}")
    print(f"card's python block:       {outside('card_snippet.py')}")


if __name__ == "__main__":
    main()
