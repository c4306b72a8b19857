"""``fmmloopy.fmm3d`` against FMM3D built from source, the same calls on the same points.

Usage::

    PYTHONPATH=<FMM3D's Python module built from source> \\
        python benchmarks/vs_fmm3d_interface.py --n 1000000 [--dist sphere cube]
        [--eps 1e-3 1e-6] [--calls lfmm3d-pg2 lfmm3d-pg3 stfmm3d-ifppreg3 hfmm3d] [--json]

FMM3D must be the library built with OpenMP and its fast kernels (``make lib OMP=ON
FAST_KER=ON``; its Python module's four ``f2py`` extensions linked against
``lib-static/libfmm3d.a``, see docs/fmm3d.md): the ``fmm3dpy`` wheel from PyPI runs on one core.
Both run in this process on every core (``OMP_NUM_THREADS`` set before FMM3D loads).

Each call is FMM3D's one-shot (tree and evaluation in one call), and so is ``fmmloopy.fmm3d``'s:
a new ``Fmm`` of the points (warm caches: kernels and operators on disk from a first call) and
one evaluation, with the interface's transposes and scalings. The interface's overhead is its
time outside ``Fmm`` (the construction and the calls, timed inside the interface's own calls) over
its time inside; beside it, the same ``Fmm`` call made directly (points ``(n, 3)``, the same
``eps``, densities, fields), timed apart (noisier: another set-up). "again" is the same call
once more with the interface's last set-up kept (``keep_last_fmm``, the default: a script that
calls again with the same points, an iterative solver's products), its time and overhead.

The calls: ``lfmm3d`` with charges and ``pg`` 2 (potential and gradient) or 3 (and the
Hessian), ``stfmm3d`` with Stokeslets and ``ifppreg`` 3 (velocity, pressure, velocity
gradient), ``hfmm3d`` of complex charges with ``pg`` 1 at a root box ``--wavelengths`` (1) wide.
Times are medians of ``--repeats`` calls after a warm-up; errors are the largest relative L2
error of any output over ``--check-targets`` sampled points against fmmloopy's direct sums
(``l3ddir``, ``h3ddir``, ``st3ddir``: the pair of a point with itself left out, as FMM3D does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from functools import partial

import numpy as np

CORES = os.cpu_count() or 1
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

import fmm3dpy  # noqa: E402  (FMM3D's module: after OMP_NUM_THREADS, which its OpenMP reads)
from vs_stfmm3d import median_call  # noqa: E402  (a warm-up call, then the median)

import fmmloopy  # noqa: E402
import fmmloopy.fmm3d as ours  # noqa: E402
import fmmloopy.interfaces.fmm3d_reuse as reuse_module  # noqa: E402
from fmmloopy.base.distributions import sphere_surface  # noqa: E402
from fmmloopy.tree.octree import root_box_side  # noqa: E402

FIELDS = ("pot", "grad", "hess", "pre")


class TimedFmm(fmmloopy.Fmm):
    """``Fmm`` that adds the seconds of its construction and calls to :attr:`inside`."""

    inside = 0.0

    def __init__(self, *args, **kwargs):
        clock = time.perf_counter()
        super().__init__(*args, **kwargs)
        TimedFmm.inside += time.perf_counter() - clock

    def __call__(self, *args, **kwargs):
        clock = time.perf_counter()
        result = super().__call__(*args, **kwargs)
        TimedFmm.inside += time.perf_counter() - clock
        return result


def interface_overhead(call, repeats: int) -> tuple[float, float]:
    """The median seconds of ``call`` (after a warm-up) and the median share of them spent
    outside ``Fmm``, over the seconds inside."""
    call()
    totals, shares = [], []
    for _ in range(repeats):
        TimedFmm.inside = 0.0
        clock = time.perf_counter()
        call()
        total = time.perf_counter() - clock
        totals.append(total)
        shares.append(total / TimedFmm.inside - 1)
    return statistics.median(totals), statistics.median(shares)


def problem(dist: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(3, n)`` sources (unit sphere or the cube [-1, 1]^3) and a random generator."""
    rng = np.random.default_rng(seed)
    points = sphere_surface(n, rng) if dist == "sphere" else rng.uniform(-1, 1, (n, 3))
    return np.ascontiguousarray(points.T), rng


def calls(name: str, sources: np.ndarray, rng: np.random.Generator, wavelengths: float):
    """The FMM3D keyword arguments of ``name`` (without eps), the direct sum that checks it, and
    the direct ``Fmm`` call it stands for (a function of eps)."""
    n = sources.shape[1]
    points = np.ascontiguousarray(sources.T)
    if name.startswith("lfmm3d"):
        pg = int(name[-1])
        charges = rng.uniform(-1, 1, n)
        arguments = {"sources": sources, "charges": charges, "pg": pg}
        fields = ("charges",) + (("gradient",) if pg > 1 else ()) + (("hessian",) if pg > 2 else ())

        def direct(eps):
            fmm = fmmloopy.Fmm(points, eps=eps, eps_for=fields)
            return fmm(charges, gradient=pg >= 2, hessian=pg >= 3)
        return "lfmm3d", arguments, ("l3ddir", {"charges": charges, "pgt": pg}), direct
    if name.startswith("stfmm3d"):
        forces = rng.uniform(-1, 1, (3, n))
        arguments = {"sources": sources, "stoklet": forces, "ifppreg": 3}
        forces_user = np.ascontiguousarray(forces.T)

        def direct(eps):
            fmm = fmmloopy.Fmm(points, kernel="stokes", eps=eps,
                               eps_for=("charges", "gradient"))
            return fmm(forces_user, pressure=True, gradient=True)
        return "stfmm3d", arguments, ("st3ddir", {"stoklet": forces, "ifppregtarg": 3}), direct
    if name == "hfmm3d":
        zk = 2 * math.pi * wavelengths / root_box_side(points, None)
        charges = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
        arguments = {"sources": sources, "charges": charges, "pg": 1, "zk": zk}

        def direct(eps):
            fmm = fmmloopy.Fmm(points, kernel=fmmloopy.helmholtz(zk), eps=eps,
                               eps_for=("charges",))
            return fmm(charges)
        return "hfmm3d", arguments, ("h3ddir", {"charges": charges, "pgt": 1, "zk": zk}), direct
    raise ValueError(f"unknown call {name!r}")


