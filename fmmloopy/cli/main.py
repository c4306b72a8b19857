"""The ``fmmloopy`` command line: ``check``, ``bench``, ``distributed``, ``show``, ``recipes`` and
``cache``."""

from __future__ import annotations

import argparse
import os
import sys

from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths.green import get_kernel, kernel_names
from fmmloopy.maths.operators import OPERATORS


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipes", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="load recipes from a Python file or module (repeatable; also "
                             "$FMMLOOPY_RECIPES)")
    parser.add_argument("--device", default=None,
                        help="OpenCL device: 'cpu', 'gpu' or part of its name "
                             "(default: $FMMLOOPY_DEVICE, else a GPU, else a CPU)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmmloopy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser(
        "check", help="compare every (operator, recipe) with the sequential recipe")
    check.add_argument("--operator", action="append", choices=sorted(OPERATORS),
                       help="operator to check (repeatable; default: all)")
    check.add_argument("--recipe", action="append",
                       help="recipe name to check (repeatable; default: all that apply)")
    check.add_argument("--seed", type=int, default=0, help="seed of the check problems")
    check.add_argument("--kernel", default="laplace", type=kernel_argument,
                       help="the Green's function every kernel is built for: "
                            f"{KERNEL_HELP} (default laplace)")
    check.add_argument("--order", type=int, default=None,
                       help="order of the production-size problems: surfaces and c2e rank "
                            "(default: fmmloopy.Fmm's for the kernel, 6; Stokes 9)")
    check.add_argument("--n-crit", type=int, default=150,
                       help="most points per leaf of the production-size problems (default "
                            "150, as fmmloopy.Fmm)")
    check.add_argument("--n", type=int, default=None,
                       help="points of each production-size problem (default 120 * n_crit)")
    check.add_argument("--small-only", action="store_true",
                       help="only the small problems: quick, but blind to recipes that go "
                            "wrong only at the sizes of a real run")
    check.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                       help="the kernels' precision: float32 kernels run on inputs rounded to "
                            "float32 and must lie within float32's rounding bound of the float64 "
                            "numpy reference, entry by entry (default float64)")
    check.add_argument("--memcheck", action="store_true",
                       help="run every kernel (as transformed for --device) on tiny trees on "
                            "the Oclgrind simulator instead, and fail on any out-of-bounds "
                            "access or data race as well as on wrong numbers (needs "
                            "pip install 'fmmloopy[memcheck]')")
    check.add_argument("--fail-fast", action="store_true",
                       help="stop checking an (operator, recipe) pair at its first failure: "
                            "a wrong recipe is told wrong sooner, the problems and kernels "
                            "after that failure are not run")
    _add_common(check)

    bench = commands.add_parser(
        "bench", help="time every FMM step on a real tree, with rates and speed-ups")
    bench.add_argument("--operator", action="append", choices=sorted(OPERATORS),
                       help="step to time (repeatable; default: all)")
    bench.add_argument("--recipe", default=None,
                       help="recipe for every operator (default: the device's own)")
    bench.add_argument("--n", type=int, default=100_000, help="number of points")
    bench_accuracy = bench.add_mutually_exclusive_group()
    bench_accuracy.add_argument("--order", type=int, default=6, help="points per surface edge")
    bench_accuracy.add_argument("--eps", type=float, default=None,
                                help="the relative L2 error asked for: the order is chosen "
                                     "for it (of the fields benched; docs/kernels.md)")
    bench.add_argument("--error-samples", type=int, default=500,
                       help="targets the error estimate sums directly (0: no estimate)")
    bench.add_argument("--n-crit", type=n_crit_argument, default="auto",
                       help="most points per leaf, or 'auto' (default: chosen by cost)")
    bench.add_argument("--distribution", default="sphere", choices=sorted(DISTRIBUTIONS))
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per step (median)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--kernel", default="laplace", type=kernel_argument,
                       help=f"Green's function: {KERNEL_HELP} (default: laplace)")
    bench.add_argument("--gradient", action="store_true",
                       help="the potential and its gradient at the targets")
    bench.add_argument("--dipoles", action="store_true",
                       help="sources with charges and dipole moments")
    bench.add_argument("--no-sequential", action="store_true",
                       help="do not time the steps under 'sequential' too (no 'vs sequential' "
                            "column): on a GPU its kernels run on one work-item per box or "
                            "per launch, hundreds of times slower than the device's recipes")
    bench.add_argument("--no-verify-recipes", action="store_true",
                       help="time recipes that are not shipped without comparing them with "
                            "'sequential' on the tree first (the output says so)")
    _add_common(bench)

    distributed = commands.add_parser(
        "distributed", help="one FMM over the ranks of an MPI job (run it under mpiexec -n R): "
        "accuracy, times per step, each rank's compute, communication, waiting and bytes")
    distributed.add_argument("--n", type=int, default=1_000_000, help="number of points")
    distributed.add_argument("--distribution", default="sphere", choices=sorted(DISTRIBUTIONS))
    distributed.add_argument("--order", type=int, default=6, help="points per surface edge")
    distributed.add_argument("--n-crit", type=n_crit_argument, default="auto",
                             help="most points per leaf, or 'auto' (default: chosen by cost)")
    distributed.add_argument("--kernel", default="laplace", type=kernel_argument,
                             help=f"Green's function: {KERNEL_HELP} (default: laplace)")
    distributed.add_argument("--check-targets", type=int, default=1000,
                             help="targets sampled for the comparison with direct summation")
    distributed.add_argument("--repeats", type=int, default=2,
                             help="evaluations (fastest reported)")
    distributed.add_argument("--seed", type=int, default=0)
    distributed.add_argument("--json", action="store_true", help="print one JSON object")
    distributed.add_argument("--device", default=None,
                             help="OpenCL device: 'cpu', 'gpu' or part of its name (default: "
                                  "GPU i for a node's i-th rank where there is one, else a "
                                  "share of the CPU)")

    show = commands.add_parser(
        "show", help="print an operator's math-level kernel and its generated device code")
    show.add_argument("operator", choices=sorted(OPERATORS))
    show.add_argument("--recipe", default=None, help="recipe (default: the device's own)")
    show.add_argument("--order", type=int, default=6, help="points per surface edge")
    _add_common(show)

    cache = commands.add_parser(
        "cache", help="list or clear the disk caches (generated kernels, KIFMM operators)")
    cache.add_argument("action", choices=("list", "clear"))

    recipes = commands.add_parser(
        "recipes", help="list operators, recipes, device classes, the default choice and the "
                        "values of the recipes' parameters in force (tuned or declared)")
    _add_common(recipes)

    tune = commands.add_parser(
        "tune", help="search the recipes' parameters on this device, each candidate compared "
                     "with 'sequential' before it is timed; keep the fastest values")
    tune.add_argument("--n", type=int, default=100_000, help="points of the FMM tuned on")
    tune.add_argument("--order", type=int, default=6, help="points per surface edge")
    tune.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="sphere")
    tune.add_argument("--repeats", type=int, default=5,
                      help="alternated timed runs of each candidate and of the defaults")
    tune.add_argument("--operator", action="append", default=None, choices=sorted(OPERATORS),
                      help="tune this operator (repeatable; default: every step of at least "
                           "3 %% of the evaluation)")
    tune.add_argument("--recipe", default=None,
                      help="tune this recipe's parameters (with --operator: for those "
                           "operators only; default: the device's own recipes)")
    tune.add_argument("--reset", action="store_true",
                      help="drop this device's tuning record (the declared defaults run) and "
                           "tune nothing")
    tune.add_argument("--rates-only", action="store_true",
                      help="the quick probe: measure this device's P2P and matvec rates under "
                           "the values in force (what the n_crit cost model weighs), tune "
                           "nothing; tuned values already stored stay")
    tune.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(tune)
    return parser


