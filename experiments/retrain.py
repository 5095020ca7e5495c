"""Retrain a run's best networks longer, over seeds, and report test accuracy.

    python -m experiments.retrain RUN_DIR [--top 5] [--seeds 0 1 2] [--epochs E] [--device cuda]

Writes ``RUN_DIR/retrain/retrain.{md,csv,png}`` (see :mod:`llmatic.analysis.retrain`) and
prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmatic.analysis.retrain import retrain_run
from llmatic.errors import ConfigError
from llmatic.sandbox import SandboxSetupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=5, help="networks, best validation first")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=None, help="default: 3x the run's")
    parser.add_argument("--device", default=None, help="default: the run's benchmark.device")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/retrain")
    args = parser.parse_args(argv)
    for name in ("config.yaml", "candidates.jsonl"):
        if not (args.run_dir / name).is_file():
            print(f"error: {args.run_dir} has no {name}: pass a run directory", file=sys.stderr)
            return 2
    try:
        retrain_run(
            args.run_dir,
            top=args.top,
            seeds=tuple(args.seeds),
            epochs=args.epochs,
            device=args.device,
            out_dir=args.out,
        )
    except (ConfigError, SandboxSetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / "retrain"
    print((out / "retrain.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
