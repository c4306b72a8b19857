"""``fmmloopy check``: the shipped recipes pass; deliberately wrong recipes fail loudly."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CHECKED_FIELDS,
    COARSE_ROOT_OPERATORS,
    check_labels,
    coarse_root_labels,
    operator_of,
)

from fmmloopy.checking.check import (
    NOT_RUN_AFTER_FAILURE,
    CheckResult,
    check_pair,
    until_first_failure,
)
from fmmloopy.checking.problems import check_problems
from fmmloopy.maths.operators import OPERATORS, PAIRWISE

WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"
PAIRWISE_OPERATORS = {name for name, spec in OPERATORS.items() if spec.template == PAIRWISE}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real command line in a fresh process (a fresh recipe registry)."""
    return subprocess.run([sys.executable, "-m", "fmmloopy.cli", *args],
                          capture_output=True, text=True, timeout=600)


def _result_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("ok ", "FAIL"))]


@pytest.mark.slow
def test_shipped_recipes_pass_for_every_operator():
    done = run_cli("check")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    assert all(line.startswith("ok ") for line in lines)
    assert {line.split()[1] for line in lines} == {
        label for operator in OPERATORS
        for label in check_labels(operator) + coarse_root_labels(operator)}
    assert {line.split()[2] for line in lines} == {"sequential", "generic", "cpu", "gpu"}
    # 11 operators (the eight, c2e, and the compressed M2L's m2l_compress and m2l_expand) x 4
    # recipes x 5 small problems (the fifth a periodic cell, M2M on the far lattice's list),
    # plus c2e's second factor (n_e x rank, as the FMM applies it) where the rank differs from
    # n_e (the three small problems of 26-point surfaces and rank 20; the other two take the
    # production sizes),
    # all of it twice (one and three strength vectors), plus the 5 pairwise operators again
    # with gradients and dipoles, plus P2P, L2P and M2P's three kernels each with the coarser
    # 1/sqrt under the three recipes but sequential; then the production-size problems: every
    # operator at order 6 (152-point surfaces, leaves of up to n_crit = 150).
    small = [line for line in lines if not line.split()[3].endswith("-150")]
    assert len(small) == (2 * (11 * 4 * 5 + 3 * 4) + len(CHECKED_FIELDS) * 4 * 5
                          + len(COARSE_ROOT_OPERATORS) * 3 * 3 * 5)
    assert {line.split()[3] for line in small} == {"uniform-cube", "sphere", "plummer",
                                                  "tgt!=src", "periodic"}
    production = [line for line in lines if line.split()[3].endswith("-150")]
    assert {(line.split()[1], line.split()[2]) for line in production} == {
        (label, recipe) for operator in OPERATORS for label in check_labels(operator)
        for recipe in ("sequential", "generic", "cpu", "gpu")} | {
        (label, recipe) for operator in OPERATORS for label in coarse_root_labels(operator)
        for recipe in ("generic", "cpu", "gpu")}
    assert f"{len(lines)} of {len(lines)} checks passed" in done.stdout
    # The sizes covered are printed, and what was not looked for is said.
    assert "plummer-150: 18000 sources" in done.stdout
    assert "surfaces of 152 points, c2e rank 152" in done.stdout
    assert "V<=189" in done.stdout and "W<=152" in done.stdout and "X<=19" in done.stdout
    assert "races at run time are not looked for: add --memcheck" in done.stdout


@pytest.mark.parametrize("recipe,operators", [
    ("skip_first_source_box", set(OPERATORS)),  # drops one source box per list
    ("ilp_over_bound_loads", PAIRWISE_OPERATORS),  # DESIGN.md's trap: ilp around bound loads
    ("wrong_sign", PAIRWISE_OPERATORS),  # a transform that changes the arithmetic
    ("raises", set(OPERATORS)),  # a recipe with a bug of its own
    ("writes_out_of_bounds", PAIRWISE_OPERATORS),  # crashes the process that runs it
])
def test_wrong_recipe_from_a_file_fails_the_check(recipe, operators):
    done = run_cli("check", "--small-only", "--fail-fast", "--recipes", str(WRONG_RECIPES),
                   "--recipe", recipe)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    # --fail-fast: each operator's checking stops at its first failure (a kernel that crashed
    # its process is one line for the pair), so every line is that failure, on the first
    # problem each recipe here gets wrong (c2e: one line per factor of that problem).
    assert lines and all(line.startswith("FAIL") and recipe in line for line in lines)
    assert {operator_of(line.split()[1]) for line in lines} == operators
    assert all(len({line.split()[3] for line in lines if operator_of(line.split()[1]) == op}) == 1
               for op in operators)
    for operator in operators:
        last = [line for line in lines if operator_of(line.split()[1]) == operator][-1]
        assert NOT_RUN_AFTER_FAILURE in last or "crashed" in last, last
    assert f"0 of {len(lines)} checks passed" in done.stdout