def _check_sizes(args: argparse.Namespace) -> None:
    """Refuse an ``--order`` or ``--n-crit`` that :class:`fmmloopy.Fmm` would refuse, before any
    work, in every command that takes them (also where they go unused: ``check --small-only``)."""
    if not hasattr(args, "order"):  # every command with --n-crit has --order
        return
    from fmmloopy.api.fmm import MAX_ORDER, MIN_ORDER
    from fmmloopy.base.validation import validate_integer

    if args.order is not None:  # check's default: the kernel's (_check)
        validate_integer(args.order, "--order", MIN_ORDER, MAX_ORDER)
    if getattr(args, "n_crit", "auto") != "auto":
        validate_integer(args.n_crit, "--n-crit", 1)


def _check(args: argparse.Namespace) -> int:
    from fmmloopy.base.devices import choose_device, device_classes
    from fmmloopy.base.precision import get_precision
    from fmmloopy.base.validation import validate_integer
    from fmmloopy.checking.check import (
        ProductionSizes,
        describe_problems,
        loopy_log_path,
        run_checks,
    )

    n = None if args.n is None else validate_integer(args.n, "--n", 1)
    device = choose_device(args.device)
    selection = dict(operators=args.operator, recipes=args.recipe, recipe_sources=args.recipes,
                     seed=args.seed, kernel=args.kernel, fail_fast=args.fail_fast)
    if args.memcheck:
        from fmmloopy.checking.memcheck import oclgrind_device, run_memchecks

        if args.dtype != "float64":
            raise ValueError("--memcheck runs float64 kernels only; leave out --dtype")

        simulator = oclgrind_device()  # fails with how to install it before any work
        # Recipe files, recipes and operators are refused here, before anything is printed.
        checks, what = run_memchecks(device, **selection), "memchecks"
        print(f"device: {simulator.name} (memcheck: out-of-bounds accesses and data races); "
              f"reference 'sequential' on {device.name} ({', '.join(device_classes(device))})")
    else:
        order = args.order
        if order is None:
            from fmmloopy.api.options import DEFAULT_ORDER, default_order

            order = default_order(args.kernel) or DEFAULT_ORDER
        production = None if args.small_only else ProductionSizes(
            order=order, n_crit=args.n_crit, n=n)
        checks, what = run_checks(device, production=production,
                                  precision=get_precision(args.dtype), **selection), "checks"
        print(f"device: {device.name} ({', '.join(device_classes(device))}); kernel "
              f"{args.kernel!r}; {args.dtype}")
        print("problems (production-size ones run whole launches, the reference on sampled "
              "rows):")
        for line in describe_problems(args.seed, production, args.kernel):
            print(f"  {line}", flush=True)
    results = []
    for result in checks:
        results.append(result)
        print(result.line(), flush=True)
        for line in result.detail_lines():
            print(line, flush=True)
    failures = [r for r in results if not r.ok]
    print(f"{len(results) - len(failures)} of {len(results)} {what} passed")
    if not args.memcheck:
        against = "'sequential'" if args.dtype == "float64" else (
            f"the float64 numpy reference within {args.dtype}'s rounding bound")
        print(f"(numbers against {against}, and recipes' loops statically for write races; "
              "out-of-bounds accesses and races at run time are not looked for: add --memcheck)")
        if failures:
            print(f"loopy's own output, if any, is in {loopy_log_path()}")
    if args.small_only and not args.memcheck:
        print("(small problems only: sizes of a real run not checked)")
    return 1 if failures or not results else 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from fmmloopy.cli.bench import as_json, format_table, run_bench
    from fmmloopy.tuning.registry import ensure_loaded

    ensure_loaded(args.recipes)
    rows, info = run_bench(n=args.n, order=args.order, n_crit=args.n_crit,
                           distribution=args.distribution, recipe=args.recipe,
                           operators=args.operator, repeats=args.repeats, device=args.device,
                           verify_recipes=not args.no_verify_recipes, kernel=args.kernel,
                           gradient=args.gradient, dipoles=args.dipoles,
                           sequential=not args.no_sequential, eps=args.eps,
                           error_samples=args.error_samples)
    print(json.dumps(as_json(rows, info)) if args.json else format_table(rows, info))
    return 0


