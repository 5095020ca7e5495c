"""Redraw the plots of a run: ``python -m experiments.plot RUN_DIR [RUN_DIR ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmatic.analysis.plotting import plot_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, help="run directories (Hydra output dirs)"
    )
    args = parser.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        if not (run_dir / "metrics.csv").exists():
            print(
                f"{run_dir}: not a run directory (no metrics.csv); pass a Hydra output dir",
                file=sys.stderr,
            )
            status = 1
            continue
        for path in plot_run(run_dir):
            print(path)
    return status


if __name__ == "__main__":
    sys.exit(main())
