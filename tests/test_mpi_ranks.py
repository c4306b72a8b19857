"""The distributed tests (tests/mpi) under ``mpiexec -n 2`` and ``-n 3``: an even and an odd
count of ranks, with ranks that own no leaf and ranks given no points.

``mpiexec`` comes with the ``mpich`` wheel of the test extra (in the virtual environment's
``bin``), or is a site's own MPI on the PATH. Each rank gets one PoCL thread (the machine's
cores are shared by the ranks), and a hung rank fails the test at the timeout.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a run of the distributed tests may take (about 80 s for 2 ranks on 2 cores).
TIMEOUT = 900


def mpiexec() -> str:
    """The MPI launcher beside this Python (the mpich wheel's), else one on the PATH."""
    found = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, "no mpiexec: install the test extra (pip install -e '.[test]': mpich)"
    return found


@pytest.mark.parametrize("ranks", [2, 3])
def test_the_distributed_tests_pass_under_mpiexec(ranks):
    environment = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")
    environment.pop("PYTHONUNBUFFERED", None)  # each rank's output in one piece
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "pytest", "-q",
               "-p", "no:cacheprovider", str(ROOT / "tests" / "mpi")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                            env=environment, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summaries = [line for line in result.stdout.splitlines() if " passed" in line]
    assert len(summaries) == ranks and all("failed" not in line for line in summaries), \
        output[-3000:]