def _tune(args: argparse.Namespace) -> int:
    import json

    from fmmloopy.cli.tune import format_report, reset, run_tune
    from fmmloopy.tuning.registry import ensure_loaded

    ensure_loaded(args.recipes)
    if args.reset:
        print(reset(args.device))
        return 0
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    recipes = ({operator: args.recipe for operator in args.operator}
               if args.recipe and args.operator else args.recipe)
    report = run_tune(n=args.n, order=args.order, distribution=args.distribution,
                      repeats=args.repeats, device=args.device, operators=args.operator,
                      recipes=recipes, rates_only=args.rates_only, log=log)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _distributed(args: argparse.Namespace) -> int:
    import json

    from fmmloopy.cli.distributed import print_distributed_report, run_distributed

    if args.n < 1 or args.check_targets < 1 or args.repeats < 1:
        raise ValueError("--n, --check-targets and --repeats must be at least 1")
    report = run_distributed(args.n, args.distribution, order=args.order, n_crit=args.n_crit,
                             device=args.device, check_targets=args.check_targets,
                             repeats=args.repeats, seed=args.seed, kernel=args.kernel)
    if report is not None:
        print(json.dumps(report) if args.json else "", end="\n" if args.json else "")
        if not args.json:
            print_distributed_report(report)
    return 0


