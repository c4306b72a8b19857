"""N random charges on the unit sphere's surface (the PyExaFMM benchmark), through fmmloopy.Fmm.

Prints the tree (depth, leaves, list sizes), set-up and evaluation times, time per operator and
the relative L2 error against direct summation on sampled targets. ``--json`` prints one JSON
object instead. ``python examples/laplace_sphere.py --help`` lists the options.

Recipes: ``--recipes FILE_OR_MODULE`` loads recipes of your own (repeatable); ``--recipe NAME``
uses one recipe for every operator, ``--recipe OP=NAME`` (repeatable) one for an operator, e.g.
``--recipes my_recipes.py --recipe p2p=p2p_fast`` (docs/recipes.md); operators not named get
the device's own. Recipes that are not shipped are compared with ``sequential`` on the tree
first (``fmmloopy.Fmm``'s first-use verification); ``--no-verify-recipes`` skips that.

Under ``mpiexec -n R`` (R > 1), or with ``--distributed``, the FMM runs over the ranks
(``fmmloopy.DistributedFmm``): each rank draws its share of the points, and the report adds each
rank's seconds (compute, communication, waiting), bytes sent and the balance (docs/scale-out.md).

Exit status 1, with a message, when the error exceeds what the order is known to reach
(:data:`EXPECTED_ERROR`): a wrong answer never ends with status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping

import numpy as np

import fmmloopy
from fmmloopy.api.fmm import DEFAULT_ORDER
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.cli.distributed import launched_ranks, print_rank_table, run_distributed
from fmmloopy.cli.main import KERNEL_HELP, kernel_argument
from fmmloopy.maths.operators import OPERATORS, get_operator
from fmmloopy.tree.lists import list_size_summary
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import ensure_loaded, recipe_names_for

#: Relative L2 error of the FMM on the sphere by order, measured on 20 000 charges at every
#: target (docs/fmm.md, benchmarks/accuracy_vs_order.py), and the factor allowed above it (runs
#: of 10^5-4*10^6 charges measured 1.6-1.9x the 20 000-charge figure at order 6; sampled targets
#: add noise). Orders past 10 are extrapolated by the measured factor of ~8 per order, but not
#: below 1e-12 (float64 sums of 10^6 terms).
MEASURED_ERROR = {2: 8.33e-3, 3: 4.38e-4, 4: 4.51e-5, 5: 4.46e-6, 6: 5.17e-7, 7: 7.16e-8,
                  8: 1.49e-8, 9: 2.77e-9, 10: 4.18e-10}
ERROR_MARGIN = 10.0

#: The gradient's error (``--gradient``), measured by this example at its defaults (10^5
#: charges, 1000 sampled targets, seed 0) for each order, and the factor allowed above it. The
#: gradient's relative L2 error over sampled targets varies tenfold from sample to sample: its
#: norm is dominated by the few targets with a very close source (1/r^2), so whether the sample
#: holds them moves it (order 6, 2*10^4 sphere points: 1.7e-8 over all targets, 7.4e-7 over 200
#: sampled ones). Hence 100, not 10: a wrong gradient is wrong by O(1).
MEASURED_GRADIENT_ERROR = {2: 4.24e-4, 3: 4.72e-5, 4: 4.31e-6, 5: 5.86e-7, 6: 4.94e-8,
                           7: 5.28e-9, 8: 1.46e-9, 9: 3.06e-10, 10: 4.78e-11}
GRADIENT_ERROR_MARGIN = 100.0

#: ``--dtype float32``: the most relative L2 error float32 adds to the FMM's, against the direct
#: sum of the given inputs (docs/fmm.md, "float32": the kernels store each point relative to its
#: leaf's centre, so the points move by float32's unit at the leaf's width; measured 4e-6 at
#: 2*10^4 and 5.6e-6 at 10^6 charges at order 6).
FLOAT32_ADDED_ERROR = 1e-5


def expected_error(order: int, measured_errors: Mapping[int, float] = MEASURED_ERROR,
                   margin: float = ERROR_MARGIN) -> float:
    """The largest relative L2 error the example accepts at ``order`` (of the potential, or of
    what ``measured_errors`` gives by order, ``margin`` times the measured one)."""
    measured = measured_errors.get(order, measured_errors[10] / 8.0 ** (order - 10))
    return max(margin * measured, 1e-12)


def recipe_choice(values: list[str]) -> str | dict[str, str] | None:
    """``--recipe`` values as ``Fmm(recipes=...)`` takes them: ``None`` (the device's own), one
    name for every operator, or ``{operator: name}``; ``NAME`` and ``OP=NAME`` may be mixed (the
    pairs win). Raises ``ValueError`` naming what is wrong: an unknown operator or recipe, or an
    operator given twice. Load the recipe files first."""
    every, chosen = None, {}
    for value in values:
        operator, separator, name = value.rpartition("=")
        if not name:
            raise ValueError(f"--recipe {value!r}: no recipe name")
        if not separator:
            if every is not None:
                raise ValueError(f"--recipe {every!r} and {name!r}: one recipe name for every "
                                 "operator at most (use OP=NAME for single operators)")
            every = name
        elif operator not in OPERATORS:
            raise ValueError(f"--recipe {value!r}: unknown operator {operator!r}; operators: "
                             f"{', '.join(sorted(OPERATORS))}")
        elif operator in chosen:
            raise ValueError(f"--recipe: operator {operator!r} given twice")
        else:
            chosen[operator] = name
    ensure_loaded()
    known = {operator: recipe_names_for(operator, spec.template)
             for operator, spec in OPERATORS.items()}
    for operator, name in chosen.items():
        if name not in known[operator]:
            raise ValueError(f"--recipe {operator}={name}: no recipe {name!r} for operator "
                             f"{operator!r} (loaded with --recipes?); recipes for it: "
                             f"{', '.join(known[operator])}")
    missing = [operator for operator in OPERATORS
               if every is not None and operator not in chosen and every not in known[operator]]
    if missing:
        has = [operator for operator in OPERATORS if every in known[operator]]
        hint = (f"it has {', '.join(has)}: use OP=NAME for those" if has
                else "no operator has it (loaded with --recipes?)")
        raise ValueError(f"--recipe {every}: no recipe {every!r} for operators "
                         f"{', '.join(missing)}; {hint}")
    if every is None:
        return chosen or None
    return {operator: chosen.get(operator, every) for operator in OPERATORS} if chosen else every


def run(n: int, order: int, n_crit: int | str, device: str | None,
        recipes: str | Mapping[str, str] | None, check_targets: int, repeats: int,
        seed: int, w_x_direct: bool = True, verify_recipes: bool = True,
        kernel: str = "laplace", gradient: bool = False, dtype: str = "float64",
        eps: float | None = None) -> dict:
    """Build the FMM, evaluate it ``repeats`` times, compare with direct summation.

    ``recipes``: as :class:`fmmloopy.Fmm` takes them (a name, ``{operator: name}`` or ``None``).
    With ``gradient``, the gradient is evaluated too and its error reported. ``dtype``: the
    FMM's precision (the errors are against the float64 direct sum of the given inputs in
    either). With ``eps``, the FMM chooses the order for that
    relative L2 error (of the gradient too with ``gradient``) instead of taking ``order``.

    The error is :meth:`fmmloopy.Fmm.estimate_error`'s: over all targets, estimated from
    ``check_targets`` sampled ones, with its 95 % interval.
    """
    rng = np.random.default_rng(seed)
    points = sphere_surface(n, rng)
    charges = rng.uniform(-1.0, 1.0, n)

    accuracy = dict(order=order) if eps is None else dict(
        eps=eps, eps_for=("charges", "gradient") if gradient else "charges")
    fmm = fmmloopy.Fmm(points, kernel=kernel, n_crit=n_crit, device=device, recipes=recipes,
                       w_x_direct=w_x_direct, verify_recipes=verify_recipes, dtype=dtype,
                       **accuracy)
    if fmm.kernel.is_complex:  # Helmholtz: complex charges
        charges = charges + 1j * rng.uniform(-1.0, 1.0, n)
    best = None
    for _ in range(repeats):
        result = fmm(charges, gradient=gradient)
        if best is None or fmm.eval_seconds["total"] < best["total"]:
            best = fmm.eval_seconds
    green = fmm.fields_kernel(gradient=gradient)
    # The reference: every source at sampled targets, by the device's P2P kernel.
    clock = time.perf_counter()
    estimates = fmm.estimate_error(charges, gradient=gradient, samples=check_targets,
                                   seed=seed, result=result)
    reference_seconds = time.perf_counter() - clock
    errors = {}
    for field, suffix in (("potential", ""), ("gradient", "_gradient")):
        if field in estimates:
            errors[f"rel_l2_error{suffix}"] = estimates[field].relative_l2
            errors[f"rel_l2_error{suffix}_interval"] = [estimates[field].low,
                                                        estimates[field].high]
    return {
        "kernel": green.label, "gradient": gradient, "dtype": np.dtype(fmm.dtype).name,
        "n": n, "order": fmm.order, "eps": eps, "n_crit": fmm.n_crit,
        "device": fmm.device.name,
        "depth": fmm.tree.nlevels - 1, "nleaves": int(fmm.tree.box_is_leaf.sum()),
        "list_sizes": list_size_summary(fmm.tree, fmm.lists),
        "w_x_direct": w_x_direct,
        "w_x_moved_to_direct": {name: int(len(getattr(fmm.lists, f"{name}_lists"))
                                          - len(getattr(fmm.evaluated_lists, f"{name}_lists")))
                                for name in ("w", "x")},
        "recipes": used_recipes(fmm),
        "setup_seconds": fmm.setup_seconds,
        "eval_seconds": best,
        # pairs (pairwise operators) or flops (matvec operators) of each step, from the lists
        "eval_work": {step: fmm.last_plan.work(step) for step in best if step in OPERATORS},
        **errors, "check_targets": min(check_targets, n),
        "reference_seconds": reference_seconds,
    }


def used_recipes(fmm: fmmloopy.Fmm) -> dict[str, str]:
    """The recipe each operator's kernels were transformed by, ``{operator: name}``."""
    used: dict[str, set[str]] = {}
    for launch in fmm.last_plan.launches:
        used.setdefault(launch.kernel.operator, set()).add(launch.kernel.recipe.name)
    return {operator: "/".join(sorted(names)) for operator, names in sorted(used.items())}


