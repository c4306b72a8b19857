"""``fmmloopy.fmm3d``, FMM3D's Python interface: every flag combination, one and three
densities, Laplace and Helmholtz (real, negative and imaginary ``zk``), against sums written
here in numpy from FMM3D's documented formulas (kernels with ``1 / (4 pi)``, a dipole's
``v . grad_y G``, the point itself left out, Hessians ``xx, yy, zz, xy, xz, yz``); ``thresh``;
and the messages of bad input."""

import math

import numpy as np
import pytest

import fmmloopy.fmm3d as fmm

#: FMM3D's Hessian order as (row, column).
HESSIAN_ORDER = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])


def reference(zk, sources, targets, charges, dipvec, nd, thresh=0.0):
    """Potential, gradient and Hessian at ``targets`` ``(3, m)`` in FMM3D's layout, from the
    closed forms of ``G = exp(i zk r) / (4 pi r)``: with ``f(r) = G``, ``g = f' / r``,
    ``grad G = g d``, ``d^2 G = g I + (g' / r) d d^T``, a dipole's field ``-v . grad_x`` of the
    charge's (numpy, float64 or complex128; pairs closer than ``thresh``, or at one point,
    left out)."""
    d = targets.T[:, None, :] - sources.T[None, :, :]  # (m, n, 3)
    r = np.sqrt(np.einsum("mnk,mnk->mn", d, d))
    apart = r > max(thresh, 0.0)
    r = np.where(apart, r, 1.0)
    ik = 1j * zk
    f = np.exp(ik * r) / (4 * math.pi * r) * apart
    g = f * (ik * r - 1) / r ** 2  # f'(r) / r
    dg = f * (ik * ik * r * r - 3 * ik * r + 3) / r ** 4  # g'(r) / r
    h = f * (ik ** 3 * r ** 3 - 6 * ik * ik * r * r + 15 * ik * r - 15) / r ** 6  # dg'(r) / r
    c = np.zeros((nd, sources.shape[1]), complex) if charges is None else \
        np.asarray(charges).reshape(nd, -1)
    v = np.zeros((nd, 3, sources.shape[1]), complex) if dipvec is None else \
        np.asarray(dipvec).reshape(nd, 3, -1)
    eye = np.eye(3)
    dd = np.einsum("mni,mnj->mnij", d, d)
    vd = np.einsum("mnk,dkn->dmn", d, v)  # (nd, m, n)
    # charge: G, g d, g I + dg d d^T; dipole (-v . grad_x): -g vd, -(g v + dg vd d),
    # -(dg (vd I + v d^T + d v^T) + h vd d d^T)
    pot = np.einsum("mn,dn->dm", f, c) - np.einsum("mn,dmn->dm", g, vd)
    grad = (np.einsum("mn,mnk,dn->dkm", g, d, c)
            - np.einsum("mn,dkn->dkm", g, v) - np.einsum("mn,dmn,mnk->dkm", dg, vd, d))
    vdt = np.einsum("dkn,mnl->dmnkl", v, d)
    hess = (np.einsum("mn,kl,dn->dklm", g, eye, c) + np.einsum("mn,mnkl,dn->dklm", dg, dd, c)
            - np.einsum("mn,dmn,kl->dklm", dg, vd, eye)
            - np.einsum("mn,dmnkl->dklm", dg, vdt + vdt.transpose(0, 1, 2, 4, 3))
            - np.einsum("mn,dmn,mnkl->dklm", h, vd, dd))
    hess = hess[:, HESSIAN_ORDER[0], HESSIAN_ORDER[1]]
    if zk == 0:
        pot, grad, hess = pot.real, grad.real, hess.real
    if nd == 1:
        pot, grad, hess = pot[0], grad[0], hess[0]
    return pot, grad, hess


def error(value, exact) -> float:
    return float(np.linalg.norm(value - exact) / np.linalg.norm(exact))


def _problem(rng, n, nd, complex_values):
    sources = rng.uniform(0, 1, (3, n))
    targets = rng.uniform(-0.1, 1.1, (3, 150))

    def draw(*shape):
        shape = shape if nd == 1 else (nd, *shape)
        values = rng.uniform(-1, 1, shape)
        return values + 1j * rng.uniform(-1, 1, shape) if complex_values else values
    return sources, targets, draw(n), draw(3, n)


#: eps asked of the FMMs: the outputs' relative errors are held to it.
EPS = 1e-6


