"""The distributed tests run under ``mpiexec -n R`` (every rank runs the same tests) and in the
plain test run (R = 1); ``tests/test_mpi_ranks.py`` starts them under 2 and 3 ranks.

Every assertion is made on every rank about a value all ranks share (:func:`check`), so a
failure fails every rank at the same test and no rank waits in a collective for one that moved
on; each rank keeps its pytest files in a folder of its own.
"""

import os
import tempfile

import pytest

from fmmloopy.cli.distributed import launched_ranks

#: Set by tests/test_mpi_ranks.py: keep the operator cache its session passes down (itself a
#: throw-away folder), so that runs under several rank counts precompute each operator once.
KEEP_CACHE_ENV = "FMMLOOPY_TEST_KEEP_OPERATOR_CACHE"


def pytest_configure(config):
    if launched_ranks() > 1 and not config.option.basetemp:
        from mpi4py import MPI

        config.option.basetemp = os.path.join(
            tempfile.gettempdir(), f"fmmloopy-mpi-tests-{os.getppid()}-rank{MPI.COMM_WORLD.rank}")


@pytest.fixture(scope="session")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="session", autouse=True)
def operator_cache_in_a_temporary_directory(tmp_path_factory, comm):
    """One throw-away operator cache for all ranks (rank 0's folder): a node's first rank
    precomputes, the others load (DistributedFmm), as with a user's cache."""
    from fmmloopy.execution.cache_files import CACHE_ENV
    from fmmloopy.execution.precomputed import forget_operators

    if os.environ.get(CACHE_ENV) and os.environ.get(KEEP_CACHE_ENV):
        yield  # started by tests/test_mpi_ranks.py: that session's throw-away cache
        return
    folder = str(tmp_path_factory.mktemp("fmmloopy-cache")) if comm.Get_rank() == 0 else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, comm.bcast(folder, root=0))
        forget_operators()
        yield
    forget_operators()
