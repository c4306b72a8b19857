"""``fmmloopy check --memcheck``: every registered recipe runs clean on the Oclgrind simulator;
planted out-of-bounds reads and a dropped barrier are caught, with Oclgrind's report."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pyopencl as cl
import pytest
from conftest import check_labels, operator_of

from fmmloopy.base.devices import choose_device
from fmmloopy.checking import memcheck
from fmmloopy.checking.check import RELATIVE_TOLERANCE
from fmmloopy.checking.memcheck import INSTALL_HINT, describe_reports, parse_oclgrind
from fmmloopy.cli import main as cli

WRONG_RECIPES = Path(__file__).parent / "recipes" / "memcheck_wrong_recipes.py"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real command line in a fresh process (a fresh recipe registry)."""
    return subprocess.run([sys.executable, "-m", "fmmloopy.cli", *args],
                          capture_output=True, text=True, timeout=900)


def _result_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("ok ", "FAIL"))]


def _error(line: str) -> float:
    return float(re.search(r"max rel err\s+(\S+)", line).group(1))


def _registered_pairs() -> set[tuple[str, str]]:
    """Every (operator, recipe) pair ``fmmloopy check`` covers, from a fresh registry: whatever
    recipe modules are shipped now, not a list written here."""
    script = ("import json; from fmmloopy.checking.check import pairs_to_check; "
              "print(json.dumps(pairs_to_check([], [])))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    return {tuple(pair) for pair in json.loads(done.stdout)}


def _problem_names() -> list[str]:
    from fmmloopy.checking.problems import memcheck_problems

    return [problem.name for problem in memcheck_problems()]


@pytest.mark.slow
def test_every_registered_recipe_passes_memcheck_on_every_operator():
    pairs = _registered_pairs()
    assert {"sequential", "generic", "cpu"} <= {recipe for _, recipe in pairs}
    done = run_cli("check", "--memcheck")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Oclgrind" in done.stdout.splitlines()[0]
    lines = _result_lines(done.stdout)
    assert all(line.startswith("ok ") for line in lines), "\n".join(lines)
    seen = [(line.split()[1], line.split()[2], line.split()[3]) for line in lines]
    problems = _problem_names()
    assert sorted(seen) == sorted((label, recipe, problem) for op, recipe in pairs
                                  for label in check_labels(op) for problem in problems)
    assert f"{len(lines)} of {len(lines)} memchecks passed" in done.stdout


@pytest.mark.slow
def test_out_of_bounds_read_that_keeps_the_numbers_is_caught():
    # The normal check cannot see it: the values read past the end are never used.
    numeric = run_cli("check", "--recipes", str(WRONG_RECIPES),
                      "--recipe", "speculative_target_loads")
    assert numeric.returncode == 0, numeric.stdout + numeric.stderr

    done = run_cli("check", "--memcheck", "--recipes", str(WRONG_RECIPES),
                   "--recipe", "speculative_target_loads")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    # p2p for the potential of charges, then with gradients and dipoles
    assert len(lines) == len(check_labels("p2p")) * len(_problem_names())
    for line in lines:
        assert line.startswith("FAIL") and operator_of(line.split()[1]) == "p2p"
        assert _error(line) <= RELATIVE_TOLERANCE  # the numbers agree...
        # ... and Oclgrind's report, with the source line, says what is wrong.
        assert "Oclgrind: Invalid read of size 8 at global memory address" in line
        assert "Kernel: p2p" in line and "tx2 = targets[" in line
    assert f"0 of {len(lines)} memchecks passed" in done.stdout


@pytest.mark.slow
def test_missing_barrier_is_a_data_race_and_the_barrier_fixes_it():
    done = run_cli("check", "--memcheck", "--recipes", str(WRONG_RECIPES),
                   "--recipe", "staged_surface", "--recipe", "staged_surface_no_barrier")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    with_barrier = [line for line in lines if line.split()[2] == "staged_surface"]
    without = [line for line in lines if line.split()[2] == "staged_surface_no_barrier"]
    # m2p and l2p, each for the potential and for the gradient
    n = len(check_labels("m2p") + check_labels("l2p")) * len(_problem_names())
    assert len(with_barrier) == len(without) == n
    assert all(line.startswith("ok ") for line in with_barrier), "\n".join(with_barrier)
    for line in without:
        assert line.startswith("FAIL")
        assert "Oclgrind: Read-write data race at local memory address" in line
        assert "surface_local[" in line  # the write and the read, quoted from the source


def test_memcheck_without_oclgrind_says_how_to_install_it(monkeypatch, capsys):
    real = cl.get_platforms
    monkeypatch.setattr(cl, "get_platforms",
                        lambda: [p for p in real() if "oclgrind" not in p.name.lower()])
    monkeypatch.setattr(memcheck, "oclgrind_installed", lambda: False)
    assert cli.main(["check", "--memcheck", "--operator", "p2p"]) == 2
    err = capsys.readouterr().err
    assert "fmmloopy check: error:" in err and INSTALL_HINT in err
    assert "Traceback" not in err


def test_oclgrind_is_never_the_default_device():
    for spec in (None, "gpu", "cpu"):
        try:
            device = choose_device(spec)
        except ValueError:  # no such device here
            continue
        assert "oclgrind" not in device.platform.name.lower()


def test_oclgrind_reports_are_parsed_and_other_output_kept():
    text = (
        "/some/file.py:1: UserWarning: not Oclgrind's\n  warn()\n"
        "\nInvalid write of size 8 at global memory address 0x2000000000080\n"
        "\tKernel: k\n\tEntity: Global(15,0,0) Local(15,0,0) Group(0,0,0)\n"
        "\t  store double %mul, double addrspace(1)* %arrayidx, align 8\n"
        "\tAt line 4 (column 12) of input.cl:\n\t  a[i + 1] = 2.0 * i;\n\t\n"
        "\nRead-write data race at local memory address 0x1000000000008\n"
        "\tKernel: race\n\t\n\tFirst entity:  Global(1,0,0) Local(1,0,0) Group(0,0,0)\n"
        "\t  store double %conv1, double addrspace(3)* %arrayidx, align 8\n"
        "\tAt line 9 (column 10) of input.cl:\n\t  tmp[i] = i;\n\t\n"
        "\tSecond entity: Global(0,0,0) Local(0,0,0) Group(0,0,0)\n"
        "\t  %0 = load double, double addrspace(3)* %arrayidx3, align 8\n"
        "\tAt line 10 (column 25) of input.cl:\n\t  (source not available)\n\t\n")
    reports, rest = parse_oclgrind(text)
    assert [r.title.split(" at ")[0] for r in reports] == [
        "Invalid write of size 8", "Read-write data race"]
    assert reports[0].summary() == ("Invalid write of size 8 at global memory address "
                                    "0x2000000000080 | Kernel: k | line 4: a[i + 1] = 2.0 * i;")
    assert reports[1].summary().endswith(
        "Kernel: race | line 9: tmp[i] = i; | line 10: (source not available)")
    assert rest == "/some/file.py:1: UserWarning: not Oclgrind's\n  warn()\n"
    assert describe_reports(reports).endswith("(+1 more report)")


def test_oclgrind_fatal_error_is_a_report_with_its_message():
    text = ("\nOCLGRIND FATAL ERROR (/deps/Oclgrind/src/core/WorkItem.cpp:1681)\n"
            "Undefined external function: llvm.sqrt.f64\nWhen creating kernel 'p2p'\n\n")
    reports, rest = parse_oclgrind(text)
    assert rest == ""
    assert describe_reports(reports) == (
        "Oclgrind: OCLGRIND FATAL ERROR (/deps/Oclgrind/src/core/WorkItem.cpp:1681) | "
        "Undefined external function: llvm.sqrt.f64 | When creating kernel 'p2p'")


@pytest.mark.parametrize("kernel", [pytest.param("helmholtz:k=2", marks=pytest.mark.slow),
                                    "yukawa:kappa=3"])
def test_the_cpu_recipes_inline_math_passes_memcheck(kernel):
    """The cpu recipe's complex kernels (pairs of doubles, arithmetic ``sin``/``cos``) and
    Yukawa's (arithmetic ``exp``), whose ``rint``/``floor`` fall back to OpenCL's on Oclgrind,
    run clean and right there."""
    done = run_cli("check", "--memcheck", "--kernel", kernel, "--recipe", "cpu",
                   "--operator", "p2p", "--operator", "l2p", "--operator", "m2l")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    assert lines and all(line.startswith("ok ") for line in lines), "\n".join(lines)
    assert {operator_of(line.split()[1]) for line in lines} == {"p2p", "l2p", "m2l"}
