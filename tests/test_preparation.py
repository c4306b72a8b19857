"""fmmloopy.driver.preparation: the kernels an FMM builds on a thread are those its plan asks
for, and the thread leaves errors to the plan."""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer
from fmmloopy.base.precision import FLOAT64
from fmmloopy.driver import builder
from fmmloopy.driver.preparation import KernelPreparation
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.scheme import KIFMM

ORDER = 4


def _record_plan_kernels(monkeypatch) -> list:
    """The (operator, kernel, sizes) of each kernel a plan asks for from now on."""
    asked = []
    real = builder.compiled_operator

    def recording(operator, device, *, kernel, **options):
        sizes = {name: value for name, value in options.items() if name not in ("recipe",
                                                                                  "dtype")}
        asked.append((operator, kernel, sizes))
        return real(operator, device, kernel=kernel, **options)

    monkeypatch.setattr(builder, "compiled_operator", recording)
    return asked


@pytest.mark.parametrize("kernel", ["laplace", "yukawa:kappa=2"])
def test_the_requests_are_every_kernel_the_plan_asks_for(kernel, monkeypatch):
    """An FMM's plan asks for kernels (operator, kernel summed, sizes) all among the requests
    made before its tree, and the requests name each once."""
    asked = _record_plan_kernels(monkeypatch)
    points = plummer(3000, np.random.default_rng(3))
    fmm = fmmloopy.Fmm(points, kernel=kernel, order=ORDER, n_crit=40)
    green = get_kernel(kernel).base
    first = get_operators(green, ORDER) if green.homogeneity is not None else \
        fmm.operators.sets[0]
    requests = KIFMM.kernel_requests(Expansion(ORDER).n_e, first.ranks(), green)
    assert len(requests) == len({(op, k, tuple(sorted(s.items()))) for op, k, s in requests})
    assert asked and all(request in requests for request in asked)
    # Every step has boxes on this tree: the plan asks for every request.
    assert all(request in asked for request in requests)


def test_under_eps_the_requests_carry_the_coarser_root_the_plan_asks_for(monkeypatch):
    """``Fmm(eps=1e-6)`` asks for P2P and L2P with ``rsqrt_error`` (docs/kernels.md, "The
    pairwise kernels under eps"): the requests made before the tree ask for the same ones, so
    the thread prepares the kernels the plan launches."""
    asked = _record_plan_kernels(monkeypatch)
    points = plummer(3000, np.random.default_rng(4))
    fmm = fmmloopy.Fmm(points, eps=1e-6, n_crit=40)
    green = get_kernel("laplace").base
    requests = KIFMM.kernel_requests(Expansion(fmm.order).n_e,
                                     get_operators(green, fmm.order).ranks(), green, eps=1e-6)
    coarse = {operator for operator, _, sizes in requests if "rsqrt_error" in sizes}
    assert coarse == {"p2p", "l2p", "m2p"}
    assert asked and all(request in requests for request in asked)


def test_the_thread_builds_cached_kernels_and_leaves_errors_to_the_plan(queue):
    """After join, a requested kernel the disk cache holds is built for the queue's context;
    a request that cannot be met (a recipe that does not exist) does not escape the thread."""
    green = get_kernel("laplace").base
    requests = KIFMM.kernel_requests(Expansion(ORDER).n_e, get_operators(green, ORDER).ranks(),
                                     green)
    fmmloopy.Fmm(plummer(2000, np.random.default_rng(4)), order=ORDER, n_crit=40)  # caches them
    KernelPreparation(requests, queue, None, FLOAT64).join()
    for operator, kernel, sizes in requests:
        compiled = compiled_operator(operator, queue.device, kernel=kernel, **sizes)
        assert queue.context.int_ptr in compiled._executors
    KernelPreparation(requests[:1], queue, "no-such-recipe", FLOAT64).join()
