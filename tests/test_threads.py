"""Threads: one Fmm called from several threads, and FMMs in several threads sharing compiled
kernels, give what one thread gives."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import plummer, sphere_surface

RNG = np.random.default_rng(41)
SPHERE = sphere_surface(20_000, RNG)
PLUMMER = plummer(15_000, RNG)


def test_one_fmm_called_from_four_threads():
    fmm = fmmloopy.Fmm(SPHERE, order=4)
    charges = [RNG.uniform(-1.0, 1.0, len(SPHERE)) for _ in range(8)]
    expected = [fmm(q) for q in charges]  # one thread
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(fmm, charges))
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_fmms_in_two_threads_share_kernels_safely():
    """Two point sets, the same order: the same compiled kernels launched from two threads."""
    fmms = [fmmloopy.Fmm(SPHERE, order=4), fmmloopy.Fmm(PLUMMER, order=4)]
    charges = [RNG.uniform(-1.0, 1.0, len(fmm_.tree.sources_soa[0])) for fmm_ in fmms]
    expected = [fmm(q) for fmm, q in zip(fmms, charges, strict=True)]

    def repeat(index: int) -> list[np.ndarray]:
        return [fmms[index](charges[index]) for _ in range(4)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(repeat, (0, 1)))
    for index, runs in enumerate(results):
        for got in runs:
            np.testing.assert_array_equal(got, expected[index])
