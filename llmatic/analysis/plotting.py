"""Plots of a run: heatmaps of both archives and search progress.

Everything is drawn from the files of a run directory, so
``python -m experiments.plot RUN_DIR`` redraws any finished or interrupted run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; runs on headless machines and clusters

import matplotlib.pyplot as plt  # noqa: E402
from ribs.archives import GridArchive  # noqa: E402
from ribs.visualize import grid_archive_heatmap  # noqa: E402

from llmatic.archives import NETWORK_MEASURE_LABELS  # noqa: E402
from llmatic.recording import NETWORK_ARCHIVE, PROMPT_ARCHIVE, load_archive  # noqa: E402


def plot_network_archive(archive: GridArchive, path: Path, *, title: str = "") -> None:
    """Heatmap of validation accuracy (%) over (width-to-depth ratio, log10 FLOPs)."""
    fig, ax = plt.subplots(figsize=(6, 4.8))
    grid_archive_heatmap(
        archive, ax=ax, cmap="viridis", cbar_kwargs={"label": "validation accuracy (%)"}
    )
    ax.set_xlabel(NETWORK_MEASURE_LABELS[0])
    ax.set_ylabel(NETWORK_MEASURE_LABELS[1])
    filled = len(archive)
    ax.set_title(f"{title}network archive: {filled}/{archive.cells} cells filled")
    save_figure(fig, path)


def plot_prompt_archive(archive: GridArchive, path: Path, *, title: str = "") -> None:
    """Heatmap of curiosity over (prompt id, temperature)."""
    num_prompts = int(archive.dims[0])
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * num_prompts + 2), 4.8))
    grid_archive_heatmap(archive, ax=ax, cmap="coolwarm", cbar_kwargs={"label": "curiosity"})
    ax.set_xticks(range(num_prompts))
    ax.set_xlabel("prompt id (the last one is crossover)")
    ax.set_ylabel("sampling temperature")
    ax.set_title(f"{title}prompt archive: {len(archive)}/{archive.cells} cells filled")
    save_figure(fig, path)


def plot_progress(metrics_csv: Path, path: Path, *, title: str = "") -> None:
    """Best validation accuracy, QD score and coverage versus charged evaluations."""
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    evals = [int(r["evaluations"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(
        axes,
        ("best_objective", "qd_score", "coverage"),
        ("best validation accuracy (%)", "QD score", "coverage"),
        strict=True,
    ):
        ax.plot(evals, [float(r[key]) for r in rows], marker=".")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}search progress")
    save_figure(fig, path)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draws every plot of ``run_dir`` into ``run_dir/plots``; returns the files written."""
    run_dir = Path(run_dir)
    out = run_dir / "plots"
    written = []
    if (run_dir / NETWORK_ARCHIVE).exists():
        plot_network_archive(load_archive(run_dir / NETWORK_ARCHIVE), out / "network_archive.png")
        written.append(out / "network_archive.png")
    if (run_dir / PROMPT_ARCHIVE).exists():
        plot_prompt_archive(load_archive(run_dir / PROMPT_ARCHIVE), out / "prompt_archive.png")
        written.append(out / "prompt_archive.png")
    if (run_dir / "metrics.csv").exists():
        plot_progress(run_dir / "metrics.csv", out / "progress.png")
        written.append(out / "progress.png")
    return written


def save_figure(fig: plt.Figure, path: Path, *, dpi: int = 120) -> None:
    """Writes ``fig`` to ``path`` (creating folders) and closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
