"""Shared fixtures: the OpenCL device every test runs on (PoCL's CPU device on CI).

``FMMLOOPY_TEST_DEVICE`` (``cpu``, ``gpu`` or part of a device name) pins the device of a test
run: it is copied into ``FMMLOOPY_DEVICE`` when the session starts, so the tests, and the
command-line runs they start in subprocesses, all use that device. Unset, the toolkit's own
choice applies (``FMMLOOPY_DEVICE``, else the first GPU, else a CPU). The suite holds on any
OpenCL device: what a test expects of a device (its default recipe, say) is derived from it.
"""

import os

import numpy as np
import pyopencl as cl
import pytest

from fmmloopy.base.devices import DEVICE_ENV, POCL_THREADS_ENV, choose_device, context_for
from fmmloopy.tuning import registry

#: Environment variable pinning the device of a test run (module docstring).
TEST_DEVICE_ENV = "FMMLOOPY_TEST_DEVICE"


#: Thread pools each test process sizes to its share of the cores where pytest-xdist runs
#: several processes: OpenMP/OpenBLAS/MKL (numpy's SVDs and products) and PoCL's CPU device.
#: With two processes on two cores each running two busy-waiting BLAS threads, the precomputed
#: operators of tests/test_level_operators.py took 440 s instead of 62 s.
THREAD_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         POCL_THREADS_ENV)


def pytest_configure(config):
    pinned = os.environ.get(TEST_DEVICE_ENV, "").strip()
    if pinned:
        os.environ[DEVICE_ENV] = pinned
    workers = len(getattr(config.option, "tx", None) or ())
    if workers > 1 and not os.environ.get("PYTEST_XDIST_WORKER"):
        # The controller, before it starts the workers: they (and the processes their tests
        # start) inherit the shares. A value the user set is kept.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        share = str(max(1, cores // workers))
        for name in THREAD_POOL_VARIABLES:
            os.environ.setdefault(name, share)
        if getattr(config.option, "maxschedchunk", None) is None:
            # pytest-xdist's load scheduling hands each process a first chunk of a quarter of
            # its share of consecutive tests: every test of LONG_RUNNING went to the first
            # process, which ran them one after the other while the second one, done with the
            # short tests, waited 4 minutes. One test at a time (two queued per process) spreads
            # them; a value the user gives is kept.
            config.option.maxschedchunk = 1


#: The tests (``file::name``, every parametrization, or a whole file) that take minutes on two
#: cores, longest first. They run before the rest, spread over pytest-xdist's processes (handed
#: out one at a time: :func:`pytest_configure`), so that the processes share out the many short
#: tests while these run; one started last would run alone at the end.
LONG_RUNNING = (
    "test_check.py::test_shipped_recipes_pass_for_every_operator",
    "test_target_lanes.py::test_the_check_passes_every_pairwise_operator_at_every_shape",
    "test_tutorial.py::test_tutorial_runs_as_written",
    "test_memcheck.py::test_every_registered_recipe_passes_memcheck_on_every_operator",
    "test_gpu_recipes.py::test_narrow_work_groups_pass_the_check",
    "test_yukawa_and_user_kernels.py::test_check_runs_user_kernels",
    "test_mpi_ranks.py::test_the_distributed_tests_pass_under_mpiexec",
    "test_helmholtz.py::test_the_shipped_recipes_handle_complex_values",
    "test_fast_rsqrt.py::test_the_check_passes_the_newton_rsqrt_on_every_pairwise_operator",
)


def _long_running_rank(nodeid: str) -> int:
    """The position of ``nodeid``'s entry in :data:`LONG_RUNNING`; past the end if none."""
    path, _, name = nodeid.partition("[")[0].partition("::")
    file = path.rpartition("/")[2]
    for rank, entry in enumerate(LONG_RUNNING):
        if entry in (file, f"{file}::{name}"):
            return rank
    return len(LONG_RUNNING)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _long_running_rank(item.nodeid))  # stable: the rest in order


@pytest.fixture(scope="session")
def device() -> cl.Device:
    return choose_device()


