"""Runs every benchmark in ``benchmarks/``, one after the other, with this interpreter.

``python -m benchmarks.run_all`` runs ``sandbox_overhead`` (~1 min), ``edit_quality``
(~10 min on 2 CPU cores), ``freeform_edit_quality`` (~5 min), ``soak`` (~1 min; needs the
NB201 table), ``llm_throughput`` (~8 min) and ``trainer_throughput`` (~6 min);
``cuda_sandbox_check`` says "no CUDA here" without a GPU. ``--all`` adds
``cell_prompt_validity`` (~25 min) and ``nb201_speed`` (one 2,000-evaluation NB201 search,
~40-60 min). ``--only NAME ...`` picks benchmarks by name. Each
writes its figures to ``benchmarks/results/``; this prints which ran, how long each took
and which result files they (re)wrote. ``make bench`` calls it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

#: name -> (command after the interpreter, only with --all)
BENCHMARKS: dict[str, tuple[list[str], bool]] = {
    # sandbox_overhead preloads itself in the sandbox's zygote by its module name: run it
    # as a script, as its docstring says (so is cell_prompt_validity).
    "sandbox_overhead": ([str(HERE / "sandbox_overhead.py")], False),
    "edit_quality": (["-m", "benchmarks.edit_quality"], False),
    "freeform_edit_quality": (["-m", "benchmarks.freeform_edit_quality"], False),
    "cuda_sandbox_check": (["-m", "benchmarks.cuda_sandbox_check"], False),
    "trainer_throughput": (["-m", "benchmarks.trainer_throughput"], False),
    "soak": (["-m", "benchmarks.soak"], False),
    "llm_throughput": (["-m", "benchmarks.llm_throughput"], False),
    "cell_prompt_validity": ([str(HERE / "cell_prompt_validity.py")], True),
    "nb201_speed": (["-m", "benchmarks.nb201_speed"], True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--all", action="store_true", help="also the slow ones (cell_prompt_validity, nb201_speed)"
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    names = args.only or [name for name, (_, slow) in BENCHMARKS.items() if args.all or not slow]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    failed = []
    for name in names:
        command = [sys.executable, *BENCHMARKS[name][0]]
        print(f"=== {name}: {' '.join(command)}", flush=True)
        start = time.time()
        rc = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
        written = sorted(
            str(p.relative_to(ROOT))
            for p in RESULTS.glob(f"{name}.*")
            if p.stat().st_mtime >= start
        )
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(
            f"=== {name}: {status} in {time.time() - start:.0f} s; "
            f"results: {', '.join(written) or 'none written'}",
            flush=True,
        )
        if rc != 0:
            failed.append(name)
    skipped = [n for n, (_, slow) in BENCHMARKS.items() if n not in names and slow]
    if skipped and not args.only:
        print(f"skipped (need --all): {', '.join(skipped)}")
    print(f"ran {', '.join(names)}; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