def test_a_failure_with_a_build_log_is_one_line_and_the_log_follows_it():
    # A compiler that rejects a recipe's code (PoCL 3.1 on the ilp recipe) prints a log of many
    # lines; the result stays one line that starts with FAIL and keeps the fail-fast note.
    log = "RecipeError: the OpenCL compiler rejected the code\n<source>:3: error: bad\n  ^"
    failed = CheckResult("m2p", "r", "uniform-cube", float("inf"), 0.0, 0.0, False, log,
                         note=NOT_RUN_AFTER_FAILURE)
    line = failed.line()
    assert "\n" not in line and line.startswith("FAIL m2p")
    assert "rejected the code (2 more lines below)" in line
    assert line.endswith(NOT_RUN_AFTER_FAILURE)
    assert failed.detail_lines() == ["    <source>:3: error: bad", "      ^"]
    passed = CheckResult("m2p", "r", "uniform-cube", 0.0, 0.0, 0.0, True)
    assert "\n" not in passed.line() and passed.detail_lines() == []


def test_fail_fast_keeps_the_results_up_to_the_first_failure_only():
    def result(problem, ok):
        return CheckResult("c2e", "r", problem, 0.0 if ok else 1.0, 0.0, 0.0, ok,
                           "" if ok else "off")

    batches = [[result("a", True)], [result("b", True), result("b'", False)],
               [result("c", False)], [result("d", True)]]
    everything = until_first_failure((list(batch) for batch in batches), fail_fast=False)
    assert [r.problem for r in everything] == ["a", "b", "b'", "c", "d"]
    assert [r.message for r in everything] == ["", "", "off", "off", ""]
    stopped = until_first_failure((list(batch) for batch in batches), fail_fast=True)
    assert [r.problem for r in stopped] == ["a", "b", "b'"]  # the failing batch whole
    assert stopped[2].message == "off" and stopped[2].note == NOT_RUN_AFTER_FAILURE
    assert stopped[2].line().endswith(f"off; {NOT_RUN_AFTER_FAILURE}")
    made = []  # the batches after the failure are not even made (their kernels not built)
    until_first_failure((made.append(i) or list(batch) for i, batch in enumerate(batches)),
                        fail_fast=True)
    assert made == [0, 1]
    passing = [[result("a", True)], [result("b", True)]]
    assert len(until_first_failure(iter(passing), fail_fast=True)) == 2


def _arrays(*objects) -> dict[str, np.ndarray]:
    return {f"{type(o).__name__}.{name}": np.copy(value) for o in objects
            for name, value in vars(o).items() if isinstance(value, np.ndarray)}


def test_a_check_leaves_its_problem_as_it_was(device, default_recipe):
    # A check's worker builds its problems once for all the pairs it checks: no check may
    # change a problem's tree or lists (each draws its values anew from the problem's seed).
    problem = check_problems(0)[3]  # targets apart from sources
    before = _arrays(problem.tree, problem.lists)
    first = [check_pair(op, default_recipe, problem, device) for op in ("p2p", "m2l", "l2p")]
    after = _arrays(problem.tree, problem.lists)
    assert before.keys() == after.keys() and len(before) > 20
    assert all(np.array_equal(before[name], after[name]) for name in before)
    again = [check_pair(op, default_recipe, problem, device) for op in ("p2p", "m2l", "l2p")]
    assert all(r.ok for results in first + again for r in results)
    assert [[r.max_relative_error for r in results] for results in again] == \
        [[r.max_relative_error for r in results] for results in first]


def test_crashing_kernel_is_reported_and_checking_goes_on():
    done = run_cli("check", "--small-only", "--recipes", str(WRONG_RECIPES), "--operator",
                   "p2p", "--recipe", "writes_out_of_bounds", "--recipe", "cpu")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = _result_lines(done.stdout)
    assert any("writes_out_of_bounds" in line and "crashed" in line for line in lines)
    cpu_lines = [line for line in lines if " cpu " in line]
    # the 5 small problems, each kernel also with the coarser 1/sqrt
    assert len(cpu_lines) == 5 * len(check_labels("p2p") + coarse_root_labels("p2p"))
    assert all(line.startswith("ok ") for line in cpu_lines)


def test_unknown_recipe_name_exits_with_a_message():
    done = run_cli("check", "--recipe", "no_such_recipe")
    assert done.returncode == 2
    assert "no recipe named ['no_such_recipe']" in done.stderr


def test_recipes_command_lists_the_default_choice(default_recipe):
    done = run_cli("recipes")
    assert done.returncode == 0, done.stderr
    assert "p2p (pairwise)" in done.stdout
    assert f"default here: '{default_recipe}'" in done.stdout
    assert "\nvectors: " in done.stdout and " doubles (" in done.stdout
