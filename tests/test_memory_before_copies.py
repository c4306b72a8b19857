"""The memory check comes before any copy of the points.

The estimate needs only the point counts, so ``Fmm`` checks shapes and dtypes, estimates and
compares with the memory available, and only then converts the points to float64. Before, the
conversion (and the shift to the bounding box's centre) came first: 2e8 float32 points reached
7.5 GB before the refusal. ``tracemalloc`` sees numpy's allocations.
"""

import tracemalloc

import numpy as np
import pytest

import fmmloopy
from fmmloopy.execution.resources import ResourceLimitError


@pytest.mark.parametrize("separate_targets", [False, True])
def test_refusal_comes_before_any_copy_of_the_points(separate_targets):
    rng = np.random.default_rng(6)
    points = rng.random((2_000_000, 3), dtype=np.float32)  # 24 MB; a float64 copy is 48 MB
    targets = rng.random((1_000_000, 3), dtype=np.float32) if separate_targets else None
    tracemalloc.start()
    try:
        with pytest.raises(ResourceLimitError, match="needs an estimated"):
            fmmloopy.Fmm(points, targets, memory_limit=10 ** 6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < points.nbytes / 4, f"{peak / 1e6:.1f} MB allocated before the refusal"


def test_points_that_fit_are_still_checked_for_nan():
    points = np.random.default_rng(6).random((100, 3), dtype=np.float32)
    points[17, 1] = np.nan
    with pytest.raises(ValueError, match="sources contain NaN or inf: 1 of 100 points"):
        fmmloopy.Fmm(points)
