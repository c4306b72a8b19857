"""fmmloopy's Stokes FMM against FMM3D's ``stfmm3d`` on the same points and forces, side by side.

Usage::

    python benchmarks/vs_stfmm3d.py --n 1000000 [--dist sphere cube] [--orders 8 9]
        [--eps 1e-3 1e-6] [--repeats 3] [--json]

N points on the unit sphere or uniform in the cube [-1, 1]^3, Stokeslet forces uniform in
[-1, 1]^3 per point, viscosity 1 (FMM3D's normalisation is ours: ``(I / r + d d^T / r^3) /
(8 pi)``), velocities at the points. FMM3D must be the library built from source with OpenMP
and its fast kernels (``make lib OMP=ON FAST_KER=ON``, its Python module built against it):
the ``fmm3dpy`` wheel from PyPI runs on one core and is 3 to 5 times slower. Both run in this
process on every core (``OMP_NUM_THREADS`` set before fmm3dpy loads; PoCL uses every core).

For each ``--orders`` fmmloopy reports its set-up with warm caches (a second ``Fmm`` of the
same points: tree, lists, plan), its evaluation (median of ``--repeats`` after a warm-up call)
and the one-shot (the two together); FMM3D its time per call at each ``--eps`` (its tree
included: it has no split). The Laplace potential of the forces' first component on the same
points at the Laplace default order is timed too: the Stokes evaluation's cost in Laplace
evaluations; and at each ``--eps`` both kernels at the order ``eps`` chooses for each (the
comparison of FMM3D's ``stfmm3d`` and ``lfmm3d`` at one eps).
Errors are relative L2 against a direct sum on ``--check-targets`` sampled
points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

CORES = os.cpu_count() or 1
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

import fmmloopy  # noqa: E402
from fmmloopy.base.distributions import sphere_surface  # noqa: E402
from fmmloopy.maths.green import stokes  # noqa: E402
from fmmloopy.maths.reference import direct_sum  # noqa: E402


def problem(dist: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = sphere_surface(n, rng) if dist == "sphere" else rng.uniform(-1, 1, (n, 3))
    return points, rng.uniform(-1.0, 1.0, (n, 3))


def error(velocity: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(velocity - reference) / np.linalg.norm(reference))


def median_call(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        clock = time.perf_counter()
        call()
        times.append(time.perf_counter() - clock)
    return statistics.median(times)


def run(dist: str, n: int, orders: list[int], eps_values: list[float], repeats: int,
        check_targets: int, seed: int) -> list[dict]:
    points, forces = problem(dist, n, seed)
    sample = np.random.default_rng(seed + 1).choice(n, min(check_targets, n), replace=False)
    reference = direct_sum(stokes(), points, forces.T, points[sample]).T
    rows = []
    laplace = fmmloopy.Fmm(points)
    laplace_seconds = median_call(lambda: laplace(forces[:, 0]), repeats)
    laplace = None  # its buffers freed before the Stokes FMMs
    for order in orders:
        fmmloopy.Fmm(points, kernel="stokes", order=order)  # caches warm
        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, kernel="stokes", order=order)
        setup = time.perf_counter() - clock
        velocity = fmm(forces)
        seconds = median_call(lambda fmm=fmm: fmm(forces), repeats)
        rows.append({"dist": dist, "n": n, "code": "fmmloopy", "order": order,
                     "n_crit": fmm.n_crit, "setup": setup, "eval": seconds,
                     "one_shot": setup + seconds, "laplace_eval": laplace_seconds,
                     "error": error(velocity[sample], reference)})
        del fmm
    for eps in eps_values:  # Stokes against Laplace, each at the order eps chooses for itself
        seconds = {}
        for name, options in (("laplace", {}), ("stokes", {"kernel": "stokes"})):
            fmm = fmmloopy.Fmm(points, eps=eps, **options)
            strengths = forces if name == "stokes" else forces[:, 0]
            seconds[name] = (fmm.order, median_call(lambda fmm=fmm, s=strengths: fmm(s),
                                                    repeats))
            del fmm
        rows.append({"dist": dist, "n": n, "code": "stokes/laplace", "eps": eps,
                     "laplace_order": seconds["laplace"][0], "laplace": seconds["laplace"][1],
                     "stokes_order": seconds["stokes"][0], "stokes": seconds["stokes"][1]})
    import fmm3dpy
    for eps in eps_values:
        sources, strengths = np.asfortranarray(points.T), np.asfortranarray(forces.T)
        times = []
        for _ in range(max(1, repeats // 2)):
            clock = time.perf_counter()
            out = fmm3dpy.stfmm3d(eps=eps, sources=sources, stoklet=strengths, ifppreg=1)
            times.append(time.perf_counter() - clock)
        velocity = np.asarray(out.pot).reshape(3, n).T
        rows.append({"dist": dist, "n": n, "code": "stfmm3d", "eps": eps,
                     "eval": statistics.median(times), "one_shot": statistics.median(times),
                     "error": error(velocity[sample], reference)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dist", nargs="+", default=["sphere", "cube"],
                        choices=["sphere", "cube"])
    parser.add_argument("--orders", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for n in args.n:
        for dist in args.dist:
            rows += run(dist, n, args.orders, args.eps, args.repeats, args.check_targets,
                        args.seed)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        if row["code"] == "stokes/laplace":
            print(f"{row['dist']:6s} N={row['n']:<8d} at eps {row['eps']:g}: Stokes (order "
                  f"{row['stokes_order']}) {row['stokes']:.3f} s, Laplace (order "
                  f"{row['laplace_order']}) {row['laplace']:.3f} s: "
                  f"{row['stokes'] / row['laplace']:.2f}x")
        elif row["code"] == "fmmloopy":
            print(f"{row['dist']:6s} N={row['n']:<8d} fmmloopy order {row['order']} "
                  f"(n_crit {row['n_crit']}): set-up {row['setup']:.3f} s, evaluation "
                  f"{row['eval']:.3f} s, one-shot {row['one_shot']:.3f} s, error "
                  f"{row['error']:.2e}; Laplace potential {row['laplace_eval']:.3f} s "
                  f"({row['eval'] / row['laplace_eval']:.2f}x)")
        else:
            print(f"{row['dist']:6s} N={row['n']:<8d} stfmm3d eps {row['eps']:g}: "
                  f"{row['eval']:.3f} s, error {row['error']:.2e}")
    for row in rows:
        if row["code"] != "stfmm3d":
            continue
        for ours in rows:
            if ours["code"] == "fmmloopy" and ours["dist"] == row["dist"] \
                    and ours["n"] == row["n"]:
                print(f"{row['dist']:6s} stfmm3d eps {row['eps']:g} ({row['error']:.1e}) / "
                      f"fmmloopy order {ours['order']} ({ours['error']:.1e}): evaluation "
                      f"{row['eval'] / ours['eval']:.1f}x, one-shot "
                      f"{row['one_shot'] / ours['one_shot']:.1f}x")


if __name__ == "__main__":
    main()
