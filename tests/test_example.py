"""``examples/laplace_sphere.py`` runs and reports what the README promises, as JSON too."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "laplace_sphere.py"

#: A recipe file of a user's own: one P2P recipe, registered for any device.
USER_RECIPES = """
from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import parallelize_box_loop


@recipe("p2p", device="any", name="users_p2p")
def users_p2p(knl, ctx):
    return parallelize_box_loop(knl)
"""


def run_example(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_example_reports_json_with_every_field():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--n", "5000", "--n-crit", "40",
                           "--check-targets", "300", "--repeats", "1", "--json",
                           "--no-w-x-direct"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n"] == 5000 and report["order"] == 6 and report["n_crit"] == 40
    assert report["depth"] >= 3 and report["nleaves"] > 1
    assert set(report["list_sizes"]) == {"U", "V", "W", "X"}
    assert report["w_x_direct"] is False and report["w_x_moved_to_direct"] == {"w": 0, "x": 0}
    assert all(set(size) == {"mean", "max"} for size in report["list_sizes"].values())
    assert set(report["setup_seconds"]) == {"tree", "lists", "precompute", "plan", "kernels"}
    assert report["recipes"]["p2p"] and set(report["recipes"]) <= set(report["eval_seconds"])
    operators = {"p2m", "m2m", "m2l", "l2l", "l2p", "m2p", "p2l", "p2p"}
    assert operators | {"total"} <= set(report["eval_seconds"])
    assert set(report["eval_work"]) == operators | {"c2e", "m2l_compress", "m2l_expand"}
    assert all(work > 0 for work in report["eval_work"].values())
    # Order 6: ~1e-6 measured on sphere points (docs/kifmm.md); a factor 3 for a small sample.
    assert report["rel_l2_error"] < 3e-6


def test_example_reports_the_gradient_and_its_error():
    done = run_example("--n", "5000", "--check-targets", "300", "--repeats", "1", "--json",
                       "--gradient", "--kernel", "laplace")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["gradient"] is True and report["kernel"].startswith("laplace (potential+gradient")
    # Order 6: the example's own gradient measurement is 4.9e-8 at 10^5 charges; sampled
    # estimates vary tenfold (examples/laplace_sphere.py), so a hundredfold margin.
    assert 0 < report["rel_l2_error_gradient"] < 5e-6
    assert report["rel_l2_error"] < 3e-6
    assert {"p2p", "l2p"} <= set(report["eval_seconds"])
    text = run_example("--n", "3000", "--order", "4", "--check-targets", "100", "--repeats", "1",
                       "--gradient")
    assert text.returncode == 0, text.stderr
    assert " potential, " in text.stdout and " gradient" in text.stdout
    assert text.stdout.count("95 % interval") == 2  # the estimate of each field, its interval
    interval = report["rel_l2_error_gradient_interval"]
    assert interval[0] <= report["rel_l2_error_gradient"] <= interval[1]


def test_example_prints_a_readable_report():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--n", "2000", "--order", "4",
                           "--check-targets", "100", "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for expected in ("2000 charges on the unit sphere", "tree: depth", "setup: tree",
                     "W/X entries summed directly (small boxes):", "evaluation:",
                     "Mpair/s", "GFLOP/s", "relative L2 error"):
        assert expected in done.stdout


def test_example_takes_a_recipe_file_and_recipes_per_operator(tmp_path):
    (tmp_path / "my_recipes.py").write_text(USER_RECIPES)
    done = run_example("--n", "3000", "--order", "4", "--n-crit", "40", "--check-targets", "100",
                       "--repeats", "1", "--json", "--recipes", "my_recipes.py",
                       "--recipe", "sequential", "--recipe", "p2p=users_p2p",
                       "--recipe", "m2l=generic", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    recipes = report["recipes"]
    assert recipes.pop("p2p") == "users_p2p" and recipes.pop("m2l") == "generic"
    assert recipes and set(recipes.values()) == {"sequential"}  # the bare name: the others
    assert report["rel_l2_error"] < 1e-3  # order 4


def test_example_bare_recipe_name_means_every_operator():
    done = run_example("--n", "2000", "--order", "3", "--check-targets", "50", "--repeats", "1",
                       "--json", "--recipe", "generic")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["recipes"].values()) == {"generic"}


@pytest.mark.parametrize(("args", "message"), [
    (["--recipe", "p2q=cpu"], "unknown operator 'p2q'; operators: c2e, l2l"),
    (["--recipe", "p2p=no_such_recipe"], "no recipe 'no_such_recipe' for operator 'p2p'"),
    (["--recipe", "no_such_recipe"], "no recipe 'no_such_recipe' for operators p2p, p2m"),
    (["--recipes", "my_recipes.py", "--recipe", "users_p2p"],
     "for operators p2m, p2l, m2p, l2p, m2m, l2l, m2l, m2l_compress, m2l_expand, c2e; it has "
     "p2p: use OP=NAME"),
    (["--recipe", "p2p=cpu", "--recipe", "p2p=generic"], "operator 'p2p' given twice"),
    (["--recipe", "cpu", "--recipe", "generic"], "one recipe name for every operator at most"),
    (["--recipes", "no_such_file.py"], "--recipes no_such_file.py: recipe file"),
])
def test_example_rejects_unknown_operators_and_recipes(tmp_path, args, message):
    (tmp_path / "my_recipes.py").write_text(USER_RECIPES)
    done = run_example("--n", "100", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


#: A P2P recipe wrong for boxes of more than 64 targets (the default n_crit 150 has them).
ONE_PASS_RECIPES = """
import loopy as lp

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import pad_loop


