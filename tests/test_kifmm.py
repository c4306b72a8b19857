"""fmmloopy.maths.kifmm and fmmloopy.maths.expansion: the KIFMM's steps as data."""

import dataclasses

import numpy as np
import pytest

from fmmloopy.maths.expansion import SURFACE_RADII, Expansion
from fmmloopy.maths.geometry import M2L_CLASSES, transfer_class
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.kifmm import (
    POINT_BUFFERS,
    STEPS,
    buffer_widths,
    get_step,
)
from fmmloopy.maths.operators import OPERATORS, PAIRWISE, SURFACE
from fmmloopy.maths.precompute import (
    ARRAY_FIELDS,
    check_to_equivalent,
    kernel_matrix,
    matrix_shapes,
)
from fmmloopy.maths.surfaces import surface, surface_size

HALF_WIDTHS = np.array([1.0, 0.5, 0.125])


def test_expansion_carries_order_size_and_surfaces():
    expansion = Expansion(4)
    assert expansion.n_e == surface_size(4) == 56
    for name, radius in SURFACE_RADII.items():
        np.testing.assert_array_equal(expansion.surface(name), surface(4, radius))
    with pytest.raises(ValueError, match="unknown surface"):
        expansion.surface("sideways")
    with pytest.raises(ValueError, match="order"):
        Expansion(1)


def test_every_step_is_consistent_with_its_operator():
    for step in STEPS.values():
        spec = OPERATORS[step.operator]
        if spec.template == PAIRWISE:
            assert not step.matrices
            # A surface side of the operator is exactly the side the step names a surface for.
            sides = {f"{side}_surface" for side in ("target", "source")
                     if getattr(spec, f"{side}s") == SURFACE}
            assert {argument for argument, _ in step.surfaces} == sides
            assert all(name in SURFACE_RADII for _, name in step.surfaces)
        else:
            assert step.matrices and not step.surfaces
            assert set(step.matrices) <= set(ARRAY_FIELDS)
    assert set(STEPS) >= {"p2m", "uc2e", "m2m", "p2l", "dc2e", "l2l", "l2p", "m2p", "p2p"}
    # M2L, compressed per transfer-vector class: compress, the cores over the class's V
    # entries, expand into the downward check potential.
    for name in M2L_CLASSES:
        compress, m2l, expand = (STEPS[f"m2l_{name}{part}"]
                                 for part in ("_compress", "", "_expand"))
        assert (compress.source, compress.target) == ("multipole", m2l.source)
        assert (m2l.target, expand.source, expand.target) == (
            expand.source, m2l.target, "check_down")
        assert m2l.box_list == f"v_{name}" and m2l.operator == "m2l"
        assert (compress.level_exponent, m2l.level_exponent, expand.level_exponent) == (0, 1, 0)
    with pytest.raises(ValueError, match="unknown KIFMM step"):
        get_step("x2y")


def test_buffers_follow_the_steps():
    assert STEPS["uc2e"].chain() == [("uc2e_first", "check_up", "check_up_rank"),
                                     ("uc2e_second", "check_up_rank", "multipole")]
    assert all(step.source not in POINT_BUFFERS or step.source == "strengths"
               for step in STEPS.values())


def test_buffer_widths_come_from_the_matrices_that_write_them():
    class_ranks = {name: 20 + i for i, name in enumerate(M2L_CLASSES)}
    ranks = {"uc2e": 50, "dc2e": 52} | {f"m2l_{name}": k for name, k in class_ranks.items()}
    widths = buffer_widths(56, matrix_shapes(56, ranks))
    assert widths == {"check_up": 56, "check_up_rank": 50, "multipole": 56, "check_down": 56,
                      "check_down_rank": 52, "local": 56} | {
        f"{buffer}_{name}": k for name, k in class_ranks.items()
        for buffer in ("multipole", "check_down")}
    # A step reading a buffer at another width than the step that writes it is refused.
    far = len(transfer_class("far_xp"))
    shapes = matrix_shapes(56, ranks) | {"m2l_far_xp_core": (far, 31, 31)}
    k = class_ranks["far_xp"]
    with pytest.raises(ValueError, match=f"step 'm2l_far_xp' takes buffer 'multipole_far_xp' "
                                         f"as 31 values per box, another step as {k}"):
        buffer_widths(56, shapes)


def test_level_scales():
    np.testing.assert_allclose(STEPS["uc2e"].level_scales(-1.0, HALF_WIDTHS), HALF_WIDTHS)
    np.testing.assert_allclose(STEPS["dc2e"].level_scales(-1.0, HALF_WIDTHS), HALF_WIDTHS)
    np.testing.assert_allclose(STEPS["m2l_near_xp"].level_scales(-1.0, HALF_WIDTHS),
                               1 / HALF_WIDTHS)
    np.testing.assert_array_equal(STEPS["m2m"].level_scales(-1.0, HALF_WIDTHS), 1.0)
    np.testing.assert_array_equal(STEPS["l2l"].level_scales(-1.0, HALF_WIDTHS), 1.0)
    with pytest.raises(ValueError, match="not homogeneous"):
        STEPS["m2l_near_xp"].level_scales(None, HALF_WIDTHS)


@pytest.mark.parametrize("step", ["uc2e", "m2l_near_xp", "m2l_middle_yn", "m2l_far_zp"])
def test_level_scale_is_what_the_matrices_do_at_that_half_width(step):
    """The scale times the half-width-1 matrix equals the matrix computed directly at h."""
    order, h = 3, 0.125
    check, equivalent = surface(order, 2.95), surface(order, 1.05)
    scale = STEPS[step].level_scales(LAPLACE_3D.homogeneity, np.array([h]))[0]
    if step == "uc2e":
        def pinv(c, e):
            first, second = check_to_equivalent(LAPLACE_3D, c, e, 1e-12)
            return second @ first
        unit, direct = pinv(check, equivalent), pinv(h * check, h * equivalent)
    else:
        offset = np.array([[4.0], [0.0], [0.0]])
        unit = kernel_matrix(LAPLACE_3D, equivalent, offset + check)
        direct = kernel_matrix(LAPLACE_3D, h * equivalent, h * (offset + check))
    np.testing.assert_allclose(scale * unit, direct, rtol=1e-9, atol=1e-9 * np.abs(direct).max())


def test_a_kernel_without_homogeneity_is_refused():
    kernel = dataclasses.replace(LAPLACE_3D, name="no-scaling", homogeneity=None)
    with pytest.raises(ValueError, match="not homogeneous"):
        STEPS["uc2e"].level_scales(kernel.homogeneity, HALF_WIDTHS)