def _show(args: argparse.Namespace) -> int:
    from fmmloopy.base.devices import choose_device
    from fmmloopy.execution.compiled import compiled_operator
    from fmmloopy.execution.precomputed import get_operators
    from fmmloopy.maths.operators import math_kernel, operator_sizes
    from fmmloopy.maths.surfaces import surface_size
    from fmmloopy.tuning.registry import ensure_loaded

    ensure_loaded(args.recipes)
    n_e = surface_size(args.order)
    # The sizes an FMM of this order runs: the ranks of its precomputed operators.
    operators = get_operators("laplace", args.order)
    sizes = operator_sizes(args.operator, n_e, rank=operators.ranks()["uc2e"],
                           m2l_rank=operators.m2l_rank())
    device = choose_device(args.device)
    compiled = compiled_operator(args.operator, device, recipe=args.recipe, **sizes)
    print(f"# {args.operator}: math-level kernel (order {args.order}, sizes {sizes}), "
          f"list layout {compiled.layout} (as recipe {compiled.recipe.name!r} asks)")
    print(math_kernel(args.operator, layout=compiled.layout, **sizes))
    print(f"# {args.operator} under recipe {compiled.recipe.name!r} ({compiled.recipe.source}) "
          f"on {device.name}: generated OpenCL")
    print(compiled.device_code())
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from fmmloopy.base.devices import (
        choose_device,
        describe_devices,
        describe_probe,
        describe_vector_width,
        device_classes,
    )
    from fmmloopy.execution.tuning_records import (
        describe_record,
        device_pair_flops,
        measured_rates,
        tuned_settings,
    )
    from fmmloopy.tuning.registry import ensure_loaded, registered, select_recipe

    ensure_loaded(args.recipes)
    device = choose_device(args.device)
    print(f"device: {device.name}; classes, most specific first: {device_classes(device)}")
    print(describe_vector_width(device))
    print(describe_probe(device))
    print(describe_devices())
    for name, spec in OPERATORS.items():
        chosen = select_recipe(name, spec.template, device)
        print(f"{name} ({spec.template}): {spec.summary}; default here: {chosen.name!r}")
    print("registered recipes:")
    for entry in registered():
        print(f"  {entry.name:12s} for {', '.join(entry.targets):20s} device {entry.device:12s}"
              f" {entry.source}")
        for parameter, declared in entry.parameters:
            print(f"      {parameter}: one of {declared.values}; default here "
                  f"{declared.default_for(device)!r} ({declared.doc})")
    print(f"n_crit cost model: a P2P pair costs {device_pair_flops(device):.3g} matvec flops "
          "here" + (" (measured by fmmloopy tune)" if measured_rates(device) else
                    " (the constant of this kind of device)"))
    print(f"parameter values in force here ({describe_record(device)}):")
    for name, spec in OPERATORS.items():
        chosen = select_recipe(name, spec.template, device)
        if chosen.parameters:
            tuned = tuned_settings(chosen, name, device)
            values = chosen.settings_for(device, tuned)
            print(f"  {name:12s} {chosen.name!r}: " + ", ".join(
                f"{key}={value!r}" + (" (tuned)" if key in tuned else "")
                for key, value in values.items()))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from fmmloopy.execution.cache_files import cache_dir
    from fmmloopy.execution.cache_listing import cache_entries, clear_cache

    try:
        if args.action == "clear":
            files, size = clear_cache()
            print(f"{cache_dir()}: removed {files} file{'s' if files != 1 else ''} "
                  f"({size} bytes)")
            return 0
        entries = cache_entries()
    except OSError as exc:
        raise RuntimeError(f"cannot {args.action} the cache in {cache_dir()}: {exc}") from exc
    print(f"cache directory: {cache_dir()}")
    for entry in entries:
        print(f"  {entry.line()}")
    total = sum(entry.size for entry in entries)
    print(f"{len(entries)} file{'s' if len(entries) != 1 else ''}, {total} bytes")
    return 0


#: What ``--kernel`` takes, for the help texts.
KERNEL_HELP = (f"one of {', '.join(kernel_names())} with parameters after a colon "
               "(yukawa:kappa=10), or an expression in d0, d1, d2, r "
               "('exp(-kappa*r)/(4*pi*r):kappa=10')")


def kernel_argument(text: str) -> str:
    """``--kernel``: a kernel :func:`~fmmloopy.maths.green.get_kernel` reads (checked here, so
    that a bad one is an argument error with the reason)."""
    try:
        get_kernel(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def n_crit_argument(text: str) -> int | str:
    """``--n-crit``: an integer or ``auto``."""
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fmmloopy`` console script."""
    args = _parser().parse_args(argv)
    from fmmloopy.base.progress import show_progress
    from fmmloopy.tuning.recipe import RecipeError

    show_progress()  # set-up stages that take more than a few seconds, on standard error

    try:
        _check_sizes(args)
        commands = {"check": _check, "bench": _bench, "distributed": _distributed,
                    "show": _show, "recipes": _recipes, "cache": _cache, "tune": _tune}
        return commands[args.command](args)
    except (RecipeError, LookupError, ValueError, FileNotFoundError, RuntimeError,
            MemoryError) as exc:
        print(f"fmmloopy {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else is still one line; the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"fmmloopy {args.command}: error: {type(exc).__name__}: {_one_line(exc)} "
              f"(set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 2


#: Environment variable: set, a failing command shows Python's traceback.
TRACEBACK_ENV = "FMMLOOPY_TRACEBACK"


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__