@recipe("p2p", device="any", name="one_pass")
def one_pass(knl, ctx):
    return pad_loop(lp.tag_inames(knl, {"itgt_box": "g.0"}), "itgt", 64)
"""


def test_a_wrong_answer_never_exits_with_status_0(tmp_path):
    """Refused by the first-use verification (status 1); with it off, the error against the
    direct sum exceeds what order 6 reaches, and the example says so (status 1)."""
    (tmp_path / "wrong.py").write_text(ONE_PASS_RECIPES)
    common = ("--n", "20000", "--check-targets", "200", "--repeats", "1", "--recipes",
              "wrong.py", "--recipe", "p2p=one_pass")
    refused = run_example(*common, cwd=tmp_path)
    assert refused.returncode == 1
    assert "one_pass" in refused.stderr and "differs from 'sequential'" in refused.stderr
    unverified = run_example(*common, "--no-verify-recipes", cwd=tmp_path)
    assert unverified.returncode == 1, unverified.stdout + unverified.stderr
    error = float(unverified.stdout.split("direct summation on 200 sampled ones:")[1].split()[0])
    assert error > 1e-3  # order 6 reaches about 1e-6
    assert f"the relative L2 error {error:.3g} exceeds 5.17e-06" in unverified.stderr


def test_expected_error_follows_the_measured_table():
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import laplace_sphere
    finally:
        sys.path.pop(0)
    assert laplace_sphere.expected_error(6) == pytest.approx(5.17e-6)
    assert laplace_sphere.expected_error(2) == pytest.approx(8.33e-2)
    assert laplace_sphere.expected_error(11) == pytest.approx(10 * 4.18e-10 / 8)
    assert laplace_sphere.expected_error(16) == 1e-12


@pytest.mark.parametrize("kernel, label, bounds", [
    # Order 4 on the sphere, 5-25 times the errors measured: Yukawa ~4e-5 potential, 1.5e-6
    # gradient (docs/kernels.md); Helmholtz, complex charges, the root box (side ~2) one
    # wavelength wide: 7.3e-5 and 9.8e-6 here.
    ("yukawa:kappa=1", "yukawa:kappa=1.0", (4e-4, 4e-5)),
    ("helmholtz:k=3.14", "helmholtz:k=3.14", (4e-4, 1e-4)),
])
def test_example_runs_other_kernels(kernel, label, bounds):
    done = run_example("--n", "3000", "--order", "4", "--check-targets", "200", "--repeats", "1",
                       "--json", "--gradient", "--kernel", kernel)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kernel"].startswith(f"{label} (potential+gradient")
    assert report["rel_l2_error"] < bounds[0] and report["rel_l2_error_gradient"] < bounds[1]


def test_example_in_float32_meets_float64s_bound_plus_float32s():
    """``--dtype float32``: the error against the given inputs is held to float64's order-6
    bound plus what float32 may add (the example's FLOAT32_ADDED_ERROR, docs/fmm.md: the points
    are stored relative to their leaves, so their rounding no longer dominates)."""
    done = run_example("--n", "5000", "--check-targets", "300", "--repeats", "1", "--json",
                       "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dtype"] == "float32"
    # Order 6 in float64: < 3e-6 here (test above); float32 adds at most 1e-5.
    assert 0 < report["rel_l2_error"] < 3e-6 + 1e-5


def test_example_with_eps_chooses_the_order_and_meets_it():
    """``--eps``: the order comes from the accuracy table (the example's points are their own
    targets), and the estimated error lies within eps."""
    from fmmloopy.maths.accuracy import order_for_eps
    from fmmloopy.maths.green import LAPLACE_3D

    done = run_example("--n", "4000", "--eps", "1e-4", "--check-targets", "300", "--repeats",
                       "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["eps"] == 1e-4
    assert report["order"] == order_for_eps(1e-4, LAPLACE_3D, 2.0, targets_are_sources=True)
    assert 0 < report["rel_l2_error"] <= 1e-4
    refused = run_example("--n", "100", "--eps", "2")
    assert refused.returncode == 1 and "eps must be a number between 0 and 1" in refused.stderr
