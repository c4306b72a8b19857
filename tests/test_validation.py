"""Bad input at the public API (``Fmm``, ``evaluate``) and the command line: each gets a clear
ValueError before any kernel runs; awkward but valid input (strided, Fortran-ordered, read-only,
float32, lists, N = 0, N = 1) gets the right answer. docs/robustness.md lists the messages."""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fmmloopy
from fmmloopy.base.validation import validate_charges, validate_points
from fmmloopy.cli.main import main

# Small problems at one order, so every kernel is compiled once for the whole module.
ORDER = 4
RNG = np.random.default_rng(60)
POINTS = RNG.random((400, 3))
CHARGES = RNG.uniform(-1, 1, 400)


@pytest.fixture(scope="module")
def fmm():
    return fmmloopy.Fmm(POINTS, order=ORDER, n_crit=40)


@pytest.fixture(scope="module")
def expected(fmm):
    return fmm(CHARGES)


def _nan_at(index):
    points = POINTS.copy()
    points[index, 1] = np.nan
    return points


@pytest.mark.parametrize("points,message", [
    (POINTS.T, r"got shape \(3, 400\); this looks like the \(3, N\) layout of FMM3D: pass "
               r"sources\.T"),
    (POINTS[:, :2], r"got shape \(400, 2\); points are 3-D"),
    (POINTS[0], r"got shape \(3,\); a single point is sources\.reshape\(1, 3\)"),
    (POINTS.ravel(), r"sources\.reshape\(-1, 3\)"),
    (POINTS[:, :, None], r"must have shape \(N, 3\), one point per row; got shape "
                         r"\(400, 3, 1\)$"),
    (np.float64(1.0), r"got shape \(\)"),
    (POINTS.astype(complex), "must be real numbers, got dtype complex128; pass the real and "
                             "imaginary parts separately"),
    (POINTS > 0.5, r"must be real numbers \(float or integer\), got dtype bool"),
    (POINTS.astype(object), "got dtype object"),
    ("points.npy", "got dtype <U10"),
    (None, "sources must be an array of real numbers, got None"),
    ([[0, 0, 0], [1, 1]], "sources could not be read as an array of real numbers"),
    (_nan_at(17), r"sources contain NaN or inf: 1 of 400 points \(the first at index 17: "
                  r"\[.* nan .*\]\); the kernels assume finite input"),
    (np.where(POINTS > 0.99, np.inf, POINTS), "sources contain NaN or inf"),
    (np.where(POINTS > 0.99, -np.inf, POINTS), "sources contain NaN or inf"),
    (np.array([[-1e308, 0, 0], [1e308, 0, 0]]), r"the points span more than float64 holds "
                                                r"\(their coordinates differ by more than "
                                                r"1\.8e308\); scale them down first"),
])
def test_bad_sources_are_rejected_with_a_clear_message(points, message):
    with pytest.raises(ValueError, match=message):
        fmmloopy.Fmm(points, order=ORDER)
    with pytest.raises(ValueError, match=message):
        fmmloopy.evaluate(points, CHARGES, order=ORDER)


@pytest.mark.parametrize("targets,message", [
    (RNG.random((3, 50)), r"targets must have shape \(N, 3\).*pass targets\.T"),
    (np.full((5, 3), np.nan), "targets contain NaN or inf: 5 of 5 points"),
    (np.ones((5, 3), dtype=complex), "targets must be real numbers"),
])
def test_bad_targets_are_rejected_with_a_clear_message(targets, message):
    with pytest.raises(ValueError, match=message):
        fmmloopy.Fmm(POINTS, targets, order=ORDER)


def _charges_with(value, index=3):
    charges = CHARGES.copy()
    charges[index] = value
    return charges


