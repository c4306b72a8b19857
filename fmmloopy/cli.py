"""The ``fmmloopy`` command line: ``check`` (and ``recipes``)."""

from __future__ import annotations

import argparse
import sys

from fmmloopy.operators import OPERATORS


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
    _add_common(check)

    recipes = commands.add_parser(
        "recipes", help="list operators, recipes, device classes and the default choice")
    _add_common(recipes)
    return parser


def _check(args: argparse.Namespace) -> int:
    from fmmloopy.check import run_checks
    from fmmloopy.devices import choose_device, device_classes

    device = choose_device(args.device)
    print(f"device: {device.name} ({', '.join(device_classes(device))})")
    results = []
    for result in run_checks(device, operators=args.operator, recipes=args.recipe,
                             recipe_sources=args.recipes, seed=args.seed):
        results.append(result)
        print(result.line(), flush=True)
    failures = [r for r in results if not r.ok]
    print(f"{len(results) - len(failures)} of {len(results)} checks passed")
    return 1 if failures or not results else 0


def _recipes(args: argparse.Namespace) -> int:
    from fmmloopy.devices import choose_device, device_classes
    from fmmloopy.recipes import ensure_loaded, registered, select_recipe

    ensure_loaded(args.recipes)
    device = choose_device(args.device)
    print(f"device: {device.name}; classes, most specific first: {device_classes(device)}")
    for name, spec in OPERATORS.items():
        chosen = select_recipe(name, spec.template, device)
        print(f"{name} ({spec.template}): {spec.summary}; default here: {chosen.name!r}")
    print("registered recipes:")
    for entry in registered():
        print(f"  {entry.name:12s} for {', '.join(entry.targets):20s} device {entry.device:12s}"
              f" {entry.source}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fmmloopy`` console script."""
    args = _parser().parse_args(argv)
    from fmmloopy.recipes import RecipeError

    try:
        return {"check": _check, "recipes": _recipes}[args.command](args)
    except (RecipeError, LookupError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"fmmloopy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
