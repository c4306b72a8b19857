"""fmmloopy.maths.kifmm and fmmloopy.maths.expansion: the KIFMM's steps as data."""

import dataclasses

import numpy as np
import pytest

from fmmloopy.maths.expansion import SURFACE_RADII, Expansion
from fmmloopy.maths.geometry import M2L_CLASSES, transfer_class
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.kifmm import POINT_BUFFERS
from fmmloopy.maths.operators import OPERATORS, PAIRWISE, SURFACE
from fmmloopy.maths.precompute import (
    ARRAY_FIELDS,
    check_to_equivalent,
    kernel_matrix,
    matrix_shapes,
)
from fmmloopy.maths.scheme import KIFMM, KifmmScheme, Pass
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
    for step in KIFMM.steps.values():
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
    assert set(KIFMM.steps) >= {"p2m", "uc2e", "m2m", "p2l", "dc2e", "l2l", "l2p", "m2p", "p2p"}
    # M2L, compressed per transfer-vector class: compress, the cores over the class's V
    # entries, expand into the downward check potential.
    for name in M2L_CLASSES:
        compress, m2l, expand = (KIFMM.steps[f"m2l_{name}{part}"]
                                 for part in ("_compress", "", "_expand"))
        assert (compress.source, compress.target) == ("multipole", m2l.source)
        assert (m2l.target, expand.source, expand.target) == (
            expand.source, m2l.target, "check_down")
        assert m2l.box_list == f"v_{name}" and m2l.operator == "m2l"
        assert (compress.level_exponent, m2l.level_exponent, expand.level_exponent) == (0, 1, 0)
    with pytest.raises(ValueError, match="unknown KIFMM step"):
        KIFMM.step("x2y")


def test_buffers_follow_the_steps():
    assert KIFMM.steps["uc2e"].chain() == [("uc2e_first", "check_up", "check_up_rank"),
                                     ("uc2e_second", "check_up_rank", "multipole")]
    assert all(step.source not in POINT_BUFFERS or step.source == "strengths"
               for step in KIFMM.steps.values())


def test_buffer_widths_come_from_the_matrices_that_write_them():
    class_ranks = {name: 20 + i for i, name in enumerate(M2L_CLASSES)}
    ranks = {"uc2e": 50, "dc2e": 52} | {f"m2l_{name}": k for name, k in class_ranks.items()}
    widths = KIFMM.buffer_widths(56, matrix_shapes(56, ranks))
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
        KIFMM.buffer_widths(56, shapes)


def test_level_scales():
    np.testing.assert_allclose(KIFMM.steps["uc2e"].level_scales(-1.0, HALF_WIDTHS), HALF_WIDTHS)
    np.testing.assert_allclose(KIFMM.steps["dc2e"].level_scales(-1.0, HALF_WIDTHS), HALF_WIDTHS)
    np.testing.assert_allclose(KIFMM.steps["m2l_near_xp"].level_scales(-1.0, HALF_WIDTHS),
                               1 / HALF_WIDTHS)
    np.testing.assert_array_equal(KIFMM.steps["m2m"].level_scales(-1.0, HALF_WIDTHS), 1.0)
    np.testing.assert_array_equal(KIFMM.steps["l2l"].level_scales(-1.0, HALF_WIDTHS), 1.0)
    with pytest.raises(ValueError, match="not homogeneous"):
        KIFMM.steps["m2l_near_xp"].level_scales(None, HALF_WIDTHS)


@pytest.mark.parametrize("step", ["uc2e", "m2l_near_xp", "m2l_middle_yn", "m2l_far_zp"])
def test_level_scale_is_what_the_matrices_do_at_that_half_width(step):
    """The scale times the half-width-1 matrix equals the matrix computed directly at h."""
    order, h = 3, 0.125
    check, equivalent = surface(order, 2.95), surface(order, 1.05)
    scale = KIFMM.steps[step].level_scales(LAPLACE_3D.homogeneity, np.array([h]))[0]
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
        KIFMM.steps["uc2e"].level_scales(kernel.homogeneity, HALF_WIDTHS)


def test_the_scheme_holds_every_step_once_in_its_pass():
    """The passes in order make the steps' order; each step's pass is the one that holds it:
    the upward pass writes the multipoles, the leaves the potentials, the downward pass the
    rest; a scheme with a step twice, or a step it does not hold, is refused."""
    assert list(KIFMM.steps.values()) == [*KIFMM.upward, *KIFMM.downward, *KIFMM.leaves]
    for step in KIFMM.steps.values():
        expected = (Pass.UPWARD if step.target in ("check_up", "multipole") else
                    Pass.LEAVES if step.target == "potential" else Pass.DOWNWARD)
        assert KIFMM.pass_of(step) == expected, step.name
    assert [step.name for step in KIFMM.upward] == ["p2m", "uc2e", "m2m"]
    assert [step.name for step in KIFMM.leaves] == ["l2p", "m2p", "p2p"]
    with pytest.raises(ValueError, match="two steps named 'p2m'"):
        KifmmScheme(KIFMM.upward, KIFMM.upward, ())
    with pytest.raises(ValueError, match="not a step of this scheme"):
        KifmmScheme(KIFMM.upward, (), ()).pass_of(KIFMM.step("p2p"))


def test_buffer_pools_join_each_class_buffers_and_nothing_else():
    pools = KIFMM.buffer_pools()
    assert set(pools.values()) == {"m2l_compressed", "m2l_summed"}
    assert sorted(pools) == sorted(f"{buffer}_{name}" for name in M2L_CLASSES
                                   for buffer in ("multipole", "check_down"))


def test_kernel_requests_ask_each_kernel_once_for_every_step():
    requests = KIFMM.kernel_requests(56, None, LAPLACE_3D)
    assert len(requests) == len({(op, kernel, tuple(sorted(sizes.items())))
                                 for op, kernel, sizes in requests})
    assert {op for op, _, _ in requests} == {step.operator for step in KIFMM.steps.values()}
