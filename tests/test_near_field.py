"""The near field (P2P over the U list) against numpy, through the public pieces and the example."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmmloopy.distributions import plummer
from fmmloopy.near_field import NearField

EXAMPLE = Path(__file__).parents[1] / "examples" / "laplace_sphere.py"


@pytest.fixture(scope="module")
def near_field_pair():
    rng = np.random.default_rng(4)
    sources = plummer(3000, rng)
    targets = rng.uniform(-2, 2, (1000, 3))
    return NearField(sources, targets, n_crit=40), rng.standard_normal(3000)


def test_near_field_matches_numpy_at_every_target(near_field_pair):
    near, charges = near_field_pair
    potentials = near(charges)
    reference = near.reference(charges, np.arange(len(potentials)))
    # Sums of at most a few thousand O(1) terms in float64: ~1e-15 relative.
    assert np.linalg.norm(potentials - reference) / np.linalg.norm(reference) < 1e-13


def test_repeated_calls_reuse_the_setup_and_follow_the_charges(near_field_pair):
    near, charges = near_field_pair
    first = near(charges)
    kernel = near.p2p
    assert np.array_equal(near(charges), first)
    np.testing.assert_allclose(near(2 * charges), 2 * first, rtol=1e-15, atol=0)
    assert near.p2p is kernel


@pytest.mark.parametrize("charges,message", [
    (np.ones(5), r"shape \(3000,\)"),
    (np.ones((3000, 1)), r"shape \(3000,\)"),
    (np.full(3000, np.nan), "NaN or inf"),
    (np.ones(3000, dtype=complex), "real numbers"),
])
def test_bad_charges_are_rejected_with_a_clear_message(near_field_pair, charges, message):
    near, _ = near_field_pair
    with pytest.raises(ValueError, match=message):
        near(charges)


def test_example_runs_and_reports_json():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--n", "4000", "--n-crit", "64",
                           "--check-targets", "200", "--repeats", "1", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n"] == 4000 and report["nleaves"] > 1
    assert report["list_sizes"]["U"]["max"] <= 60
    assert report["rel_l2_error"] < 1e-13
