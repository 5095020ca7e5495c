"""The two GridArchives: ranges, and curiosity that accumulates per cell."""

from __future__ import annotations

import numpy as np
import pytest

from llmatic.archives import PromptArchive, make_network_archive


def test_network_archive_rejects_inverted_ranges():
    with pytest.raises(ValueError, match="low < high"):
        make_network_archive(dims=(4, 4), width_to_depth_range=(3, 1), log10_flops_range=(4, 6))


def test_network_archive_keeps_best_per_cell_and_extra_fields():
    archive = make_network_archive(
        dims=(4, 4), width_to_depth_range=(0, 4), log10_flops_range=(4, 6)
    )
    solution = np.empty(2, dtype=object)
    solution[:] = [0, 1]
    code = np.empty(2, dtype=object)
    code[:] = ["a", "b"]
    arch = code.copy()
    operator = code.copy()
    parents = np.empty(2, dtype=object)
    parents[:] = [[], [0]]
    archive.add(
        solution=solution,
        objective=np.array([50.0, 60.0]),
        measures=np.array([[1.0, 5.0], [1.1, 5.1]]),  # the same cell
        code=code,
        arch=arch,
        operator=operator,
        parent_ids=parents,
        prompt_id=np.array([-1, 2]),
        temperature=np.array([np.nan, 0.6]),
    )
    assert len(archive) == 1
    elite = archive.data()
    assert elite["solution"][0] == 1 and elite["code"][0] == "b" and elite["prompt_id"][0] == 2


def make_prompts() -> PromptArchive:
    return PromptArchive(prompts=["a", "b", "c"], temperature_bins=9, temperature_range=(0.1, 1.0))


def test_curiosity_accumulates_up_and_down_in_one_cell():
    prompts = make_prompts()
    prompts.credit([0], [0.6], [1.0], [True])
    prompts.credit([0], [0.61], [-0.5], [False])  # same cell (bins are 0.1 wide)
    prompts.credit([0], [0.62], [-1.0], [False])
    data = prompts.archive.data()
    assert len(prompts.archive) == 1
    assert data["objective"][0] == pytest.approx(-0.5)
    assert data["uses"][0] == 3
    assert data["last_improved"][0] == 0
    assert data["measures"][0][1] == pytest.approx(0.62)  # remembers the last temperature


def test_credit_in_one_batch_sums_per_cell_and_keeps_other_cells():
    prompts = make_prompts()
    prompts.credit([2], [0.9], [1.0], [True])
    prompts.credit([1, 1, 0], [0.3, 0.3, 0.3], [1.0, 1.0, -0.5], [True, True, False])
    curiosity = {
        (int(round(m[0])), round(float(m[1]), 2)): o
        for m, o in zip(
            prompts.archive.data("measures"), prompts.archive.data("objective"), strict=True
        )
    }
    assert curiosity == {(2, 0.9): 1.0, (1, 0.3): 2.0, (0, 0.3): -0.5}


def test_most_curious_orders_and_filters():
    prompts = make_prompts()
    prompts.credit([0, 1, 2], [0.5, 0.5, 0.5], [-0.5, 2.0, 1.0], [False, True, True])
    assert [c[0] for c in prompts.most_curious(2)] == [1, 2]
    assert [c[0] for c in prompts.most_curious(5, prompt_ids=[0, 2])] == [2, 0]
    assert prompts.most_curious(1)[0][2] is True
