"""Cost of the static write-race analysis (:mod:`fmmloopy.tuning.races`) that runs on every
transformed kernel, against loopy's preprocessing of the same kernel (which code generation needs
anyway), for every operator under the shipped recipes on this machine's device.

    python benchmarks/race_analysis.py [--recipe cpu] [--repeats 3]

Prints one row per operator: loopy's preprocessing (timed once: loopy caches its result in
memory) and the best of ``--repeats`` analyses, and their ratio. (This was a timed assertion in
tests/test_races.py, "under 0.5 s"; timings belong in benchmarks.)
"""

from __future__ import annotations

import argparse
import time

import loopy as lp
import numpy as np

from fmmloopy.base.devices import choose_device
from fmmloopy.maths.operators import OPERATORS, get_operator, math_kernel, operator_sizes
from fmmloopy.tuning import races
from fmmloopy.tuning.recipe import RecipeContext
from fmmloopy.tuning.registry import ensure_loaded, select_recipe


def transformed(operator: str, recipe_name: str, device) -> lp.TranslationUnit:
    """``operator`` at order 4's sizes (56 surface points, rank 24) under the shipped recipe."""
    spec = get_operator(operator)
    recipe = select_recipe(operator, spec.template, device, recipe_name)
    layout = recipe.layout_for(device)
    sizes = operator_sizes(operator, 56, rank=24)
    knl = math_kernel(operator, layout=layout, **sizes)
    ctx = RecipeContext(operator=operator, template=spec.template, device=device,
                        parameters=dict(sizes, dtype=np.dtype(np.float64), layout=layout))
    return recipe(knl, ctx)


def best_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    ensure_loaded()
    device = choose_device()
    print(f"device: {device.name}; recipe {args.recipe!r}; best of {args.repeats}")
    print(f"{'operator':12s} {'preprocess s':>13s} {'analysis s':>11s} {'ratio':>6s}")
    for operator in OPERATORS:
        t_unit = transformed(operator, args.recipe, device)
        start = time.perf_counter()
        preprocessed = lp.preprocess_kernel(t_unit).default_entrypoint
        preprocess = time.perf_counter() - start
        analysis = best_seconds(lambda k=preprocessed: races.analyse_kernel(k), args.repeats)
        print(f"{operator:12s} {preprocess:13.3f} {analysis:11.3f} {analysis / preprocess:6.2f}")


if __name__ == "__main__":
    main()