def error(out, reference, sample: np.ndarray) -> float:
    """The largest relative L2 error of ``out``'s source fields at ``sample`` against the direct
    sum's target fields there."""
    worst = 0.0
    for name in FIELDS:
        value, exact = getattr(out, name), getattr(reference, name + "targ")
        if value is None or exact is None:
            continue
        value = np.asarray(value)[..., sample]
        worst = max(worst, float(np.linalg.norm(value - exact) / np.linalg.norm(exact)))
    return worst


def measure(row: dict, function: str, arguments: dict, direct_fmm, reference, sample,
            args) -> None:
    """``row``'s errors and times of ``function`` called with ``arguments`` by fmmloopy (through
    the interface and ``direct_fmm`` apart) and by FMM3D."""
    ours_call = getattr(ours, function)
    ours.keep_last_fmm(False)  # one-shot calls: each builds its own FMM, as FMM3D's do
    row["fmmloopy_error"] = error(ours_call(**arguments), reference, sample)
    row["interface_s"], row["overhead"] = interface_overhead(lambda: ours_call(**arguments),
                                                             args.repeats)
    ours.keep_last_fmm(True)  # a call again with the same points: the set-up kept
    row["again_s"], row["again_overhead"] = interface_overhead(lambda: ours_call(**arguments),
                                                               args.repeats)
    ours.keep_last_fmm(False)
    row["fmm_s"] = median_call(direct_fmm, args.repeats)
    theirs_call = getattr(fmm3dpy, function)
    row["fmm3d_error"] = error(theirs_call(**arguments), reference, sample)
    row["fmm3d_s"] = median_call(lambda: theirs_call(**arguments), args.fmm3d_repeats)
    row["speedup"] = row["fmm3d_s"] / row["interface_s"]
    row["speedup_again"] = row["fmm3d_s"] / row["again_s"]


def run(dist: str, n: int, args) -> list[dict]:
    sources, rng = problem(dist, n, args.seed)
    sample = np.random.default_rng(args.seed + 1).choice(n, min(args.check_targets, n),
                                                         replace=False)
    rows = []
    for name in args.calls:
        function, arguments, (direct_name, direct_arguments), direct_fmm = calls(
            name, sources, rng, args.wavelengths)
        reference = getattr(ours, direct_name)(sources=sources, targets=sources[:, sample],
                                               **direct_arguments)
        for eps in args.eps:
            row = {"points": dist, "n": n, "call": name, "eps": eps}
            try:
                measure(row, function, {"eps": eps, **arguments}, partial(direct_fmm, eps),
                        reference, sample, args)
            except ValueError as refused:
                row["refused"] = str(refused)
            rows.append(row)
            print_row(row)
    return rows


def print_row(row: dict) -> None:
    head = f"{row['points']:6s} n={row['n']:.0e} {row['call']:17s} eps={row['eps']:.0e}"
    if "refused" in row:
        print(f"{head}  fmmloopy refused: {row['refused']}", flush=True)
        return
    print(f"{head}  fmmloopy.fmm3d {row['interface_s']:7.3f} s (err {row['fmmloopy_error']:.1e})"
          f"  overhead {100 * row['overhead']:+5.1f} %  Fmm apart {row['fmm_s']:7.3f} s"
          f"  FMM3D {row['fmm3d_s']:7.3f} s (err {row['fmm3d_error']:.1e})"
          f"  speed-up {row['speedup']:5.2f}; again {row['again_s']:7.3f} s (overhead "
          f"{100 * row['again_overhead']:+5.1f} %, speed-up {row['speedup_again']:5.2f})",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e6])
    parser.add_argument("--dist", nargs="+", default=["sphere"], choices=["sphere", "cube"])
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-6])
    parser.add_argument("--calls", nargs="+",
                        default=["lfmm3d-pg2", "lfmm3d-pg3", "stfmm3d-ifppreg3", "hfmm3d"])
    parser.add_argument("--wavelengths", type=float, default=1.0,
                        help="hfmm3d: the points' root box in wavelengths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fmm3d-repeats", type=int, default=1)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON at the end")
    args = parser.parse_args()
    reuse_module.Fmm = TimedFmm  # the interface's FMMs timed inside
    print(f"fmm3dpy from {fmm3dpy.__file__}; {CORES} cores; fmmloopy on "
          f"{fmmloopy.Fmm.__module__}", flush=True)
    rows = [row for dist in args.dist for n in args.n for row in run(dist, int(n), args)]
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
