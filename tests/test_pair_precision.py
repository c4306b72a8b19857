"""fmmloopy.maths.pair_precision: pairwise kernels whose ``1/sqrt`` carries up to ``rsqrt_error``
where ``eps`` allows it. The kernel power counts, the rule, the refusals; every pair of the
coarser P2P within its bound over r^2 from 1e-30 to 1e30; the check holding such a kernel to its
bound and failing it against a tighter one; an FMM under ``eps`` launching them where the rule
says (the errors of FMMs under ``eps``: tests/test_eps.py and the held-out benchmarks)."""

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest
from test_fast_rsqrt import _one_pair_per_box, offsets_over_30_decades

import fmmloopy
from fmmloopy.base.devices import context_for
from fmmloopy.checking.problems import tree_problem
from fmmloopy.checking.verification import compare
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import LAPLACE_3D, get_kernel
from fmmloopy.maths.operators import get_operator
from fmmloopy.maths.pair_precision import (
    PAIR_SHARE,
    RSQRT_ERROR,
    launch_rsqrt_error,
    rsqrt_error_for_eps,
    rsqrt_power,
    served_rsqrt_errors,
)
from fmmloopy.tuning.recipe import REFERENCE

FIELDS = {  # (outputs, inputs) -> most 1/sqrt factors in one term
    (("potential",), ("charge",)): 1,
    (("potential", "gradient"), ("charge",)): 3,
    (("potential",), ("dipole",)): 3,
    (("potential", "gradient"), ("charge", "dipole")): 5,
}


@pytest.mark.parametrize(("fields", "power"), FIELDS.items())
def test_the_power_counts_the_reciprocal_roots_of_a_term(fields, power):
    assert rsqrt_power(LAPLACE_3D.with_fields(*fields)) == power


def test_kernels_with_other_functions_have_no_power():
    for spec in ("yukawa:kappa=10", "helmholtz:k=3", "exp(-r)/r"):
        assert rsqrt_power(get_kernel(spec)) is None, spec
    assert rsqrt_power(get_kernel("1/r**3")) == 3  # a power of sqrt in a denominator


