"""The tree of a periodic cell and its images (``fmmloopy.tree.periodic``): every source of the
27 near images reaches every target of the cell exactly once through the lists, by the lists'
brute-force meaning (U and W of its leaf, V and X of the leaf and its ancestors), with an image
box standing for its real box's points shifted by its lattice vector."""

import dataclasses

import numpy as np
import pytest

from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.lists import build_interaction_lists
from fmmloopy.tree.octree import sort_in_cube, tree_boxes
from fmmloopy.tree.periodic import CELL_LEVEL, cell_root, into_cell, periodic_tree, real_rows

DEPTH = 12


def _periodic(points, lower, side, n_crit, small=26, axes=(0, 1, 2)):
    inside = into_cell(points, lower, side, DEPTH, axes)
    sorted_points = sort_in_cube(inside, inside, *cell_root(lower, side), DEPTH)
    periodic = periodic_tree(sorted_points, n_crit, tree_boxes(sorted_points, n_crit), side,
                             small, axes=axes)
    return inside, periodic


def _coverage(periodic, lists, side):
    """For each target leaf of the cell: how often each (source, lattice vector) is summed."""
    tree = periodic.tree
    sources = periodic.source_order
    real_box = periodic.real_box

    def entries(box):
        real = real_box[box]
        first, count = tree.box_source_starts[real], tree.box_source_counts[real]
        shift = np.rint((tree.box_centres[box] - tree.box_centres[real]) / side).astype(int)
        return [(int(source), *shift) for source in sources[first:first + count]]

    def row(name, box):
        starts, values = getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists")
        return values[starts[box]:starts[box + 1]]

    leaves = np.flatnonzero(periodic.real & tree.box_is_leaf & (tree.box_target_counts > 0))
    for leaf in leaves:
        counts = {}
        boxes = [*row("u", leaf), *row("w", leaf)]
        ancestor = leaf
        while ancestor >= 0 and tree.box_levels[ancestor] >= CELL_LEVEL:
            boxes += [*row("v", ancestor), *row("x", ancestor)]
            ancestor = tree.box_parents[ancestor]
        for box in boxes:
            for entry in entries(box):
                counts[entry] = counts.get(entry, 0) + 1
        yield leaf, counts


def _sets():
    rng = np.random.default_rng(1)
    cluster = np.concatenate([rng.normal(0.2, 0.03, (300, 3)), rng.uniform(0, 1, (100, 3))])
    return {
        "uniform": (rng.uniform(0, 1, (400, 3)), np.zeros(3), 1.0, 20),
        "outside the cell": (rng.uniform(-3, 5, (400, 3)), np.array([0.5, -1.0, 0.0]), 2.0, 10),
        "cluster by a corner": (cluster, np.zeros(3), 1.0, 8),
        "few points": (rng.uniform(0, 1, (5, 3)), np.zeros(3), 1.0, 20),
    }


@pytest.mark.parametrize("axes", [(0, 1, 2), (0, 1), (1,)], ids=["cell", "slab", "wire"])
@pytest.mark.parametrize("direct", [False, True], ids=["lists", "w-x direct"])
@pytest.mark.parametrize("name", sorted(_sets()))
def test_every_source_image_reaches_every_target_once(name, direct, axes):
    """The near images of a cell periodic along every axis (27), a slab's (9), a wire's (3)."""
    points, lower, side, n_crit = _sets()[name]
    if axes != (0, 1, 2):  # inside the cell along the free axes
        free = [axis for axis in range(3) if axis not in axes]
        points = points.copy()
        points[:, free] = lower[free] + np.mod(points[:, free] - lower[free], side)
    _, periodic = _periodic(points, lower, side, n_crit, axes=axes)
    lists = real_rows(build_interaction_lists(periodic.tree), periodic.real)
    if direct:  # the small W/X boxes summed directly: an image counts as its real box
        counted = dataclasses.replace(periodic.tree, box_source_counts=periodic.source_counts)
        lists = direct_where_cheaper(counted, lists, 26)
    expected = {(source, *shift) for source in range(len(points))
                for shift in np.ndindex(3, 3, 3)}
    expected = {(source, a - 1, b - 1, c - 1) for source, a, b, c in expected
                if all((a, b, c)[axis] == 1 for axis in range(3) if axis not in axes)}
    checked = 0
    for leaf, counts in _coverage(periodic, lists, side):
        assert set(counts) == expected, leaf
        assert max(counts.values()) == 1, leaf
        checked += 1
    assert checked == np.count_nonzero(periodic.real & periodic.tree.box_is_leaf)


def test_images_and_ghosts():
    points, lower, side, n_crit = _sets()["uniform"]
    inside, periodic = _periodic(points, lower, side, n_crit)
    tree = periodic.tree
    images = periodic.image_boxes
    assert len(images) and not periodic.real[images].any()
    # An image is its real box moved by a lattice vector of the 26 neighbours, at its level.
    real = periodic.real_box[images]
    assert np.array_equal(tree.box_levels[images], tree.box_levels[real])
    shifts = (tree.box_centres[images] - tree.box_centres[real]) / side
    assert np.allclose(shifts, np.rint(shifts), atol=1e-12)
    assert np.all(np.abs(np.rint(shifts)).max(axis=1) == 1)
    # Ghost sources are copies of sources moved by a lattice vector; the real ones are the
    # cell's points, in their own boxes.
    ghosts = tree.sources[tree.nsources - len(periodic.ghost_sources):]
    assert len(ghosts) == len(periodic.ghost_sources)
    ids = periodic.source_order
    moved = (tree.sources - inside[ids]) / side
    assert np.allclose(moved, np.rint(moved), atol=1e-12)
    assert np.all(periodic.real[tree.box_levels >= CELL_LEVEL] | ~(
        tree.box_target_counts[tree.box_levels >= CELL_LEVEL] > 0))


@pytest.mark.parametrize("side", [1.0, 0.1, 3e5])
def test_points_on_faces_and_outside_are_keyed_inside_the_cell(side):
    lower = np.array([-0.3, 7.0, 1e-3]) * side
    rng = np.random.default_rng(2)
    points = lower + side * np.concatenate([
        rng.uniform(0, 1, (50, 3)),
        rng.integers(-2, 3, (50, 3)) + rng.uniform(0, 1, (50, 3)),  # images of the cell
        np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.5, 0.0]]),  # corners and faces
        1.0 - np.finfo(float).eps * np.ones((1, 3)),
    ])
    inside = into_cell(points, lower, side, DEPTH)
    centre, half_width = cell_root(lower, side)
    cells = 1 << DEPTH
    index = np.floor((inside - (centre - half_width)) * (cells / (2 * half_width)))
    assert np.all((index >= cells // 4) & (index < cells // 2))
    # Wrapping moves each point by a lattice vector (a face point to the lower face).
    moved = (inside - points) / side
    assert np.allclose(moved, np.rint(moved), atol=1e-9)
