"""The distributed tests (tests/mpi) under ``mpiexec -n 3``, in one run: every test on the 3
ranks (an odd count, with a middle rank) and the tests marked ``both_parities`` also on 2 of
them (an even count; tests/mpi/conftest.py), with ranks that own no leaf and ranks given no
points.

``mpiexec`` comes with the ``mpich`` wheel of the test extra (in the virtual environment's
``bin``), or is a site's own MPI on the PATH. Each rank gets one PoCL thread (the machine's
cores are shared by the ranks), and a hung rank fails the test at the timeout.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a run of the distributed tests may take (15-80 s for 3 ranks on 2 cores).
TIMEOUT = 900


def mpiexec() -> str:
    """The MPI launcher beside this Python (the mpich wheel's), else one on the PATH."""
    found = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, "no mpiexec: install the test extra (pip install -e '.[test]': mpich)"
    return found


#: The ranks of the run: an odd count, whose first two ranks make the even count of the tests
#: marked ``both_parities`` (one run, not one per count: each run's start and collection cost
#: seconds, and most tests check nothing that depends on the count's parity).
RANKS = 3


@pytest.mark.slow
def test_the_distributed_tests_pass_under_mpiexec():
    # One PoCL thread per rank; this session's throw-away operator cache, kept by the run.
    environment = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1",
                       FMMLOOPY_TEST_KEEP_OPERATOR_CACHE="1")
    environment.pop("PYTHONUNBUFFERED", None)  # each rank's output in one piece
    command = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "pytest", "-q",
               "-p", "no:cacheprovider", str(ROOT / "tests" / "mpi")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                            env=environment, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summaries = [line for line in result.stdout.splitlines() if " passed" in line]
    assert len(summaries) == RANKS and not any(
        word in line for line in summaries for word in ("failed", "error")), output[-3000:]
    # Every test on every rank, and those marked both_parities once more on ranks 0 and 1
    # (skipped on rank 2): the even count ran.
    passed = sorted(int(line.split(" passed")[0].split()[-1]) for line in summaries)
    assert passed[0] < passed[1] == passed[2], output[-3000:]


def test_the_example_and_the_cli_run_distributed():
    """``mpiexec -n 2 examples/laplace_sphere.py`` reports both ranks and an error within the
    example's own bound (it exits 1 past it); ``mpiexec -n 3 fmmloopy distributed`` prints
    the per-rank table for three ranks."""
    environment = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")
    environment.pop("PYTHONUNBUFFERED", None)
    example = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "laplace_sphere.py"),
         "--n", "4000", "--order", "4", "--json", "--repeats", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, env=environment, cwd=ROOT)
    assert example.returncode == 0, example.stdout[-3000:] + example.stderr[-3000:]
    report = json.loads(example.stdout)
    assert [entry["rank"] for entry in report["ranks"]] == [0, 1]
    assert sum(entry["owned sources"] for entry in report["ranks"]) == 4000
    assert report["rel_l2_error"] < 1e-3
    fmmloopy = shutil.which("fmmloopy", path=str(Path(sys.executable).parent))
    cli = subprocess.run(
        [mpiexec(), "-n", "3", fmmloopy, "distributed", "--n", "3000", "--order", "4",
         "--distribution", "plummer", "--repeats", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, env=environment, cwd=ROOT)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    table = cli.stdout.split("MB sent", 1)[1].splitlines()[1:4]
    assert [int(line.split()[0]) for line in table] == [0, 1, 2], cli.stdout
    assert "relative L2 error" in cli.stdout
