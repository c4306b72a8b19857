"""The roofline of ``fmmloopy bench``: the measured ceilings, the flops per pair counted from a
Green's function's expression, and the least traffic of a launch, each against a count made by
hand."""

import numpy as np
import pymbolic.primitives as prim
import pytest
from pymbolic import var

from fmmloopy.cli.bench import step_roofline
from fmmloopy.execution.roofline import Peaks, fma_source, measure_peaks, roofline
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.operators import OPERATORS


def test_roofline_is_the_lower_of_the_two_ceilings():
    peaks = Peaks(flops=40e9, bandwidth=10e9, source="by hand")
    assert peaks.ridge_intensity == 4.0
    assert roofline(peaks, 1.0) == 10e9  # memory-bound: intensity x bandwidth
    assert roofline(peaks, 4.0) == 40e9
    assert roofline(peaks, 100.0) == 40e9  # compute-bound: the peak
    intensity, roof, share = step_roofline(2e9, 10**9, 0.5, peaks)
    assert (intensity, roof, share) == (2.0, 20e9, 0.2)  # 4 GFLOP/s of an attainable 20


def test_measured_peaks_are_plausible_and_measured_once(queue):
    peaks = measure_peaks(queue, repeats=1)
    assert measure_peaks(queue) is peaks
    assert "measured" in peaks.source
    # Lower bounds no working CPU of the last 15 years misses (one core, scalar FMA at 1 GHz:
    # 2 GFLOP/s; a memory channel: 1 GB/s); the upper ones exclude timing garbage.
    assert 1e9 < peaks.flops < 1e14
    assert 1e9 < peaks.bandwidth < 1e13


@pytest.mark.parametrize("width", [1, 4, 8])
def test_the_fma_probe_has_the_chains_asked_for(width):
    source = fma_source(width, 3)
    assert source.count("* a + b;") == 3 and "acc2 = acc2 * a + b;" in source
    assert (f"double{width} a" in source) == (width > 1)


def test_flops_per_pair_of_laplace():
    # offset 3, r^2 = 3 products + 2 sums, sqrt, reciprocal, the 1/(4 pi) factor (the condition
    # r^2 > 0 reuses r^2), strength times value and the sum: 3 + 8 + 2.
    assert get_kernel("laplace").flops_per_pair() == 13


def test_flops_per_pair_counts_each_distinct_subexpression_once():
    d0, d1, d2 = var("d0"), var("d1"), var("d2")
    r2 = d0 * d0 + d1 * d1 + d2 * d2
    r = prim.Call(var("sqrt"), (r2,))
    # exp(-2 r) / r: r^2 (5), sqrt (1), -2 r (1), exp (1), quotient (1); r appears twice.
    # The guard r2 > 0 counts nothing more: its r2 is the one counted.
    yukawa = prim.If(prim.Comparison(r2, ">", 0),
                     prim.Quotient(prim.Call(var("exp"), (-2 * r,)), r), 0)
    green = GreenKernel("test-yukawa", yukawa)
    assert green.flops_per_pair() == 3 + 9 + 2
    # Constants fold away: (2 * 3) * d0 counts one product.
    assert GreenKernel("c", prim.Product((2, 3, d0)), 1).flops_per_pair() == 3 + 2 + 2


def _rows(target_boxes, lists, matrices=None):
    starts = np.concatenate([[0], np.cumsum([len(entry) for entry in lists])])
    rows = {"target_boxes": np.array(target_boxes), "source_box_starts": starts,
            "source_box_lists": np.concatenate([np.array(entry, dtype=int) for entry in lists])}
    if matrices is not None:
        rows["matrix_indices"] = np.concatenate([np.array(m, dtype=int) for m in matrices])
    return rows


def test_traffic_of_a_matvec_counts_each_matrix_and_source_once():
    # Target boxes 0 and 1 read sources {2, 3} and {3, 4} through matrices {0, 1} and {1, 5}.
    rows = _rows([0, 1], [[2, 3], [3, 4]], [[0, 1], [1, 5]])
    sizes = {"n_target_coeffs": 5, "n_source_coeffs": 7}
    expected = (3 * 5 * 7 + 3 * 7 + 2 * 2 * 5) * 8
    assert OPERATORS["m2l"].traffic(rows, sizes, np.zeros(5), np.zeros(5)) == expected
    # Without matrix indices (one matrix for every entry).
    rows.pop("matrix_indices")
    assert OPERATORS["m2l"].traffic(rows, sizes, np.zeros(5), np.zeros(5)) == expected - 2 * 35 * 8


def test_traffic_of_pairwise_launches_counts_particles_and_surface_values():
    counts_t = np.array([4, 0, 6, 1])
    counts_s = np.array([2, 3, 5, 7])
    rows = _rows([0, 2], [[0, 1, 3], [1, 3]])  # sources {0, 1, 3}: 2 + 3 + 7 = 12 particles
    sizes = {"n_surface": 26}
    # P2P: targets 4 + 6 particles x (3 coordinates + result read and written), sources 12 x 4.
    assert OPERATORS["p2p"].traffic(rows, {}, counts_t, counts_s) == (10 * 5 + 12 * 4) * 8
    # P2M: surface targets (a value read and written per point of 2 boxes), particle sources.
    assert OPERATORS["p2m"].traffic(rows, sizes, counts_t, counts_s) == (
        2 * 26 * 2 + 12 * 4) * 8
    # M2P: particle targets, surface sources (3 boxes x 26 values).
    assert OPERATORS["m2p"].traffic(rows, sizes, counts_t, counts_s) == (10 * 5 + 3 * 26) * 8


def test_bench_rows_carry_the_roofline_of_each_step():
    from fmmloopy.cli.bench import run_bench
    peaks = Peaks(flops=50e9, bandwidth=10e9, source="by hand")
    rows, info = run_bench(n=3000, order=3, n_crit=40, repeats=1, peaks=peaks,
                           operators=["p2p", "m2l"])
    assert info["peak_gflops"] == 50 and info["flops_per_pair"] == {"p2p": 13}
    for row in rows:
        per_unit = 13 if row.unit == "pairs" else 1
        assert row.flops == row.work * per_unit
        assert row.roof == min(50e9, row.intensity * 10e9)
        assert row.roof_share == pytest.approx(row.flops / row.seconds / row.roof)
    # With the gradient of charges and dipoles, P2P's pairs cost the kernel matrix's flops and
    # move 4 strengths per source and 4 outputs per target.
    rows, info = run_bench(n=3000, order=3, n_crit=40, repeats=1, peaks=peaks,
                           operators=["p2p"], gradient=True, dipoles=True)
    per_pair = get_kernel("laplace").with_fields(("potential", "gradient"),
                                                 ("charge", "dipole")).flops_per_pair()
    assert info["flops_per_pair"] == {"p2p": per_pair} and per_pair > 13
    assert info["kernel"] == "laplace (potential+gradient of charge+dipole)"
    assert rows[0].flops == rows[0].work * per_pair