@pytest.mark.parametrize("nd", [1, 3])
@pytest.mark.parametrize("densities", ["charges", "dipvec", "both"])
def test_lfmm3d_every_flag_against_the_closed_forms(nd, densities):
    rng = np.random.default_rng(nd)
    sources, targets, charges, dipvec = _problem(rng, 800, nd, False)
    given = {"charges": charges if densities != "dipvec" else None,
             "dipvec": dipvec if densities != "charges" else None}
    exact_sources = reference(0.0, sources, sources, given["charges"], given["dipvec"], nd)
    exact_targets = reference(0.0, sources, targets, given["charges"], given["dipvec"], nd)
    for pg, pgt in [(1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (0, 3), (1, 2), (3, 3)]:
        out = fmm.lfmm3d(eps=EPS, sources=sources, targets=targets, pg=pg, pgt=pgt, nd=nd,
                         **given)
        for names, level, exact in ((("pot", "grad", "hess"), pg, exact_sources),
                                    (("pottarg", "gradtarg", "hesstarg"), pgt, exact_targets)):
            for index, name in enumerate(names):
                value = getattr(out, name)
                if index >= level:
                    assert value is None, (pg, pgt, name)
                    continue
                assert value.shape == exact[index].shape and value.dtype == np.float64
                assert error(value, exact[index]) < EPS, (pg, pgt, name)
        assert out.ier == 0


@pytest.mark.parametrize("zk", [1.1 + 0j, -2.0, 3j])
def test_hfmm3d_and_h3ddir_against_the_closed_forms(zk):
    """A real ``zk`` is Helmholtz, a negative one its conjugate waves, ``3j`` Yukawa
    ``exp(-3 r) / (4 pi r)`` (complex densities on a real kernel)."""
    rng = np.random.default_rng(7)
    nd = 3
    sources, targets, charges, dipvec = _problem(rng, 1200, nd, True)
    exact = reference(complex(zk), sources, targets, charges, dipvec, nd)
    out = fmm.hfmm3d(eps=EPS, zk=zk, sources=sources, charges=charges, dipvec=dipvec,
                     targets=targets, pgt=2, nd=nd)
    assert out.pottarg.shape == (nd, 150) and out.gradtarg.shape == (nd, 3, 150)
    assert error(out.pottarg, exact[0]) < EPS and error(out.gradtarg, exact[1]) < EPS
    direct = fmm.h3ddir(zk=zk, sources=sources, targets=targets, charges=charges,
                        dipvec=dipvec, pgt=3, nd=nd)
    for value, reference_value in zip((direct.pottarg, direct.gradtarg, direct.hesstarg),
                                      exact, strict=True):
        assert error(value, reference_value) < 1e-12


def test_l3ddir_hessians_and_thresh():
    """The direct sum's Hessians in FMM3D's order; ``thresh`` leaves out the pairs closer than
    it (here each target's source 0.005 away), and a target on a source leaves that one out.
    The terms left out are summed on the device and subtracted on the host, so what remains
    carries their rounding: the Hessian's term at 0.005 is about 1e3 times the sum here (1e-16
    times that: 1e-13; 1e-13 to 3e-13 measured, 1e-11 asserted; 1e-15 without thresh)."""
    rng = np.random.default_rng(4)
    sources = rng.uniform(0, 1, (3, 300))
    charges, dipvec = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, (3, 300))
    targets = np.concatenate([sources[:, :5], sources[:, 5:10] + 5e-3], axis=1)
    for thresh, tolerance in ((1e-16, 1e-13), (2e-2, 1e-11)):
        out = fmm.l3ddir(sources=sources, targets=targets, charges=charges, dipvec=dipvec,
                         pgt=3, thresh=thresh)
        exact = reference(0.0, sources, targets, charges, dipvec, 1, thresh)
        assert out.hesstarg.shape == (6, 10)
        for value, reference_value in zip((out.pottarg, out.gradtarg, out.hesstarg), exact,
                                          strict=True):
            assert error(value, reference_value) < tolerance, thresh


def test_comperr_is_the_relative_l2_error_of_the_fields_asked_for():
    exact, got = fmm.Output(), fmm.Output()
    exact.pot, exact.grad = np.array([3.0, 4.0, 100.0]), np.ones((3, 3))
    got.pot, got.grad = np.array([3.0, 4.0, 0.0]), np.ones((3, 3)) * 2
    assert fmm.comperr(ntest=2, out=got, outex=exact, pg=1) == 0.0
    assert math.isclose(fmm.comperr(ntest=2, out=got, outex=exact, pg=2),
                        math.sqrt(6 / (25 + 6)))


