"""Operator chains run by the driver's loopy kernels, against direct summation.

After one :class:`fmmloopy.Fmm` evaluation the plan's buffers hold every box's multipole (upward
equivalent density) and local expansion (downward equivalent density). Evaluating them directly:

* a box's multipole (P2M at leaves, M2M above) reproduces, far away, its own particles' field;
* a level-2 box's local expansion (M2L from V, P2L from X; nothing above level 2 to inherit)
  reproduces, inside the box, the field of the particles in its V and X boxes.
"""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.precompute import kernel_matrix
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.surfaces import DOWNWARD_EQUIVALENT_RADIUS, UPWARD_EQUIVALENT_RADIUS, surface
from fmmloopy.tree.csr import ranges_to_indices

ORDER = 6


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(21)
    points = plummer(6000, rng)
    charges = rng.uniform(0.5, 1.5, len(points))  # one sign: no cancellation in the far field
    fmm = fmmloopy.Fmm(points, order=ORDER, n_crit=40)
    fmm(charges)
    return fmm, fmm.tree.sources_to_tree(charges)


def _box_points(tree, box, radius):
    half_width = tree.root_half_width / 2 ** tree.box_levels[box]
    return tree.box_centres[box][:, None] + half_width * surface(ORDER, radius)


def _particles(tree, boxes):
    boxes = np.atleast_1d(boxes)
    return ranges_to_indices(tree.box_source_starts[boxes].astype(np.int64),
                             tree.box_source_counts[boxes].astype(np.int64))


def test_multipoles_reproduce_the_far_field_of_their_box(evaluated):
    fmm, charges = evaluated
    tree = fmm.tree
    multipoles = fmm.plan.buffers["multipole"].get()
    rng = np.random.default_rng(22)
    boxes = np.flatnonzero((tree.box_levels >= 2) & (tree.box_source_counts > 0))
    leaves_and_parents = [boxes[tree.box_is_leaf[boxes]][:20],
                          boxes[~tree.box_is_leaf[boxes]][:20]]
    errors = []
    for box in np.concatenate(leaves_and_parents):
        half_width = tree.root_half_width / 2 ** tree.box_levels[box]
        # Targets on a sphere 3 box widths from the centre: as far as a V-list box.
        directions = rng.standard_normal((3, 50))
        targets = tree.box_centres[box][:, None] + 6 * half_width * directions / np.linalg.norm(
            directions, axis=0)
        equivalent = kernel_matrix(LAPLACE_3D, targets, _box_points(
            tree, box, UPWARD_EQUIVALENT_RADIUS)) @ multipoles[box]
        indices = _particles(tree, box)
        exact = direct_sum(LAPLACE_3D, tree.sources[indices], charges[indices], targets.T)
        errors.append(np.linalg.norm(equivalent - exact) / np.linalg.norm(exact))
    print("multipole far-field errors: max", max(errors))
    # P2M far field at order 6: 3.6e-7 in docs/kifmm.md (6.0e-7 measured on these boxes, M2M
    # included). Factor ~3 above that.
    assert max(errors) < 2e-6, max(errors)


def test_level_two_locals_reproduce_their_v_and_x_boxes(evaluated):
    fmm, charges = evaluated
    tree, lists = fmm.tree, fmm.lists
    locals_ = fmm.plan.buffers["local"].get()
    boxes = np.flatnonzero((tree.box_levels == 2) & (tree.box_target_counts > 0)
                           & (np.diff(lists.v_starts) > 0))
    assert len(boxes) > 0
    errors = []
    for box in boxes:
        far = np.concatenate([lists.v_lists[lists.v_starts[box]:lists.v_starts[box + 1]],
                              lists.x_lists[lists.x_starts[box]:lists.x_starts[box + 1]]])
        indices = _particles(tree, far)
        targets = tree.targets[ranges_to_indices(tree.box_target_starts[[box]].astype(np.int64),
                                                 tree.box_target_counts[[box]].astype(np.int64))]
        approximate = kernel_matrix(LAPLACE_3D, targets.T, _box_points(
            tree, box, DOWNWARD_EQUIVALENT_RADIUS)) @ locals_[box]
        exact = direct_sum(LAPLACE_3D, tree.sources[indices], charges[indices], targets)
        errors.append(np.linalg.norm(approximate - exact) / np.linalg.norm(exact))
    print("local (M2L + P2L) errors: max", max(errors))
    # The M2L chain at order 6: 2.6e-6 worst case for uniform boxes (docs/kifmm.md); these
    # Plummer boxes crowd particles towards their faces: 7.0e-6 measured (all from V: level-2
    # boxes here have no X list). Factor ~3 above that.
    assert max(errors) < 2e-5, max(errors)
