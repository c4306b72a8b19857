"""fmmloopy and FMM3D at one eps, side by side: Laplace (``lfmm3d``), Yukawa and Helmholtz
(``hfmm3d``), potentials of charges.

Usage::

    python benchmarks/eps_vs_fmm3d.py --n 1000000 [--dist sphere cube]
        [--kernel laplace yukawa helmholtz] [--eps 1e-3 1e-6 1e-9] [--repeats 3] [--json]

N points on the unit sphere or uniform in the cube [-1, 1]^3, charges uniform in [-1, 1] (real;
Helmholtz's too), potentials at the points. fmmloopy runs ``Fmm(points, kernel, eps=eps)`` (the
order its accuracy table chooses); FMM3D the same eps. Yukawa is ``exp(-kappa r)`` with
``--kappa`` (10), FMM3D's Helmholtz kernel at the imaginary wavenumber ``1j kappa``; Helmholtz
``exp(1j k r)`` with the points' root box ``--wavelengths`` (1) wide (FMM3D's Python kernels
include the ``1 / (4 pi)``, as ours do). FMM3D must be the library built from source
with OpenMP and its fast kernels (``make lib OMP=ON FAST_KER=ON``, its Python module built
against it): the ``fmm3dpy`` wheel from PyPI runs on one core and is 3 to 5 times slower. Both
run in this process on every core (``OMP_NUM_THREADS`` set before fmm3dpy loads).

fmmloopy's *one-shot* is a second ``Fmm`` of the points (warm caches: operators and kernels on
disk from the first) plus one evaluation; its *evaluation* the median of ``--repeats`` calls
after a warm-up. FMM3D has no split: its time per call (median of ``--fmm3d-repeats`` after a
warm-up) is both. Errors are relative
L2 against a direct sum on ``--check-targets`` sampled points.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

CORES = os.cpu_count() or 1
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

from vs_stfmm3d import median_call  # noqa: E402  (a warm-up call, then the median)

import fmmloopy  # noqa: E402
from fmmloopy.base.distributions import sphere_surface  # noqa: E402
from fmmloopy.maths.green import LAPLACE_3D, helmholtz, yukawa  # noqa: E402
from fmmloopy.maths.reference import direct_sum  # noqa: E402
from fmmloopy.tree.octree import root_box_side  # noqa: E402


def problem(dist: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = sphere_surface(n, rng) if dist == "sphere" else rng.uniform(-1, 1, (n, 3))
    return points, rng.uniform(-1.0, 1.0, n)


def error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def kernels(names, points: np.ndarray, kappa: float, wavelengths: float) -> dict:
    """name -> (our kernel, FMM3D's call of eps, sources and charges)."""
    import fmm3dpy

    k = 2 * math.pi * wavelengths / root_box_side(points, None)
    made = {
        "laplace": (LAPLACE_3D, lambda eps, s, q: fmm3dpy.lfmm3d(
            eps=eps, sources=s, charges=q, pg=1).pot),
        "yukawa": (yukawa(kappa), lambda eps, s, q: fmm3dpy.hfmm3d(
            eps=eps, zk=1j * kappa, sources=s, charges=q.astype(complex), pg=1).pot.real),
        "helmholtz": (helmholtz(k), lambda eps, s, q: fmm3dpy.hfmm3d(
            eps=eps, zk=k, sources=s, charges=q.astype(complex), pg=1).pot)}
    return {name: made[name] for name in names}


def run(dist: str, n: int, args) -> list[dict]:
    points, charges = problem(dist, n, args.seed)
    sample = np.random.default_rng(args.seed + 1).choice(n, min(args.check_targets, n),
                                                         replace=False)
    sources = np.asfortranarray(points.T)
    rows = []
    for kernel, fmm3d in kernels(args.kernel, points, args.kappa,
                                args.wavelengths).values():
        reference = direct_sum(kernel, points, charges, points[sample])
        for eps in args.eps:
            row = {"dist": dist, "n": n, "kernel": kernel.spec, "eps": eps}
            try:
                fmmloopy.Fmm(points, kernel=kernel, eps=eps)  # caches warm
            except ValueError as refused:
                rows.append(row | {"refused": str(refused)})
                print_row(rows[-1], args.json)
                continue
            clock = time.perf_counter()
            fmm = fmmloopy.Fmm(points, kernel=kernel, eps=eps)
            setup = time.perf_counter() - clock
            potential = fmm(charges)
            evaluation = median_call(lambda fmm=fmm: fmm(charges), args.repeats)  # warm-up too
            row |= {"order": fmm.order, "n_crit": fmm.n_crit, "setup": setup,
                    "eval": evaluation, "one_shot": setup + evaluation,
                    "error": error(potential[sample], reference)}
            del fmm
            theirs = {}

            def call(eps=eps, fmm3d=fmm3d, theirs=theirs):
                theirs["potential"] = fmm3d(eps, sources, charges)
            row["fmm3d"] = median_call(call, args.fmm3d_repeats)
            row["fmm3d_error"] = error(theirs["potential"][sample], reference)
            row["one_shot_ratio"] = row["fmm3d"] / row["one_shot"]
            row["eval_ratio"] = row["fmm3d"] / row["eval"]
            rows.append(row)
            print_row(row, args.json)
    return rows


def print_row(row: dict, quiet: bool) -> None:
    if quiet:
        return
    if "refused" in row:
        print(f"| {row['dist']} | {row['kernel']} | {row['eps']:g} | refused: "
              f"{row['refused']} |", flush=True)
        return
    print(f"| {row['dist']} | {row['kernel']} | {row['eps']:g} | {row['order']} | "
          f"{row['setup']:.3f} | {row['eval']:.3f} | {row['error']:.1e} | {row['fmm3d']:.3f} | "
          f"{row['fmm3d_error']:.1e} | **{row['one_shot_ratio']:.1f}x** | "
          f"**{row['eval_ratio']:.1f}x** |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dist", nargs="+", default=["sphere", "cube"],
                        choices=["sphere", "cube"])
    parser.add_argument("--kernel", nargs="+", default=["laplace"],
                        choices=["laplace", "yukawa", "helmholtz"])
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-6, 1e-9])
    parser.add_argument("--kappa", type=float, default=10.0)
    parser.add_argument("--wavelengths", type=float, default=1.0,
                        help="Helmholtz: the points' root box in wavelengths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fmm3d-repeats", type=int, default=2)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.json:
        print("| points | kernel | eps | order | set-up (warm) s | evaluation s | error | "
              "FMM3D s | FMM3D error | one-shot ratio | evaluation ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [row for dist in args.dist for n in args.n for row in run(dist, n, args)]
    if args.json:
        print(json.dumps({"cores": CORES, "omp_num_threads": os.environ["OMP_NUM_THREADS"],
                          "rows": rows}))


if __name__ == "__main__":
    main()