def _rate(step: str, work: int | None, seconds: float) -> str:
    """Pairs per second (pairwise operators) or flops per second (matvec operators)."""
    if not work or seconds <= 0:
        return ""
    if get_operator(step).template == "pairwise":
        return f"{work / seconds / 1e6:8.0f} Mpair/s"
    return f"{work / seconds / 1e9:8.2f} GFLOP/s"


def print_report(report: dict) -> None:
    ranks = report.get("ranks")
    print(f"{report['kernel']}: "
          f"{report['n']} charges on the unit sphere, order {report['order']}, "
          f"n_crit {report['n_crit']}, device {report['device']}"
          + (f", {report['dtype']}" if report.get("dtype", "float64") != "float64" else "")
          + (f", {len(ranks)} MPI ranks" if ranks else ""))
    sizes = ", ".join(f"{name} {s['mean']:.1f}/{s['max']}"
                      for name, s in report["list_sizes"].items())
    print(f"tree: depth {report['depth']}, {report['nleaves']} leaves; list sizes mean/max: "
          f"{sizes}")
    moved = report["w_x_moved_to_direct"]
    print(f"W/X entries summed directly (small boxes): {moved['w']} of W, {moved['x']} of X"
          + ("" if report["w_x_direct"] else " (--no-w-x-direct)"))
    if report["recipes"]:
        print("recipes: " + ", ".join(f"{op} {name}" for op, name in report["recipes"].items()))
    print("setup: " + ", ".join(f"{k} {v:.3f} s" for k, v in report["setup_seconds"].items()))
    seconds = report["eval_seconds"]
    total = seconds["total"]
    print(f"evaluation: {total:.3f} s" + (" (wall time, slowest rank)" if ranks else ""))
    for step, value in seconds.items():
        if step != "total":
            print(f"  {step:14s} {value:8.4f} s  {100 * value / total:5.1f} %  "
                  f"{_rate(step, report['eval_work'].get(step), value)}")
    if ranks:
        print("per rank (an evaluation's seconds; the steps above: the slowest rank's):")
        print_rank_table(ranks)
    def with_interval(key: str) -> str:
        interval = report.get(key + "_interval")
        return f"{report[key]:.2e}" + (f" (95 % interval {interval[0]:.2e} to "
                                       f"{interval[1]:.2e})" if interval else "")
    print(f"relative L2 error over all targets, estimated against direct summation on "
          f"{report['check_targets']} sampled ones: {with_interval('rel_l2_error')}"
          + (f" potential, {with_interval('rel_l2_error_gradient')} gradient"
             if report["gradient"] else "")
          + (f" (eps {report['eps']:g})" if report.get("eps") else "")
          + (f" (the direct sum on the device: {report['reference_seconds']:.2f} s)"
             if "reference_seconds" in report else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="number of charges")
    accuracy = parser.add_mutually_exclusive_group()
    accuracy.add_argument("--order", type=int, default=None,
                          help="points per surface edge (default 6)")
    accuracy.add_argument("--eps", type=float, default=None,
                          help="the relative L2 error asked for: the FMM chooses the order "
                               "(docs/kernels.md, 'Accuracy by eps')")
    parser.add_argument("--n-crit", type=lambda text: text if text == "auto" else int(text),
                        default="auto", help="most points per leaf, or 'auto' (default: chosen "
                        "by cost for the points and the order)")
    parser.add_argument("--device", default=None, help="'cpu', 'gpu' or part of a device name")
    parser.add_argument("--recipes", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="load recipes from a Python file or module (repeatable)")
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME|OP=NAME",
                        help="recipe for every operator (NAME) or for one (OP=NAME, repeatable; "
                             f"operators: {', '.join(sorted(OPERATORS))}); default: the "
                             "device's own")
    parser.add_argument("--check-targets", type=int, default=1000,
                        help="targets sampled for the comparison with direct summation")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations (fastest reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-w-x-direct", dest="w_x_direct", action="store_false",
                        help="M2P and P2L for every W and X entry (default: boxes with at most "
                             "n_e particles are summed directly)")
    parser.add_argument("--no-verify-recipes", dest="verify_recipes", action="store_false",
                        help="run recipes that are not shipped without comparing them with "
                             "'sequential' on the tree first")
    parser.add_argument("--kernel", default="laplace", type=kernel_argument,
                        help=f"Green's function: {KERNEL_HELP} (default: laplace)")
    parser.add_argument("--gradient", action="store_true",
                        help="evaluate the gradient too and report its error")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="the kernels' precision (default float64; docs/fmm.md)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--distributed", action="store_true",
                        help="run fmmloopy.DistributedFmm over the MPI ranks (the default "
                             "under mpiexec -n R with R > 1; each rank draws its share of the "
                             "points; docs/scale-out.md)")
    args = parser.parse_args(argv)
    if args.order is None and args.eps is None:
        args.order = DEFAULT_ORDER
    if args.n < 1 or args.check_targets < 1 or args.repeats < 1:
        parser.error("--n, --check-targets and --repeats must be at least 1")
    for source in args.recipes:
        try:
            ensure_loaded([source])
        except (OSError, ImportError, RecipeError) as exc:
            parser.error(f"--recipes {source}: {exc}")
    try:
        recipes = recipe_choice(args.recipe)
    except ValueError as exc:
        parser.error(str(exc))

    fmmloopy.show_progress()  # set-up stages that take more than a few seconds, on standard error
    distributed = args.distributed or launched_ranks() > 1
    if distributed and args.gradient:
        parser.error("--gradient is not reported by a distributed run (docs/scale-out.md)")
    if distributed and args.dtype != "float64":
        parser.error("a distributed run is float64 only (docs/scale-out.md)")
    try:
        if distributed:
            report = run_distributed(
                args.n, "sphere", order=None if args.eps else args.order, eps=args.eps,
                n_crit=args.n_crit, device=args.device,
                recipes=recipes, check_targets=args.check_targets, repeats=args.repeats,
                seed=args.seed, kernel=args.kernel, w_x_direct=args.w_x_direct,
                verify_recipes=args.verify_recipes)
            if report is None:  # ranks other than 0: rank 0 reports
                return 0
        else:
            report = run(args.n, args.order, args.n_crit, args.device, recipes,
                         args.check_targets, args.repeats, args.seed, args.w_x_direct,
                         args.verify_recipes, args.kernel, args.gradient, args.dtype,
                         args.eps)
    except (RecipeError, ValueError) as exc:
        print(f"laplace_sphere.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    # float32: within float64's bound plus what float32 adds.
    added = 0.0 if args.dtype == "float64" else FLOAT32_ADDED_ERROR
    order = report["order"]
    checks = [("rel_l2_error", "", ERROR_MARGIN, expected_error(order) + added)]
    if args.gradient:
        checks.append(("rel_l2_error_gradient", " of the gradient",
                       GRADIENT_ERROR_MARGIN,
                       expected_error(order, MEASURED_GRADIENT_ERROR,
                                      GRADIENT_ERROR_MARGIN) + added))
    for key, what, margin, bound in checks:
        if not report[key] <= bound:
            print(f"laplace_sphere.py: the relative L2 error{what} {report[key]:.3g} exceeds "
                  f"{bound:.3g}, {margin:g} times what order {order} reaches"
                  + (f" plus float32's {added:g}" if added else "") + ": the "
                  "result is wrong (a recipe? run 'fmmloopy check')", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
