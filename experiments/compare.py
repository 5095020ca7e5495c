"""Compare finished runs: ``python -m experiments.compare MULTIRUN_DIR [MULTIRUN_DIR ...]``.

Finds every run directory (a folder with ``summary.json`` and ``candidates.jsonl``) under
the given directories, groups runs by dataset and method, and writes ``comparison.md``
(also printed), ``comparison.csv``, ``best_so_far_<dataset>.png`` and
``archives_<dataset>.png`` into ``--out`` (default: ``FIRST_DIR/comparison``).

At each budget, a run reports the test accuracy of its best-by-validation architecture
among its first ``budget`` charged evaluations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmatic.analysis.comparison import DEFAULT_BASELINES, DEFAULT_BUDGETS, NoRunsError, compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="MULTIRUN_DIR",
        help="directories searched recursively for run directories",
    )
    parser.add_argument(
        "--budgets",
        nargs="+",
        type=int,
        default=list(DEFAULT_BUDGETS),
        help="charged-evaluation budgets to report at (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: FIRST_DIR/comparison)"
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        default=list(DEFAULT_BASELINES),
        help="methods the others are tested against (default: %(default)s)",
    )
    parser.add_argument(
        "--anchors",
        action="store_true",
        help="add published NAS-Bench-201 numbers (not ours) to the report",
    )
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="NAS-Bench-201 table for the evaluations-to-target section "
        "(default: each run's benchmark.table)",
    )
    parser.add_argument(
        "--settled",
        action="store_true",
        help="count a NAS-Bench-201 run shorter than a budget at that budget when it had "
        "already evaluated the table's best-validation architecture (marked 'settled')",
    )
    args = parser.parse_args(argv)
    try:
        result = compare(
            args.dirs,
            budgets=args.budgets,
            out=args.out,
            baselines=args.baselines,
            anchors=args.anchors,
            table=args.table,
            settled=args.settled,
        )
    except (NoRunsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.markdown)
    for path in result.files:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
