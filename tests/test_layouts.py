"""List layouts: the grouped lists hold exactly the target-major entries, in groups that are
safe to run in parallel, checked entry by entry against the target-major definition."""

import numpy as np
import pytest

from fmmloopy.checking.problems import check_problems
from fmmloopy.execution.kernel_arguments import box_list, box_list_arguments
from fmmloopy.maths.layouts import TARGET_MAJOR, Grouped, grouped_arguments, layout_arguments


def _entries(target_major):
    """The (target box, source box, matrix) triples of a target-major list, as a sorted list."""
    rows = np.repeat(target_major["target_boxes"], np.diff(target_major["source_box_starts"]))
    return sorted(zip(rows.tolist(), target_major["source_box_lists"].tolist(),
                      target_major["matrix_indices"].tolist(), strict=True))


def _grouped_entries(grouped):
    """The same triples read back from the grouped lists, with each entry's block and group."""
    triples, where = [], []
    for block in range(grouped["nblocks"]):
        groups = range(grouped["block_group_starts"][block],
                       grouped["block_group_starts"][block + 1])
        for group in groups:
            pairs = range(grouped["group_pair_starts"][group],
                          grouped["group_pair_starts"][group + 1])
            for pair in pairs:
                triples.append((int(grouped["pair_targets"][pair]),
                                int(grouped["pair_sources"][pair]),
                                int(grouped["group_matrices"][group])))
                where.append((block, group))
    return triples, where


def _v_list_arguments():
    problem = check_problems()[1]
    starts, entries, transfer = box_list(problem.tree, problem.lists, "v")
    target_boxes = np.flatnonzero(np.diff(starts) > 0)
    return box_list_arguments(starts, entries, target_boxes, transfer)


@pytest.mark.parametrize("block", [1, 7, 64, 10_000])
def test_grouped_lists_hold_every_entry_once_in_parallel_safe_groups(block):
    target_major = _v_list_arguments()
    grouped = grouped_arguments(target_major, block)
    triples, where = _grouped_entries(grouped)
    assert sorted(triples) == _entries(target_major)
    assert grouped["npairs"] == len(triples) and grouped["ngroups"] == len(set(where))
    assert grouped["nblocks"] == -(-len(target_major["target_boxes"]) // block)

    position = {box: i for i, box in enumerate(target_major["target_boxes"])}
    targets_of_group, blocks_of_target = {}, {}
    for (target, _, _), (blk, group) in zip(triples, where, strict=True):
        assert position[target] // block == blk  # a block is a run of consecutive targets
        targets_of_group.setdefault(group, []).append(target)
        blocks_of_target.setdefault(target, set()).add(blk)
    # No group holds a target twice; no target is in two blocks: blocks and a group's pairs may
    # run in parallel.
    assert all(len(t) == len(set(t)) for t in targets_of_group.values())
    assert all(len(b) == 1 for b in blocks_of_target.values())
    # Inside a group, pairs follow the targets' order in the launch (the documented order).
    assert all(np.all(np.diff([position[t] for t in targets]) > 0)
               for targets in targets_of_group.values())


def test_a_target_repeating_a_matrix_goes_into_two_groups():
    target_major = {
        "target_boxes": np.array([5, 9]), "source_box_starts": np.array([0, 3, 4]),
        "source_box_lists": np.array([1, 2, 3, 4]), "matrix_indices": np.array([0, 0, 1, 0]),
    }
    grouped = grouped_arguments(target_major, 2)
    triples, where = _grouped_entries(grouped)
    assert sorted(triples) == _entries(target_major)
    groups_of_box5_matrix0 = {group for (t, _, m), (_, group) in zip(triples, where, strict=True)
                              if t == 5 and m == 0}
    assert len(groups_of_box5_matrix0) == 2


def test_empty_list_gives_empty_groups():
    target_major = {"target_boxes": np.array([3]), "source_box_starts": np.array([0, 0]),
                    "source_box_lists": np.array([], dtype=int),
                    "matrix_indices": np.array([], dtype=int)}
    grouped = grouped_arguments(target_major, 4)
    assert grouped["npairs"] == grouped["ngroups"] == 0
    assert list(grouped["block_group_starts"]) == [0, 0]


def test_block_size_follows_compute_units_unless_fixed():
    assert Grouped(blocks_per_compute_unit=2).block_size(1000, compute_units=2) == 250
    assert Grouped(blocks_per_compute_unit=2).block_size(3, compute_units=16) == 1
    assert Grouped(target_block=64).block_size(1000, compute_units=2) == 64
    target_major = _v_list_arguments()
    arguments = layout_arguments(Grouped(), target_major, compute_units=3)
    assert arguments["nblocks"] == 6
    assert layout_arguments(TARGET_MAJOR, target_major) == target_major


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_layout_parameters_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        Grouped(target_block=bad)
    with pytest.raises(ValueError, match="positive integer"):
        Grouped(pair_tile=bad)