def test_bad_input_names_the_argument():
    rng = np.random.default_rng(0)
    sources = rng.random((3, 50))
    charges = rng.random(50)
    cases = [
        (dict(sources=sources.T, charges=charges, pg=1), "sources must have shape \\(3, n\\)"),
        (dict(sources=sources, charges=charges[:40], pg=1), "charges must have shape \\(50,\\)"),
        (dict(sources=sources, charges=np.ones((2, 50)), pg=1, nd=3),
         "charges must have shape \\(3, 50\\)"),
        (dict(sources=sources, dipvec=np.ones((50, 3)), pg=1), "dipvec must have shape"),
        (dict(sources=sources, charges=charges + 1j, pg=1), "must be real"),
        (dict(sources=sources, charges=charges, pg=4), "pg must be an integer from 0 to 3"),
        (dict(sources=sources, charges=charges, pgt=1), "give targets"),
        (dict(sources=sources, pg=1), "give charges, dipvec or both"),
        (dict(sources=sources, charges=charges, pg=1, nd=0), "nd must be a positive"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            fmm.lfmm3d(eps=1e-6, **arguments)
    with pytest.raises(ValueError, match="eps must be a number between 0 and 1"):
        fmm.lfmm3d(eps=0, sources=sources, charges=charges, pg=1)
    with pytest.raises(ValueError, match="a zk with both parts"):
        fmm.hfmm3d(eps=1e-6, zk=1 + 1j, sources=sources, charges=charges + 0j, pg=1)
    with pytest.raises(ValueError, match="thresh must be a number"):
        fmm.l3ddir(sources=sources, targets=sources, charges=charges, pgt=1, thresh=-1.0)
    with pytest.warns(UserWarning, match="nothing to compute"):
        out = fmm.lfmm3d(eps=1e-6, sources=sources, charges=charges)
    assert out.pot is None and out.ier == 0


def test_a_call_with_the_same_points_reuses_the_last_set_up(monkeypatch):
    """The interface keeps its last FMM: a call with equal points, kernel, eps and fields
    evaluates on it (new densities, exact results); other eps, other fields, or points changed
    in place build a new one; ``keep_last_fmm(False)`` keeps none."""
    import fmmloopy.interfaces.fmm3d_reuse as reuse
    built = []

    class Counted(reuse.Fmm):
        def __init__(self, *args, **kwargs):
            built.append(kwargs["eps_for"])
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(reuse, "Fmm", Counted)
    rng = np.random.default_rng(11)
    sources, _, charges, _ = _problem(rng, 600, 1, False)
    fmm.keep_last_fmm(False)  # nothing kept from other tests
    fmm.keep_last_fmm(True)
    try:
        fmm.lfmm3d(eps=EPS, sources=sources, charges=charges, pg=2)
        other = rng.uniform(-1, 1, 600)
        second = fmm.lfmm3d(eps=EPS, sources=sources.copy(), charges=other, pg=2)
        assert len(built) == 1
        exact = reference(0.0, sources, sources, other, None, 1)
        assert error(second.pot, exact[0]) < EPS and error(second.grad, exact[1]) < EPS
        fmm.lfmm3d(eps=1e-4, sources=sources, charges=other, pg=2)
        fmm.lfmm3d(eps=1e-4, sources=sources, charges=other, pg=1)
        assert len(built) == 3
        sources[0, 0] += 0.01  # in place: new points
        moved = fmm.lfmm3d(eps=1e-4, sources=sources, charges=other, pg=1)
        assert len(built) == 4
        assert error(moved.pot, reference(0.0, sources, sources, other, None, 1)[0]) < 1e-4
        # (3, n) in Fortran order: its transpose is the interface's (n, 3) without a copy, a
        # view of this array; changed in place it is new points all the same.
        columns = np.asfortranarray(sources + 0.001)
        fmm.lfmm3d(eps=1e-4, sources=columns, charges=other, pg=1)
        assert len(built) == 5
        columns[1, 3] += 0.01
        shifted = fmm.lfmm3d(eps=1e-4, sources=columns, charges=other, pg=1)
        assert len(built) == 6
        assert error(shifted.pot, reference(0.0, columns, columns, other, None, 1)[0]) < 1e-4
        fmm.keep_last_fmm(False)
        for _ in range(2):
            fmm.lfmm3d(eps=1e-4, sources=sources, charges=other, pg=1)
        assert len(built) == 8
    finally:
        fmm.keep_last_fmm(True)


@pytest.mark.parametrize("call", ["lfmm3d", "hfmm3d"])
def test_sources_and_targets_together_hold_each_output_to_eps(call):
    """FMM3D holds the outputs at the sources and at the targets to eps each: sparse targets
    beside a dense cluster of sources took an order the points' tree found enough for the two
    together (32 times eps 1e-3 on the targets alone, before)."""
    rng = np.random.default_rng(12)
    radius = rng.random(1600) ** 3 * 0.5
    direction = rng.standard_normal((3, 1600))
    sources = 0.5 + radius * direction / np.linalg.norm(direction, axis=0)
    targets = rng.random((3, 200))
    charges = rng.uniform(-1, 1, 1600) + 1j * rng.uniform(-1, 1, 1600)
    given = {"zk": 1.1} if call == "hfmm3d" else {}
    if call == "lfmm3d":
        charges = charges.real
    eps = 1e-3
    out = getattr(fmm, call)(eps=eps, sources=sources, targets=targets, charges=charges, pg=2,
                             pgt=2, **given)
    direct = getattr(fmm, call[0] + "3ddir")
    at_sources = direct(sources=sources, targets=sources, charges=charges, pgt=2, **given)
    at_targets = direct(sources=sources, targets=targets, charges=charges, pgt=2, **given)
    for value, exact in ((out.pot, at_sources.pottarg), (out.grad, at_sources.gradtarg),
                         (out.pottarg, at_targets.pottarg), (out.gradtarg, at_targets.gradtarg)):
        assert error(value, exact) < eps
