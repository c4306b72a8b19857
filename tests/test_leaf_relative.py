"""Points relative to their leaf's centre (the coordinates of float32 kernels): each point's
leaf, the stored parts, and the refusal of points float32 cannot tell apart there."""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer
from fmmloopy.base.precision import FLOAT32
from fmmloopy.tree.leaf_relative import (
    leaf_of_points,
    leaf_relative_points,
    refuse_unresolved_points,
)
from fmmloopy.tree.octree import build_tree

POINTS = plummer(3000, np.random.default_rng(7))
TARGETS = np.random.default_rng(8).uniform(-1.0, 1.0, (500, 3))


def test_each_point_lies_in_its_leaf_and_is_stored_relative_to_its_centre():
    tree = build_tree(POINTS, TARGETS, n_crit=16)
    sources, targets = leaf_relative_points(tree, FLOAT32)
    for role, stored, points in (("source", sources, tree.sources_soa),
                                 ("target", targets, tree.targets_soa)):
        leaves = leaf_of_points(tree, role)
        assert tree.box_is_leaf[leaves].all()
        # Brute force: the leaf whose range holds the point's sorted index.
        starts = getattr(tree, f"box_{role}_starts")[leaves]
        counts = getattr(tree, f"box_{role}_counts")[leaves]
        index = np.arange(points.shape[1])
        assert ((starts <= index) & (index < starts + counts)).all()
        half_width = tree.level_half_widths[tree.box_levels[leaves]]
        centres = tree.box_centres_soa[:, leaves].astype(np.float32).astype(np.float64)
        # float64 rounds the difference and the sum by 2**-53 of the larger of the point and
        # the centre, far below float32's unit.
        assert (np.abs(centres + stored - points)
                <= 2.0 ** -52 * (np.abs(points) + np.abs(centres))).all()
        # Inside the leaf, up to the rounding of its centre to float32.
        assert (np.abs(stored) <= half_width * (1 + 1e-6)).all()


def test_points_of_two_leaves_closer_than_float32_resolves_are_refused():
    """Two points on either side of a leaf's corner, 1e-12 of its width apart: absolutely in
    float32 they would be one point, and relative to two leaves' centres their offset is
    rounded by about float32's unit at the leaves' width."""
    face = build_tree(POINTS, n_crit=16)
    leaf = int(np.flatnonzero(face.box_is_leaf & (face.box_source_counts > 0))[0])
    half_width = face.level_half_widths[face.box_levels[leaf]]
    corner = face.box_centres_soa[:, leaf] + half_width
    pair = np.array([corner - 1e-12 * half_width, corner + 1e-12 * half_width])
    points = np.concatenate([POINTS, pair])
    tree = build_tree(points, n_crit=16)
    with pytest.raises(ValueError, match=r"closer than float32 resolves.*source 3000 and "
                                         r"source 3001"):
        refuse_unresolved_points(tree, FLOAT32)
    with pytest.raises(ValueError, match="closer than float32 resolves"):
        fmmloopy.Fmm(points, n_crit=16, dtype=np.float32)
    # 1e-4 of the leaf's width apart: float32 resolves them.
    apart = np.concatenate([POINTS, [corner - 1e-4 * half_width, corner + 1e-4 * half_width]])
    refuse_unresolved_points(build_tree(apart, n_crit=16), FLOAT32)
