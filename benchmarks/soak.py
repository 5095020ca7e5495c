"""Soak: 1,000 candidates through the real search loop; what the search process keeps.

Runs the LLMatic search in this process with the scripted fake LLM (``llm=scripted``: no
model, deterministic completions) on the NAS-Bench-201 table (look-ups, no training), with
the real sandbox, evaluator, archives, recorder and a checkpoint after every iteration,
until 1,000 candidates. Reports:

* the search process's memory: peak RSS (``VmHWM`` in ``/proc/self/status``, and
  ``ru_maxrss``) and current RSS (``VmRSS``), after start-up, at 100 and at 1,000
  candidates;
* the checkpoint: its size, and the time to serialise and write it (fsync included), at 100
  and at 1,000 candidates, and what all checkpoints cost the run;
* after the run (sandbox closed): child processes of this process left behind, and
  the sandbox's working dirs left in the private ``TMPDIR`` it made them in (other
  entries, such as torch's own cache dir, are listed by name).

``python -m benchmarks.soak [--candidates 1000] [--table PATH]``; the figures go to
``benchmarks/results/soak.json`` and ``soak.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TABLE = ROOT.parent / "shared/data/nasbench201/nb201.csv"


def memory() -> dict[str, float]:
    """This process's RSS now and at its peak, in MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    kib = {name: int(status[name].split()[0]) for name in ("VmRSS", "VmHWM")}
    return {
        "rss_mib": kib["VmRSS"] / 1024,
        "peak_rss_mib": kib["VmHWM"] / 1024,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def direct_children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def is_zygote(pid: int) -> bool:
    """Whether ``pid`` is (still) a live sandbox zygote."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and b"llmatic.sandbox._zygote" in cmdline


def checkpoint_cost(path: Path) -> dict[str, float]:
    """Size of the checkpoint at ``path``, and the time to serialise and write it again."""
    from llmatic.checkpoint import dumps, load
    from llmatic.recording import atomic_write_bytes

    start = time.perf_counter()
    state = load(path)
    loaded = time.perf_counter()
    data = dumps(state)
    serialised = time.perf_counter()
    atomic_write_bytes(path.with_name("scratch.pkl"), data)
    written = time.perf_counter()
    path.with_name("scratch.pkl").unlink()
    return {
        "bytes": path.stat().st_size,
        "serialise_ms": 1000 * (serialised - loaded),
        "write_fsync_ms": 1000 * (written - serialised),
        "load_ms": 1000 * (loaded - start),
    }


def soak(candidates: int, table: Path) -> dict[str, Any]:
    """Runs the search; returns the figures."""
    # The sandbox's children make their working dirs in TMPDIR: a private one, to count
    # what is left in it afterwards (other processes on the machine use /tmp too).
    private_tmp = Path(tempfile.mkdtemp(prefix="llmatic-soak-tmp-"))
    os.environ["TMPDIR"] = str(private_tmp)
    tempfile.tempdir = None
    run_dir = Path(tempfile.mkdtemp(prefix="llmatic-soak-run-", dir=private_tmp.parent))

    from hydra import compose, initialize_config_dir

    from llmatic.run import run_experiment

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                "benchmark=nasbench201",
                f"benchmark.table={table}",
                "llm=scripted",
                f"search.budget={candidates}",
                f"search.max_candidates={candidates}",
                "output.plots=false",
                "output.checkpoint_every=1",
            ],
        )
    points: dict[str, dict[str, Any]] = {}
    marks = sorted({100, candidates})
    sandbox_pids: set[int] = set()

    def on_iteration(stats) -> None:
        if stats.iteration % 10 == 1:  # the sandbox's zygote (restarted if it dies)
            sandbox_pids.update(direct_children(os.getpid()))
        if "start-up" not in points:
            points["start-up"] = {"candidates": stats.candidates, **memory()}
        while marks and stats.candidates >= marks[0]:
            mark = marks.pop(0)
            points[f"{mark} candidates"] = {
                "candidates": stats.candidates,
                "iteration": stats.iteration,
                "seconds": stats.seconds,
                **memory(),
                "checkpoint": checkpoint_cost(run_dir / "checkpoint.pkl"),
            }

    start = time.perf_counter()
    summary = run_experiment(cfg, run_dir, on_iteration=on_iteration)
    wall = time.perf_counter() - start
    time.sleep(0.5)  # let the zygote's exit be reaped
    left_children = descendants(os.getpid())
    left_sandbox = [pid for pid in sandbox_pids if is_zygote(pid)]
    left_tmp = sorted(p.name for p in private_tmp.iterdir())
    shutil.rmtree(private_tmp, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": "benchmark=nasbench201 llm=scripted search=llmatic (batch 16), "
        f"max_candidates={candidates}, checkpoint_every=1",
        "candidates": summary["candidates"],
        "evaluations": summary["evaluations"],
        "status_counts": summary["status_counts"],
        "wall_seconds": wall,
        "candidates_per_second": summary["candidates"] / wall,
        "memory": points,
        "checkpoints": summary["checkpoint"],
        "checkpoint_share_of_run": summary["checkpoint"]["seconds"] / wall,
        "after_close": {
            "child_processes_left": len(left_children),
            "sandbox_zygotes_left": len(left_sandbox),
            "sandbox_zygotes_seen": len(sandbox_pids),
            # The sandbox's per-call working dirs; anything else is listed by name.
            "sandbox_temp_dirs_left": sum(n.startswith("llmatic-sandbox-") for n in left_tmp),
            "other_temp_entries_left": [
                n for n in left_tmp if not n.startswith("llmatic-sandbox-")
            ][:10],
        },
    }


def table_md(figures: dict[str, Any]) -> str:
    lines = [
        "# Soak: 1,000 candidates through the search loop",
        "",
        f"`python -m benchmarks.soak`: {figures['config']}; "
        f"{figures['candidates']} candidates ({figures['status_counts']}), "
        f"{figures['evaluations']} evaluations in {figures['wall_seconds']:.0f} s "
        f"({figures['candidates_per_second']:.1f} candidates/s) on "
        f"{figures['machine']['cpus']} CPU cores.",
        "",
        "| point | candidates | RSS MiB | peak RSS (VmHWM) MiB | ru_maxrss MiB "
        "| checkpoint KiB | serialise ms | write+fsync ms | load ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in figures["memory"].items():
        ck = row.get("checkpoint")
        cells = (
            [f"{ck['bytes'] / 1024:.0f}", f"{ck['serialise_ms']:.1f}"]
            + [f"{ck['write_fsync_ms']:.1f}", f"{ck['load_ms']:.1f}"]
            if ck
            else ["", "", "", ""]
        )
        lines.append(
            f"| {name} | {row['candidates']} | {row['rss_mib']:.0f} | "
            f"{row['peak_rss_mib']:.0f} | {row['ru_maxrss_mib']:.0f} | " + " | ".join(cells) + " |"
        )
    ck, left = figures["checkpoints"], figures["after_close"]
    lines += [
        "",
        f"Checkpoints: {ck['writes']} written (every iteration), "
        f"{ck['seconds']:.2f} s in all ({figures['checkpoint_share_of_run']:.1%} of the run), "
        f"{1000 * ck['seconds_per_write']:.1f} ms each on average; the last was "
        f"{ck['bytes'] / 1024:.0f} KiB.",
        "",
        f"After the run (sandbox closed): {left['child_processes_left']} child processes "
        f"left, {left['sandbox_zygotes_left']} of the {left['sandbox_zygotes_seen']} sandbox "
        f"zygote(s) seen still alive, {left['sandbox_temp_dirs_left']} sandbox working dirs "
        "left in the private TMPDIR (other entries there: "
        f"{', '.join(left['other_temp_entries_left']) or 'none'}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="NB201 table")
    args = parser.parse_args(argv)
    if not args.table.is_file():
        sys.exit(f"soak: no NAS-Bench-201 table at {args.table}; pass --table PATH")
    figures = soak(args.candidates, args.table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = table_md(figures)
    (RESULTS / "soak.md").write_text(text)
    print(text)
    print(f"written to {RESULTS / 'soak.json'} and {RESULTS / 'soak.md'}")
    return figures


if __name__ == "__main__":
    main()
