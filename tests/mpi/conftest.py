"""The distributed tests run under ``mpiexec -n R`` (every rank runs the same tests) and in the
plain test run (R = 1); ``tests/test_mpi_ranks.py`` starts them once, under 3 ranks.

Each test gets its communicator from the ``comm`` fixture: the whole world (3 ranks there, an
odd count, with a middle rank that is neither the first nor the last). A test marked
``both_parities`` runs a second time on the first R - 1 ranks (a sub-communicator: 2 of the 3,
an even count) while the others wait asleep, where R is 3 or more: the tests whose outcome
depends on how the leaves are cut among the ranks, not every test twice. Every test starts with
every rank of the world at a sleeping barrier, so that no rank polls in a collective while the
others compute.

Every assertion is made on every rank of the test's communicator about a value all its ranks
share (``check`` in test_distributed.py), so a failure fails every rank at the same test and no
rank waits in a collective for one that moved on; each rank keeps its pytest files in a folder
of its own.
"""

import os
import tempfile
import time

import pytest

from fmmloopy.cli.distributed import launched_ranks

#: Set by tests/test_mpi_ranks.py: keep the operator cache its session passes down (itself a
#: throw-away folder), so that the ranks load the operators the suite's other tests precomputed.
KEEP_CACHE_ENV = "FMMLOOPY_TEST_KEEP_OPERATOR_CACHE"

#: Marker of the tests that also run on an even count of ranks beside the odd one (module
#: docstring).
BOTH_PARITIES = "both_parities"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{BOTH_PARITIES}: under mpiexec with R >= 3 ranks, also run on the first "
                   "R - 1 of them (an odd and an even count of ranks; tests/mpi/conftest.py)")
    if launched_ranks() > 1 and not config.option.basetemp:
        from mpi4py import MPI

        config.option.basetemp = os.path.join(
            tempfile.gettempdir(), f"fmmloopy-mpi-tests-{os.getppid()}-rank{MPI.COMM_WORLD.rank}")


def rank_counts(world_size: int, both_parities: bool) -> list[int]:
    """The sizes of the communicators a test runs on: the world's, and one rank fewer first
    for a test marked ``both_parities`` where the world has 3 ranks or more (fewer ranks than
    cores build the kernels a test needs first, the others then load them)."""
    return [world_size - 1, world_size] if both_parities and world_size >= 3 else [world_size]


def pytest_generate_tests(metafunc):
    if "comm" not in metafunc.fixturenames:
        return
    counts = rank_counts(launched_ranks(),
                         metafunc.definition.get_closest_marker(BOTH_PARITIES) is not None)
    if len(counts) > 1:
        metafunc.parametrize("comm", counts, indirect=True, ids=[f"{n}ranks" for n in counts])


def sleeping_barrier(comm, interval: float = 0.005) -> None:
    """A barrier over ``comm`` that waits asleep: a waiting rank leaves the cores to the
    others (MPICH's ranks poll while they wait in a blocking call)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(interval)


@pytest.fixture(scope="session")
def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="session")
def first_ranks(world):
    """``first_ranks(n)``: the communicator of the world's first ``n`` ranks (``COMM_NULL`` on
    the others), split when first asked for; every rank asks at the same test."""
    from mpi4py import MPI

    made = {world.Get_size(): world}

    def communicator(n: int):
        if n not in made:
            rank = world.Get_rank()
            made[n] = world.Split(0 if rank < n else MPI.UNDEFINED, rank)
        return made[n]

    return communicator


@pytest.fixture
def comm(request, world, first_ranks):
    """The test's communicator: the world, or its first ``request.param`` ranks (the test is
    skipped on the others, which go on to wait asleep at the next test's start)."""
    from mpi4py import MPI

    sleeping_barrier(world)
    size = getattr(request, "param", world.Get_size())
    communicator = first_ranks(size)
    if communicator == MPI.COMM_NULL:
        pytest.skip(f"rank {world.Get_rank()} is not among the first {size} ranks")
    return communicator


@pytest.fixture(scope="session", autouse=True)
def operator_cache_in_a_temporary_directory(tmp_path_factory, world):
    """One throw-away operator cache for all ranks (rank 0's folder): a node's first rank
    precomputes, the others load (DistributedFmm), as with a user's cache."""
    from fmmloopy.execution.cache_files import CACHE_ENV
    from fmmloopy.execution.precomputed import forget_operators

    if os.environ.get(CACHE_ENV) and os.environ.get(KEEP_CACHE_ENV):
        yield  # started by tests/test_mpi_ranks.py: that session's throw-away cache
        return
    folder = str(tmp_path_factory.mktemp("fmmloopy-cache")) if world.Get_rank() == 0 else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, world.bcast(folder, root=0))
        forget_operators()
        yield
    forget_operators()