def test_eps_asks_for_the_coarser_root_only_where_its_share_reaches_it():
    charges = LAPLACE_3D
    gradient = LAPLACE_3D.with_fields(("potential", "gradient"))
    threshold = RSQRT_ERROR / PAIR_SHARE  # 1e-6 for one factor
    assert rsqrt_error_for_eps(charges, threshold) == RSQRT_ERROR
    assert rsqrt_error_for_eps(charges, 1e-3) == RSQRT_ERROR
    assert rsqrt_error_for_eps(charges, 0.9 * threshold) is None
    assert rsqrt_error_for_eps(gradient, threshold) is None  # three factors: 3e-6
    assert rsqrt_error_for_eps(gradient, 3 * threshold) == RSQRT_ERROR
    assert rsqrt_error_for_eps(charges, None) is None
    assert rsqrt_error_for_eps(get_kernel("yukawa:kappa=1"), 1e-3) is None
    # check surfaces (P2M, P2L) feed a regularised solve: float64's own root there
    for operator, expected in (("p2p", RSQRT_ERROR), ("l2p", RSQRT_ERROR),
                               ("m2p", RSQRT_ERROR), ("p2m", None), ("p2l", None),
                               ("m2l", None)):
        assert launch_rsqrt_error(get_operator(operator), charges, 1e-3) == expected, operator
    # what is shipped and checked: both roots where some eps launches the coarser one
    p2p, p2m = get_operator("p2p"), get_operator("p2m")
    assert served_rsqrt_errors(p2p, charges, np.float64) == (None, RSQRT_ERROR)
    assert served_rsqrt_errors(p2m, charges, np.float64) == (None,)
    assert served_rsqrt_errors(p2p, charges, np.float32) == (None,)
    assert served_rsqrt_errors(p2p, get_kernel("yukawa:kappa=1"), np.float64) == (None,)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rsqrt_error": -1.0}, "positive finite"),
    ({"rsqrt_error": float("nan")}, "positive finite"),
    ({"rsqrt_error": 1e-8, "kernel": "yukawa:kappa=2"}, "rational in 1/sqrt"),
    ({"rsqrt_error": 1e-8, "dtype": np.float32}, "float64 kernels"),
])
def test_a_bad_request_is_refused_by_name(device, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compiled_operator("p2p", device, **kwargs)
    with pytest.raises(ValueError, match="pairwise operators"):
        compiled_operator("m2m", device, rsqrt_error=1e-8, n_target_coeffs=8,
                          n_source_coeffs=8)


def _pairs(queue, offsets, rsqrt_error):
    p2p = compiled_operator("p2p", queue.device, recipe="cpu", rsqrt_error=rsqrt_error)
    arrays = {name: cla.to_device(queue, value) if isinstance(value, np.ndarray) else value
              for name, value in _one_pair_per_box(offsets).items()}
    return p2p(queue, **arrays)["result"].get(), p2p.device_code()


def _two_fourth_order_steps(device) -> bool:
    """Whether the cpu recipe's P2P on ``device`` takes every ``1/sqrt`` from the bits and two
    fourth-order steps (its default on Intel's CPU runtime)."""
    from fmmloopy.transforms import cpu
    return (cpu.targets_in(device) == "work_items"
            and cpu.reciprocal_sqrt(device) == "bits_newton")


def test_every_pair_of_the_coarser_kernel_is_within_its_bound(queue):
    offsets = offsets_over_30_decades(np.random.default_rng(5))
    r2 = (offsets ** 2).sum(axis=1)
    coarse, coarse_code = _pairs(queue, offsets, RSQRT_ERROR)
    fine, fine_code = _pairs(queue, offsets, None)
    # A kernel of its own, fewer refinement steps; but on the path of two fourth-order steps
    # (Intel's CPU runtime) one step leaves 6e-6, above the bound: the same kernel.
    assert coarse_code != fine_code or _two_fourth_order_steps(queue.device)
    assert np.all(np.isfinite(coarse)) and np.all(coarse[r2 == 0] == 0.0)
    exact = 1 / (4 * np.pi * np.sqrt(r2[r2 > 0]))
    assert np.max(np.abs(coarse[r2 > 0] - exact) / exact) <= RSQRT_ERROR
    assert np.max(np.abs(fine[r2 > 0] - exact) / exact) <= 1e-14


def test_the_check_holds_the_coarser_kernel_to_its_bound_and_no_tighter(device):
    spec = get_operator("p2p")
    problem = tree_problem("cube", np.random.default_rng(2).random((3000, 3)), n_crit=40)
    inputs = problem.arguments(spec, {})
    queue = cl.CommandQueue(context_for(device))
    coarse = compiled_operator("p2p", device, recipe="cpu", rsqrt_error=RSQRT_ERROR)
    held = compare(coarse, None, spec, {}, inputs, queue, green=LAPLACE_3D,
                   rsqrt_error=RSQRT_ERROR)
    assert held.ok, held.mismatch
    # Its 1/sqrt is coarser than float64's (measured: about 1e-9 with one Newton step, 3e-11
    # with three from the bits): the float64 check, and a bound of 1e-14, refuse it. (Not on
    # the path of two fourth-order steps, where it is float64's own kernel.)
    if _two_fourth_order_steps(device):
        fine = compiled_operator("p2p", device, recipe="cpu")
        assert coarse.generated.device_code == fine.generated.device_code
        return
    reference = compiled_operator("p2p", device, recipe=REFERENCE)
    assert not compare(coarse, reference, spec, {}, inputs, queue).ok
    assert not compare(coarse, None, spec, {}, inputs, queue, green=LAPLACE_3D,
                       rsqrt_error=1e-14).ok


def test_an_fmm_under_eps_launches_the_coarser_kernels_where_the_rule_says():
    points = np.random.default_rng(3).uniform(-1, 1, (4000, 3))

    def coarse_steps(fmm):
        return {launch.step for launch in fmm.plan.launches
                if (launch.kernel.disk_key or {}).get("rsqrt_error") is not None}

    assert coarse_steps(fmmloopy.Fmm(points, eps=1e-6)) == {"p2p", "l2p"}
    assert coarse_steps(fmmloopy.Fmm(points, eps=1e-9)) == set()
    assert coarse_steps(fmmloopy.Fmm(points, order=6)) == set()
