"""The two pyribs GridArchives of LLMatic.

- The **network archive** keeps the best network per cell of (width-to-depth ratio,
  log10 FLOPs). Its solutions are candidate ids (see :mod:`llmatic.candidate`); extra
  fields copy what a user needs from a snapshot alone (code, arch, how it was made).
- The **prompt archive** keeps, per cell of (prompt id, sampling temperature), the
  *curiosity* of that prompt at that temperature: a running sum that goes up when a child
  made there enters or improves the network archive and down otherwise. pyribs archives
  only ever replace an elite by a better one, so :class:`PromptArchive` rewrites the
  affected cells itself to let curiosity go down as well as up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ribs.archives import GridArchive

NETWORK_MEASURES = ("width_to_depth", "log10_flops")
NETWORK_MEASURE_LABELS = ("width-to-depth ratio (channels / layers)", "log10 FLOPs")


def make_network_archive(
    *,
    dims: Sequence[int],
    width_to_depth_range: tuple[float, float],
    log10_flops_range: tuple[float, float],
    seed: int | None = None,
) -> GridArchive:
    """The network archive. Objective: validation accuracy (%).

    Args:
        dims: Cells along (width-to-depth, log10 FLOPs), e.g. ``(10, 10)``.
        width_to_depth_range: ``(low, high)`` of the width-to-depth ratio.
        log10_flops_range: ``(low, high)`` of log10(FLOPs); values outside are clipped into
            the border cells by pyribs.
    """
    for name, (low, high) in (
        ("width_to_depth_range", width_to_depth_range),
        ("log10_flops_range", log10_flops_range),
    ):
        if not low < high:
            raise ValueError(f"{name} must be (low, high) with low < high, got {(low, high)}")
    return GridArchive(
        solution_dim=(),
        dims=list(dims),
        ranges=[tuple(width_to_depth_range), tuple(log10_flops_range)],
        solution_dtype=object,
        extra_fields={
            "code": ((), object),
            "arch": ((), object),
            "operator": ((), object),
            "parent_ids": ((), object),
            "prompt_id": ((), np.int32),
            "temperature": ((), np.float32),
        },
        seed=seed,
    )


class PromptArchive:
    """Curiosity per (prompt id, temperature) cell, stored in a pyribs GridArchive.

    Args:
        prompts: The instructions; prompt ``i`` lies in column ``i``.
        temperature_bins: Cells along the temperature axis.
        temperature_range: ``(low, high)`` of temperatures; the clip range of the search.
        seed: Seed of the archive's sampling.
    """

    def __init__(
        self,
        *,
        prompts: Sequence[str],
        temperature_bins: int,
        temperature_range: tuple[float, float],
        seed: int | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("prompts must not be empty")
        low, high = temperature_range
        if not 0 < low < high:
            raise ValueError(f"temperature_range must be 0 < low < high, got {temperature_range}")
        self.prompts = list(prompts)
        self.archive = GridArchive(
            solution_dim=(),
            dims=[len(self.prompts), temperature_bins],
            ranges=[(-0.5, len(self.prompts) - 0.5), (low, high)],
            solution_dtype=object,
            extra_fields={"uses": ((), np.int32), "last_improved": ((), np.int8)},
            seed=seed,
        )

    def state_dict(self) -> dict:
        """The prompts and the archive (for a checkpoint)."""
        return {"prompts": self.prompts, "archive": self.archive}

    def load_state_dict(self, state: dict) -> None:
        """Takes the archive of :meth:`state_dict`; the prompts must be the same."""
        if list(state["prompts"]) != self.prompts:
            raise ValueError("the checkpoint's prompt archive was made for other prompts")
        self.archive = state["archive"]

    def credit(
        self,
        prompt_ids: Sequence[int],
        temperatures: Sequence[float],
        deltas: Sequence[float],
        improved: Sequence[bool],
    ) -> None:
        """Adds ``deltas[k]`` to the curiosity of the cell of (prompt, temperature) ``k``.

        The cell remembers the temperature last used in it and whether that child
        improved the network archive; the mutation emitter steers from there.
        """
        if not len(prompt_ids):
            return
        measures = np.column_stack([prompt_ids, temperatures]).astype(np.float64)
        indices = self.archive.index_of(measures)
        occupied, old = self.archive.retrieve(measures)
        cells: dict[int, dict] = {}
        for k, index in enumerate(indices):
            index = int(index)
            if index not in cells:
                cells[index] = (
                    {"curiosity": float(old["objective"][k]), "uses": int(old["uses"][k])}
                    if occupied[k]
                    else {"curiosity": 0.0, "uses": 0}
                )
            cell = cells[index]
            cell["curiosity"] += float(deltas[k])
            cell["uses"] += 1
            cell["measures"] = measures[k]
            cell["prompt"] = self.prompts[int(prompt_ids[k])]
            cell["last_improved"] = int(bool(improved[k]))
        # Rewrite: keep every untouched cell, replace the touched ones.
        keep = self.archive.data()
        untouched = ~np.isin(keep["index"], list(cells))
        rows = {
            name: list(keep[name][untouched])
            for name in ("solution", "objective", "measures", "uses", "last_improved")
        }
        for cell in cells.values():
            rows["solution"].append(cell["prompt"])
            rows["objective"].append(cell["curiosity"])
            rows["measures"].append(cell["measures"])
            rows["uses"].append(cell["uses"])
            rows["last_improved"].append(cell["last_improved"])
        self.archive.clear()
        solutions = np.empty(len(rows["solution"]), dtype=object)
        solutions[:] = rows["solution"]
        self.archive.add(
            solution=solutions,
            objective=np.asarray(rows["objective"], dtype=np.float64),
            measures=np.asarray(rows["measures"], dtype=np.float64).reshape(-1, 2),
            uses=np.asarray(rows["uses"]),
            last_improved=np.asarray(rows["last_improved"]),
        )

    def most_curious(
        self, k: int, *, prompt_ids: Iterable[int] | None = None
    ) -> list[tuple[int, float, bool]]:
        """The ``k`` cells of highest curiosity as ``(prompt_id, temperature, last_improved)``.

        Args:
            k: How many cells at most.
            prompt_ids: Only cells of these prompts (all when None).
        """
        data = self.archive.data()
        candidates = np.arange(len(data["objective"]))
        if prompt_ids is not None:
            ids = np.rint(data["measures"][:, 0]).astype(int)
            candidates = candidates[np.isin(ids, list(prompt_ids))]
        order = candidates[np.argsort(-data["objective"][candidates], kind="stable")][:k]
        return [
            (
                int(round(data["measures"][i][0])),
                float(data["measures"][i][1]),
                bool(data["last_improved"][i]),
            )
            for i in order
        ]
