"""``fmmloopy.fmm3d``'s Maxwell sums (``emfmm3d``, ``em3ddir``) against FMM3D's definition
written here in numpy: ``E = curl S[h] + S[e] + grad S[q]``, ``S`` the single layer of
``exp(i k r) / (4 pi r)``, with ``curl E`` and ``div E`` from the closed forms of ``G``'s
derivatives (``grad G = g d``, ``d^2 G = g I + g' / r d d^T``)."""

import math

import numpy as np
import pytest

import fmmloopy.fmm3d as fmm


def maxwell_reference(zk, sources, targets, h, e, q):
    """E, curl E ``(3, m)`` and div E ``(m,)`` of one density (numpy, complex128)."""
    d = targets.T[:, None, :] - sources.T[None, :, :]
    r = np.linalg.norm(d, axis=2)
    ik = 1j * zk
    green = np.exp(ik * r) / (4 * math.pi * r)
    g = green * (ik * r - 1) / r ** 2
    dg = green * (ik * ik * r * r - 3 * ik * r + 3) / r ** 4
    field = (np.einsum("mn,mnk->mk", g, np.cross(d, h.T[None])) + green @ e.T
             + np.einsum("mn,mnk,n->mk", g, d, q))
    dh = np.einsum("mnk,kn->mn", d, h)
    curl = (np.einsum("mn,kn->mk", g + zk * zk * green, h)
            + np.einsum("mn,mnk->mk", dg * dh, d)
            + np.einsum("mn,mnk->mk", g, np.cross(d, e.T[None])))
    divergence = (g * np.einsum("mnk,kn->mn", d, e)).sum(1) - zk * zk * (green @ q)
    return field.T, curl.T, divergence


def _densities(rng, n, nd):
    def draw(*shape):
        shape = (nd, *shape)
        return rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape)
    return draw(3, n), draw(3, n), draw(n)


@pytest.mark.parametrize("zk", [1.1, -2.0, 1.5j])
def test_em3ddir_is_fmm3d_s_definition(zk):
    """Every output of every density kind, to rounding (1e-12), nd = 2; FMM3D's shapes
    ``(nd, 3, nt)``, ``(nd, nt)`` (the nd axis kept for nd = 1 too)."""
    rng = np.random.default_rng(2)
    sources, targets = rng.random((3, 200)), rng.random((3, 15)) + 1.2
    h, e, q = _densities(rng, 200, 2)
    out = fmm.em3ddir(zk=zk, sources=sources, targets=targets, h_current=h, e_current=e,
                      e_charge=q, ifE=1, ifcurlE=1, ifdivE=1, nd=2)
    assert out.E.shape == (2, 3, 15) and out.curlE.shape == (2, 3, 15)
    assert out.divE.shape == (2, 15)
    for density in range(2):
        exact = maxwell_reference(complex(zk), sources, targets, h[density], e[density],
                                  q[density])
        for value, reference in zip((out.E, out.curlE, out.divE), exact, strict=True):
            got = value[density]
            assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < 1e-12
    one = fmm.em3ddir(zk=zk, sources=sources, targets=targets, e_charge=q[0], ifE=1)
    assert one.E.shape == (1, 3, 15) and one.curlE is None and one.divE is None


def test_emfmm3d_matches_em3ddir_within_eps():
    """The FMM at eps 1e-5 (Helmholtz of zk 1.1 over a unit box: 0.2 wavelengths), every flag;
    ``curl E`` of a magnetic current takes the Hessians (their table rows)."""
    rng = np.random.default_rng(5)
    sources, targets = rng.random((3, 3000)), rng.random((3, 300))
    h, e, q = _densities(rng, 3000, 1)
    given = {"h_current": h[0], "e_current": e[0], "e_charge": q[0]}
    exact = fmm.em3ddir(zk=1.1, sources=sources, targets=targets, ifE=1, ifcurlE=1, ifdivE=1,
                        **given)
    out = fmm.emfmm3d(eps=1e-5, zk=1.1, sources=sources, targets=targets, ifE=1, ifcurlE=1,
                      ifdivE=1, **given)
    for name in ("E", "curlE", "divE"):
        value, reference = getattr(out, name), getattr(exact, name)
        assert np.linalg.norm(value - reference) / np.linalg.norm(reference) < 1e-5, name


def test_maxwell_bad_input_names_the_argument():
    sources = np.random.default_rng(0).random((3, 30))
    with pytest.raises(ValueError, match="give targets"):
        fmm.emfmm3d(eps=1e-6, zk=1.0, sources=sources, e_charge=np.ones(30) + 0j, ifE=1)
    with pytest.raises(ValueError, match="give h_current, e_current, e_charge"):
        fmm.emfmm3d(eps=1e-6, zk=1.0, sources=sources, targets=sources, ifE=1)
    with pytest.raises(ValueError, match="ifcurlE must be an integer from 0 to 1"):
        fmm.emfmm3d(eps=1e-6, zk=1.0, sources=sources, targets=sources,
                    e_charge=np.ones(30) + 0j, ifcurlE=2)
    with pytest.raises(ValueError, match="h_current must have shape \\(3, 30\\)"):
        fmm.em3ddir(zk=1.0, sources=sources, targets=sources, h_current=np.ones((30, 3)), ifE=1)
