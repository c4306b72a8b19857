"""Cost of Fmm's first-use verification: the shipped ``cpu`` recipes under another name (a
user's recipe, so every launch is compared with ``sequential`` on the tree first) against the
same recipes as shipped, on N points of the sphere (order 6, n_crit 150).

    python benchmarks/first_use_verification.py --n 100000 1000000

Prints, per N, two set-ups with the shipped recipes, then two with the copy (the first builds the
``sequential`` kernels at this tree's sizes), each with its set-up stages and one evaluation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.tuning.registry import load_recipes

COPY_OF_CPU = '''
from fmmloopy.tuning.recipe import recipe
from fmmloopy.transforms import cpu


@recipe("pairwise", device="cpu", name="copy_of_cpu")
def pairwise(knl, ctx):
    return cpu.pairwise_cpu(knl, ctx)


@recipe("matvec", device="cpu", name="copy_of_cpu",
        layout=cpu.matvec_layout)
def matvec(knl, ctx):
    return cpu.matvec_cpu(knl, ctx)
'''


def run(points: np.ndarray, charges: np.ndarray, recipes: str | None) -> None:
    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(points, recipes=recipes)
    setup = time.perf_counter() - clock
    fmm(charges)
    clock = time.perf_counter()
    fmm(charges)
    evaluation = time.perf_counter() - clock
    stages = ", ".join(f"{name} {seconds:.3f}" for name, seconds in fmm.setup_seconds.items())
    print(f"  {recipes or 'shipped':12s} set-up {setup:6.3f} s ({stages}); evaluation "
          f"{evaluation:.3f} s; verified {sorted(fmm.verified_recipes)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy_of_cpu.py"
        path.write_text(COPY_OF_CPU)
        load_recipes(path)
        for n in args.n:
            rng = np.random.default_rng(0)
            points, charges = sphere_surface(n, rng), rng.uniform(0.0, 1.0, n)
            print(f"N = {n}:")
            for recipes in ("cpu", "cpu", "copy_of_cpu", "copy_of_cpu"):
                run(points, charges, recipes)


if __name__ == "__main__":
    main()