@pytest.mark.parametrize("charges,message", [
    (CHARGES[:-1], r"shape \(400,\) or \(400, k\), one row per source; got \(399,\): 399 "
                   "charges for 400 sources"),
    (CHARGES[:, None, None], r"got \(400, 1, 1\); pass charges\.ravel\(\)"),
    (CHARGES[None, :], r"got \(1, 400\); pass charges\.T \(one row per source, one column "
                       r"per vector\)"),
    (1.0, r"got \(\)"),
    (_charges_with(np.nan), r"charges contain NaN or inf: 1 of 400 charges \(the first at "
                            r"index 3: nan\)"),
    (_charges_with(np.inf, 399), "index 399: inf"),
    (CHARGES.astype(complex), "charges must be real numbers, got dtype complex128"),
    (CHARGES > 0, "got dtype bool"),
    (None, "charges must be an array of real numbers, got None"),
])
def test_bad_charges_are_rejected_with_a_clear_message(fmm, charges, message):
    with pytest.raises(ValueError, match=message):
        fmm(charges)


@pytest.mark.parametrize("options,message", [
    ({"order": 1}, r"order must be an integer in \[2, 16\], got 1"),
    ({"order": 17}, r"order must be an integer in \[2, 16\], got 17"),
    ({"order": 6.0}, "got 6.0"),
    ({"order": "6"}, "got '6'"),
    ({"order": True}, "got True"),
    ({"n_crit": 0}, "n_crit must be an integer >= 1, got 0"),
    ({"n_crit": 1.5}, "n_crit must be an integer >= 1, got 1.5"),
    ({"max_depth": 22}, r"max_depth must be an integer in \[0, 21\], got 22"),
    ({"max_depth": -1}, r"max_depth must be an integer in \[0, 21\]"),
    ({"memory_limit": 0}, "memory_limit must be a positive number of bytes, got 0"),
    ({"memory_limit": "8GB"}, "memory_limit must be a positive number of bytes"),
    ({"kernel": "laplase"}, r"unknown kernel 'laplase': not one of \[.*'laplace', "),
    ({"device": "no-such-device"}, "no OpenCL device matches 'no-such-device'; available"),
    ({"recipes": {"p2q": "cpu"}}, r"recipes: unknown operator\(s\) \['p2q'\]; operators: "),
    ({"recipes": {"p2p": 3}}, "recipe names must be strings"),
    ({"recipes": 3}, "recipes must be a recipe name or a mapping operator -> recipe name"),
])
def test_options_out_of_range_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        fmmloopy.Fmm(POINTS, **({"order": ORDER} | options))


def test_unknown_recipe_name_is_a_lookup_error_naming_the_operator():
    with pytest.raises(LookupError, match="no recipe 'nope' for operator 'p2p'"):
        fmmloopy.Fmm(POINTS, order=ORDER, recipes={"p2p": "nope"})


def _strided(array):
    """A non-contiguous view holding the same values."""
    doubled = np.repeat(array, 2, axis=0)
    return doubled[::2]


def _read_only(array):
    copy = array.copy()
    copy.setflags(write=False)
    return copy


@pytest.mark.parametrize("convert", [
    _strided, np.asfortranarray, _read_only, lambda a: a.tolist(),
    lambda a: np.ascontiguousarray(a.T).T,  # C-contiguous (3, N) seen as (N, 3)
], ids=["strided", "fortran", "read-only", "list", "transposed-view"])
def test_any_memory_layout_gives_bitwise_the_same_result(expected, convert):
    points, charges = convert(POINTS), convert(CHARGES)
    result = fmmloopy.Fmm(points, order=ORDER, n_crit=40)(charges)
    assert np.array_equal(result, expected)
    np.testing.assert_array_equal(np.asarray(points), POINTS)  # inputs left untouched
    np.testing.assert_array_equal(np.asarray(charges), CHARGES)


def test_integer_and_float32_input_is_converted_to_float64():
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    charges = np.arange(len(grid)) % 3 - 1
    as_float = fmmloopy.Fmm(grid.astype(float), order=ORDER, n_crit=8)(charges.astype(float))
    assert np.array_equal(fmmloopy.Fmm(grid, order=ORDER, n_crit=8)(charges), as_float)
    single, single_charges = POINTS.astype(np.float32), CHARGES.astype(np.float32)
    result = fmmloopy.Fmm(single, order=ORDER, n_crit=40)(single_charges)
    widened = fmmloopy.Fmm(single.astype(float), order=ORDER, n_crit=40)
    assert np.array_equal(result, widened(single_charges.astype(float)))