@pytest.fixture(scope="session")
def default_recipe(device) -> str:
    """The shipped recipe the default chain must pick on ``device``, stated from the device
    type alone (not through the registry under test): CPUs get ``cpu``, GPUs ``gpu``, any other
    device ``generic``."""
    if device.type & cl.device_type.GPU:
        return "gpu"
    if device.type & cl.device_type.CPU:
        return "cpu"
    return "generic"


@pytest.fixture(scope="session")
def queue(device) -> cl.CommandQueue:
    return cl.CommandQueue(context_for(device))


def _run_directory(tmp_path_factory) -> "os.PathLike":
    """The temporary directory of this test run, shared by pytest-xdist's workers (each worker
    has a directory of its own inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def operator_cache_in_a_temporary_directory(tmp_path_factory):
    """Precomputed operators and generated kernels go to a throw-away cache, not the user's
    (subprocesses too), shared by the run's workers: a kernel or operator one worker built,
    another loads (the caches' files are written atomically, one writer per entry)."""
    from fmmloopy.execution.cache_files import CACHE_ENV
    from fmmloopy.execution.precomputed import forget_operators

    previous = os.environ.get(CACHE_ENV)
    shared = _run_directory(tmp_path_factory) / "fmmloopy-cache"
    shared.mkdir(mode=0o700, exist_ok=True)
    os.environ[CACHE_ENV] = str(shared)
    forget_operators()
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(autouse=True)
def isolated_registry():
    """Recipes a test registers or loads do not leak into the next test."""
    registry.ensure_loaded()
    recipes, sources = list(registry.REGISTRY), dict(registry._LOADED)
    yield
    registry.REGISTRY[:] = recipes
    registry._LOADED.clear()
    registry._LOADED.update(sources)


#: The kernels ``fmmloopy check`` runs each pairwise operator with besides the potential of
#: charges, as its result lines label them: the steps at the user's points take every field
#: (P2P: potential and gradient of charges and dipoles; P2M/P2L: the potential of charges and
#: dipoles; M2P/L2P: the potential and gradient of the equivalent charges).
CHECKED_FIELDS = {"p2p": "pot+grad<q+dip", "p2m": "pot<q+dip", "p2l": "pot<q+dip",
                  "m2p": "pot+grad<q", "l2p": "pot+grad<q"}


#: Every operator is also checked for this many strength vectors at once (label ``x3``).
CHECKED_VECTORS = 3


def check_labels(operator: str) -> list[str]:
    """The operator labels of ``operator``'s lines in ``fmmloopy check``'s output."""
    fields = CHECKED_FIELDS.get(operator)
    return ([operator, f"{operator}[x{CHECKED_VECTORS}]"]
            + ([f"{operator}[{fields}]"] if fields else []))


def operator_of(label: str) -> str:
    """The operator of a check line's label (``p2p[pot+grad<q+dip]`` -> ``p2p``)."""
    return label.partition("[")[0]


#: Relative L2 difference allowed between two *different* kernels that compute the same float64
#: sums: a batched call against single calls, one vector width or recipe against another, the
#: same FMM at two machines' paths. Only the order of additions and fused multiply-adds differ,
#: so each entry moves by about ``lam sqrt(n) u`` of its terms' magnitudes (Higham and Mary's
#: probabilistic bound, ``lam = 7.5``, ``u = 1.1e-16``): below 1e-13 for ``n`` up to 10^4 terms
#: and sums that cancel no more than tenfold. Measured: 0 where the kernels round alike
#: (AVX-512's target lanes), 1.2e-16 to 1.6e-16 where they do not (AVX2, 3 vectors against 3
#: single calls). Bitwise equality is asserted only where the same kernel runs on the same data.
SAME_SUMS_BOUND = 1e-13


def relative_l2(value, reference) -> float:
    """Relative L2 difference, with both scaled by the reference's largest entry first (values
    of 1e-290 square to 0)."""
    scale = np.abs(reference).max()
    return float(np.linalg.norm((value - reference) / scale)
                 / np.linalg.norm(reference / scale))
