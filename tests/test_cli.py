"""``fmmloopy bench`` and ``fmmloopy show`` on small problems; options out of range."""

import json
import os
import subprocess
import sys

import pytest

from fmmloopy.api.fmm import MAX_ORDER, MIN_ORDER
from fmmloopy.cli.main import main
from fmmloopy.maths.operators import OPERATORS


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fmmloopy.cli", *args],
                          capture_output=True, text=True, timeout=600)


def test_bench_reports_every_step_with_work_rate_and_speedup(default_recipe):
    done = run_cli("bench", "--n", "4000", "--order", "3", "--n-crit", "40", "--repeats", "1",
                   "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    steps = {row["step"]: row for row in report["steps"]}
    assert set(steps) == set(OPERATORS)
    for row in steps.values():
        assert row["recipe"] == default_recipe and row["work"] > 0 and row["seconds"] > 0
        assert row["rate"] == row["work"] / row["seconds"] and row["speedup"] > 0
        assert row["flops"] >= row["work"] and 0 < row["roof_share"] and row["intensity"] > 0
    assert report["info"]["peak_gflops"] > 0 and report["info"]["bandwidth_gbytes"] > 0


def test_bench_table_for_one_operator_and_recipe():
    done = run_cli("bench", "--n", "3000", "--order", "2", "--operator", "p2p",
                   "--recipe", "generic", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].split()[:2] == ["p2p", "generic"] and "Mpair/s" in lines[-1]


def test_bench_without_sequential_times_no_sequential_kernel(monkeypatch, capsys):
    """``--no-sequential``: no FMM under 'sequential' is built or timed (on a GPU its kernels
    run on one work-item each), and the speedup column is left empty."""
    from fmmloopy.cli import bench

    built = []
    real_fmm = bench.Fmm
    monkeypatch.setattr(bench, "Fmm", lambda *args, **kwargs: built.append(
        kwargs.get("recipes")) or real_fmm(*args, **kwargs))
    arguments = ["bench", "--n", "3000", "--order", "2", "--operator", "p2p", "--recipe",
                 "generic", "--repeats", "1", "--no-sequential"]
    assert main([*arguments, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [step["speedup"] for step in result["steps"]] == [None]
    assert result["info"]["sequential"] is False
    assert main(arguments) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[:2] == ["p2p", "generic"] and last[-1] == "-"
    assert "sequential" not in built and built


def test_bench_recipe_for_one_operator_applies_to_that_operator_only(tmp_path):
    recipe_file = tmp_path / "only_p2p.py"
    recipe_file.write_text(
        "from fmmloopy.tuning.recipe import recipe\n"
        "from fmmloopy.tuning.tools import parallelize_box_loop\n"
        "@recipe('p2p', name='only_p2p')\n"
        "def only_p2p(knl, ctx):\n"
        "    return parallelize_box_loop(knl)\n")
    done = run_cli("bench", "--recipes", str(recipe_file), "--n", "3000", "--order", "2",
                   "--operator", "p2p", "--recipe", "only_p2p", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split()[:2] == ["p2p", "only_p2p"]


def test_show_prints_math_kernel_and_generated_code():
    done = run_cli("show", "m2l", "--order", "3", "--recipe", "cpu")
    assert done.returncode == 0, done.stderr
    assert "math-level kernel" in done.stdout and "iexp_src" in done.stdout
    # The math-level kernel shown is the one the recipe transforms: cpu asks for the grouped
    # layout.
    assert "list layout Grouped" in done.stdout and "for iblock" in done.stdout
    # ... and the generated code is the recipe's: one block of target boxes per work-group.
    assert "__kernel void" in done.stdout and "gid(0)" in done.stdout


def test_bench_refuses_nothing_to_time():
    for flag, name in (("--n", "n (points to bench on)"), ("--repeats", "repeats")):
        done = run_cli("bench", flag, "0")
        assert done.returncode == 2
        assert f"{name} must be an integer >= 1, got 0" in done.stderr


ONE_PASS = '''
import loopy as lp

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import pad_loop


@recipe("p2p", device="any", name="one_pass")
def one_pass(knl, ctx):
    """All targets of a box in one 64-wide pass: wrong for boxes of more than 64 targets."""
    knl = lp.tag_inames(knl, {"itgt_box": "g.0"})
    return pad_loop(knl, "itgt", 64)
'''


def test_bench_verifies_a_recipe_that_is_not_shipped_unless_told_not_to(tmp_path):
    recipe_file = tmp_path / "one_pass.py"
    recipe_file.write_text(ONE_PASS)
    common = ("bench", "--recipes", str(recipe_file), "--n", "5000", "--operator", "p2p",
              "--recipe", "one_pass", "--repeats", "1")  # order 6, n_crit 150: leaves > 64
    refused = run_cli(*common)
    assert refused.returncode == 2
    assert "one_pass" in refused.stderr and "differs from 'sequential'" in refused.stderr
    assert "target 64 of" in refused.stderr  # the first target past the recipe's bound
    timed = run_cli(*common, "--no-verify-recipes")
    assert timed.returncode == 0, timed.stderr
    assert "one_pass: NOT verified against 'sequential'" in timed.stdout
    assert "p2p    one_pass" in timed.stdout


@pytest.mark.parametrize("args,env,message", [
    (("bench", "--n", "10000000000"), {}, "needs an estimated"),
    (("recipes", "--recipes", "no_such_module"), {},
     "recipe module 'no_such_module' cannot be imported"),
    (("recipes",), {"FMMLOOPY_RECIPES": "no_such_mod"},
     "recipe module 'no_such_mod' cannot be imported"),
])
def test_every_cli_failure_is_one_line_and_status_2(args, env, message):
    """(These once printed 19- and 20-line tracebacks.)"""
    done = subprocess.run([sys.executable, "-m", "fmmloopy.cli", *args], capture_output=True,
                          text=True, timeout=600, env=os.environ | env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fmmloopy {args[0]}: error: ")
    assert message in lines[0]


ORDER_RANGE = f"--order must be an integer in [{MIN_ORDER}, {MAX_ORDER}]"
ONLY_P2P = ("--operator", "p2p", "--recipe", "sequential")  # little work if not refused


SIZES_OUT_OF_RANGE = [
    (("show", "m2l", "--order", str(MAX_ORDER + 1)), f"{ORDER_RANGE}, got {MAX_ORDER + 1}"),
    (("show", "p2p", "--order", str(MIN_ORDER - 1)), f"{ORDER_RANGE}, got {MIN_ORDER - 1}"),
    (("bench", "--order", str(MAX_ORDER + 1)), f"{ORDER_RANGE}, got {MAX_ORDER + 1}"),
    (("bench", "--n-crit", "0"), "--n-crit must be an integer >= 1, got 0"),
    (("check", "--order", str(MAX_ORDER + 1)), f"{ORDER_RANGE}, got {MAX_ORDER + 1}"),
    (("check", "--small-only", *ONLY_P2P, "--order", str(MAX_ORDER + 1)),
     f"{ORDER_RANGE}, got {MAX_ORDER + 1}"),
    (("check", "--small-only", *ONLY_P2P, "--n-crit", "0"),
     "--n-crit must be an integer >= 1, got 0"),
    (("check", "--small-only", *ONLY_P2P, "--n", "0"), "--n must be an integer >= 1, got 0"),
    (("check", "--memcheck", *ONLY_P2P, "--order", str(MIN_ORDER - 1)),
     f"{ORDER_RANGE}, got {MIN_ORDER - 1}"),
]


@pytest.mark.parametrize("args,message", SIZES_OUT_OF_RANGE,
                         ids=[" ".join(args) for args, _ in SIZES_OUT_OF_RANGE])
def test_sizes_fmm_refuses_are_refused_by_every_command_before_any_work(args, message, capsys):
    """(show --order 17 ran, check --small-only and --memcheck ignored a bad --order, --n-crit
    and --n, bench named its options 'order' and 'n_crit')"""
    assert main(list(args)) == 2
    out, err = capsys.readouterr()
    assert err == f"fmmloopy {args[0]}: error: {message}\n"
    assert out == ""


BAD_SELECTIONS = [
    (("check", "--recipes", "no_such_module"), "recipe module 'no_such_module' cannot be imported"),
    (("check", "--small-only", "--dtype", "float32", "--recipes", "no_such_module"),
     "recipe module 'no_such_module' cannot be imported"),
    (("check", "--memcheck", "--recipes", "no_such_module"),
     "recipe module 'no_such_module' cannot be imported"),
    (("check", "--recipe", "no_such_recipe"), "no recipe named ['no_such_recipe']"),
    (("check", "--memcheck", "--recipe", "no_such_recipe"), "no recipe named ['no_such_recipe']"),
]


@pytest.mark.parametrize("args,message", BAD_SELECTIONS,
                         ids=[" ".join(args) for args, _ in BAD_SELECTIONS])
def test_check_refuses_a_bad_recipe_selection_before_printing_anything(args, message, capsys):
    """(The check once described every problem, and memcheck named its device, first.)"""
    assert main(list(args)) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"fmmloopy {args[0]}: error: ") and message in err, err
    assert out == ""


def test_bench_with_eps_reports_the_order_chosen_and_the_estimated_error(capsys):
    """``--eps``: the order comes from the accuracy table, and the call's error, estimated on
    sampled targets, is printed and lies within eps (2e-3 at this order and size)."""
    from fmmloopy.maths.accuracy import order_for_eps
    from fmmloopy.maths.green import LAPLACE_3D

    arguments = ["bench", "--n", "3000", "--eps", "1e-2", "--operator", "p2p", "--repeats",
                 "1", "--no-sequential", "--error-samples", "300"]
    assert main([*arguments, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["info"]
    assert info["order"] == order_for_eps(1e-2, LAPLACE_3D, 1.0) and info["eps"] == 1e-2
    estimate = info["error_estimate"]["potential"]
    assert estimate["samples"] == 300 and 0 < estimate["relative_l2"] <= 1e-2
    assert estimate["low"] <= estimate["relative_l2"] <= estimate["high"]
    assert main(arguments) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("relative L2 error, estimated") and "(eps 0.01)" in lines[2]
    with pytest.raises(SystemExit):
        main(["bench", "--order", "4", "--eps", "1e-3"])