def test_no_sources_or_no_targets_give_zeros_or_nothing():
    empty = np.empty((0, 3))
    assert fmmloopy.Fmm(empty, order=ORDER)(np.empty(0)).shape == (0,)
    targets = RNG.random((5, 3))
    assert np.array_equal(fmmloopy.evaluate(empty, [], targets, order=ORDER), np.zeros(5))
    assert fmmloopy.evaluate(POINTS, CHARGES, empty, order=ORDER).shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(0,\) or \(0, k\), one row per source; "
                                         r"got \(1,\)"):
        fmmloopy.Fmm(empty, order=ORDER)([1.0])


def test_one_source_is_exact():
    source = np.array([[0.1, 0.2, 0.3]])
    assert np.array_equal(fmmloopy.evaluate(source, [2.0], order=ORDER), [0.0])  # no self term
    targets = np.array([[1.1, 0.2, 0.3], [0.1, -1.8, 0.3]])
    potential = fmmloopy.evaluate(source, [2.0], targets, order=ORDER)
    np.testing.assert_allclose(potential, [2 / (4 * math.pi), 1 / (4 * math.pi)], rtol=1e-14)


# -- The command line ------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--order", "1"], r"fmmloopy bench: error: --order must be an integer in \[2, 16\], got 1"),
    (["--order", "17"], r"got 17"),
    (["--n-crit", "0"], "fmmloopy bench: error: --n-crit must be an integer >= 1, got 0"),
    (["--device", "no-such-device"], "no OpenCL device matches 'no-such-device'"),
])
def test_command_line_reports_bad_options_in_one_line(capsys, args, message):
    assert main(["bench", "--n", "200", "--repeats", "1", *args]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error  # one line, no traceback
    assert re.search(message, error), error


# -- Properties: any array either validates to what it holds, or gets a ValueError ----------

_DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8,
                           np.complex128, np.bool_])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
def test_validate_points_accepts_exactly_finite_real_n_by_3(array):
    real = array.dtype.kind in "fiu"
    with np.errstate(invalid="ignore", over="ignore"):
        finite = not real or bool(np.isfinite(array.astype(np.float64)).all())
    if real and finite and array.ndim == 2 and array.shape[1] == 3:
        points = validate_points(array)
        assert points.dtype == np.float64 and points.flags.c_contiguous
        assert np.array_equal(points, array.astype(np.float64))
    else:
        with pytest.raises(ValueError, match="sources"):
            validate_points(array)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, max_side=6)),
       st.integers(0, 6))
def test_validate_charges_accepts_exactly_finite_real_of_one_per_source(array, nsources):
    real = array.dtype.kind in "fiu"
    with np.errstate(invalid="ignore", over="ignore"):
        finite = not real or bool(np.isfinite(array.astype(np.float64)).all())
    if real and finite and array.shape == (nsources,):
        assert np.array_equal(validate_charges(array, nsources), array.astype(np.float64))
    else:
        with pytest.raises(ValueError, match="charges"):
            validate_charges(array, nsources)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 399), st.integers(0, 2),
       st.sampled_from([np.nan, np.inf, -np.inf]), st.booleans())
def test_a_single_non_finite_value_anywhere_is_rejected(fmm, index, axis, value, in_charges):
    """No NaN or inf reaches a kernel built with -cl-fast-relaxed-math."""
    if in_charges:
        with pytest.raises(ValueError, match=f"charges contain NaN or inf.*index {index}:"):
            fmm(_charges_with(value, index))
    else:
        points = POINTS.copy()
        points[index, axis] = value
        with pytest.raises(ValueError, match=f"sources contain NaN or inf.*index {index}:"):
            validate_points(points)
