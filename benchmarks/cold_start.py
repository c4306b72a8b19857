"""Benchmark: how long a first run waits, with every cache new (what a user meets first).

Usage: ``python benchmarks/cold_start.py [--points 100000] [--orders 6 4 8 10 12] [--json]``,
or ``python benchmarks/cold_start.py --eps 1e-9 [--eps-points 1000000] [--dist sphere cube]``.

Each measurement runs in a process of its own with a new ``FMMLOOPY_CACHE_DIR`` and
``XDG_CACHE_HOME`` (fmmloopy's kernel and operator caches, loopy's and PoCL's caches all empty):

- ``example``: README command 1's example (``examples/laplace_sphere.py``, 10^5 sphere points,
  order 6), wall seconds of the whole process;
- ``first``: ``Fmm(points on the sphere, order=<first order>)``, its set-up and its stages, then
  in the same process a first ``Fmm`` at each further order (kernels built, operators not);
- ``pocl_floor``: PoCL's own build of the programs the first order's plan uses, outside
  fmmloopy: each shipped source built and its binary asked for (PoCL then compiles every kernel
  of the program for any work-group size), one after the other.

``--eps 1e-9 --eps-points 1000000`` compares instead a first ``Fmm(points, eps=...)``, set-up
and evaluation, every cache new, with FMM3D's ``lfmm3d`` at the same ``eps`` on the same
points and charges (``--dist sphere cube``), each in a process of its own on every core
(``OMP_NUM_THREADS``); FMM3D precomputes nothing, so its one call is all it costs. Build FMM3D
from source with OpenMP and ``FAST_KER=ON`` for this (the PyPI wheel of ``fmm3dpy`` runs one
thread); its Laplace kernel includes the ``1/(4 pi)`` since version 2.1, as fmmloopy's does,
which the printed errors (relative L2 on 200 sampled targets against direct summation) check.

Name the CPU and the OpenCL driver with the numbers; they differ by machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FIRST = r"""
import json, sys, time
import numpy as np
import fmmloopy
from fmmloopy.base.distributions import sphere_surface
n, orders = int(sys.argv[1]), [int(order) for order in sys.argv[2].split(",")]
points = sphere_surface(n, np.random.default_rng(0))
charges = np.random.default_rng(1).uniform(-1.0, 1.0, n)
rows = []
for order in orders:
    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(points, order=order)
    setup = time.perf_counter() - clock
    clock = time.perf_counter()
    fmm(charges)
    rows.append({"order": order, "setup": setup, "first_call": time.perf_counter() - clock,
                 "stages": {k: round(v, 3) for k, v in fmm.setup_seconds.items()}})
print(json.dumps({"device": fmm.queue.device.name,
                  "driver": fmm.queue.device.platform.version, "rows": rows}))
"""

_FLOOR = r"""
import json, time
import pyopencl as cl
from fmmloopy.base.devices import choose_device, vector_doubles
from fmmloopy.execution import shipped_kernels
device = choose_device("cpu")
context = cl.Context([device])
lanes = str(vector_doubles(device))
# The programs of an order's plan for charges and potentials in float64 (the matvec operators
# share one program; a plan without W or X launches builds no M2P or P2L).
wanted = {"p2p", "p2m", "l2p", "m2m", "setup-point_keys", "setup-v_class_counts",
          "setup-v_class_pair_counts", "setup-v_class_pairs"}
sources = {}
for entry in shipped_kernels.read():
    key = entry["key"]
    if key["operator"] not in wanted:
        continue
    if key["device"].get("class") == "cpu" and (
            key["device"]["vector_doubles_for_recipes"] != lanes or key["dtype"] != "float64"
            or key["kernel"] != "laplace"):
        continue
    kernel = entry["kernel"]
    sources[key["operator"]] = (kernel["device_code"], kernel["build_options"])
clock = time.perf_counter()
for source, options in sources.values():
    program = cl.Program(context, source).build(options=list(options))
    program.get_info(cl.program_info.BINARIES)
print(json.dumps({"programs": len(sources), "seconds": time.perf_counter() - clock}))
"""


def eps_problem(dist: str, n: int):
    """``(points (n, 3), charges (n,), 200 sampled target indices)`` of the ``--eps``
    comparison: the same in every process that imports it."""
    import numpy as np

    from fmmloopy.base.distributions import DISTRIBUTIONS
    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[dist](n, rng)
    return points, rng.uniform(-1.0, 1.0, n), np.random.default_rng(1).choice(n, 200,
                                                                               replace=False)


_PROBLEM = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, "benchmarks")
from cold_start import eps_problem
dist, n, eps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
points, charges, sampled = eps_problem(dist, n)
"""

_FMMLOOPY_EPS = _PROBLEM + r"""
import fmmloopy
clock = time.perf_counter()
fmm = fmmloopy.Fmm(points, eps=eps)
setup = time.perf_counter() - clock
potential = fmm(charges)
total = time.perf_counter() - clock
print(json.dumps({"setup": setup, "total": total, "order": fmm.order,
                  "sampled": potential[sampled].tolist()}))
"""

_FMM3D_EPS = _PROBLEM + r"""
import fmm3dpy
clock = time.perf_counter()
out = fmm3dpy.lfmm3d(eps=eps, sources=np.ascontiguousarray(points.T), charges=charges, pg=1)
total = time.perf_counter() - clock
from importlib.metadata import version
print(json.dumps({"total": total, "version": version("fmm3dpy"),
                  "sampled": out.pot[sampled].tolist()}))
"""


def sampled_error(dist: str, n: int, sampled_potentials: list[float]) -> float:
    """Relative L2 error of potentials at :func:`eps_problem`'s 200 sampled targets against
    direct summation (1 / (4 pi r), the target itself left out)."""
    import numpy as np

    points, charges, sampled = eps_problem(dist, n)
    exact = np.empty(len(sampled))
    for row, index in enumerate(sampled):
        distance = np.linalg.norm(points - points[index], axis=1)
        distance[index] = np.inf
        exact[row] = np.sum(charges / distance) / (4 * np.pi)
    return float(np.linalg.norm(np.asarray(sampled_potentials) - exact)
                 / np.linalg.norm(exact))


def eps_versus_fmm3d(dists: list[str], n: int, eps: float) -> list[dict]:
    """One row per distribution: fmmloopy's first ``Fmm(eps=...)`` (every cache new) and
    FMM3D's ``lfmm3d``, seconds and errors."""
    rows = []
    for dist in dists:
        arguments = [dist, str(n), repr(eps)]
        _, ours = run_fresh(["-c", _FMMLOOPY_EPS, *arguments])
        environment = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
        theirs = subprocess.run([sys.executable, "-c", _FMM3D_EPS, *arguments],
                                capture_output=True, text=True, env=environment, cwd=ROOT,
                                check=True).stdout
        ours, theirs = json.loads(ours), json.loads(theirs)
        rows.append({"dist": dist, "n": n, "eps": eps, "fmmloopy_setup": ours["setup"],
                     "fmmloopy_total": ours["total"], "fmmloopy_order": ours["order"],
                     "fmmloopy_error": sampled_error(dist, n, ours["sampled"]),
                     "fmm3d_total": theirs["total"], "fmm3d_version": theirs["version"],
                     "fmm3d_error": sampled_error(dist, n, theirs["sampled"])})
    return rows


def run_fresh(arguments: list[str]) -> tuple[float, str]:
    """Wall seconds and standard output of ``python arguments`` with every cache new."""
    with tempfile.TemporaryDirectory() as fmmloopy_cache, \
            tempfile.TemporaryDirectory() as xdg_cache:
        environment = dict(os.environ, FMMLOOPY_CACHE_DIR=fmmloopy_cache,
                           XDG_CACHE_HOME=xdg_cache)
        clock = time.perf_counter()
        done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                              env=environment, cwd=ROOT, check=True)
        return time.perf_counter() - clock, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--orders", type=int, nargs="+", default=[6, 4, 8, 10, 12])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--eps", type=float, help="compare a first Fmm(eps=...) with FMM3D")
    parser.add_argument("--eps-points", type=int, default=1_000_000)
    parser.add_argument("--dist", nargs="+", default=["sphere", "cube"])
    args = parser.parse_args()
    if args.eps is not None:
        rows = eps_versus_fmm3d(args.dist, args.eps_points, args.eps)
        for row in rows:
            print(json.dumps(row) if args.json else
                  f"{row['dist']} n={row['n']} eps={row['eps']:g}: fmmloopy first Fmm (order "
                  f"{row['fmmloopy_order']}) set-up {row['fmmloopy_setup']:.2f} s, set-up + "
                  f"evaluation {row['fmmloopy_total']:.2f} s, error "
                  f"{row['fmmloopy_error']:.1e}; FMM3D {row['fmm3d_version']} lfmm3d "
                  f"{row['fmm3d_total']:.2f} s, error {row['fmm3d_error']:.1e}")
        return
    example, _ = run_fresh([str(ROOT / "examples" / "laplace_sphere.py")])
    _, first = run_fresh(["-c", _FIRST, str(args.points), ",".join(map(str, args.orders))])
    _, floor = run_fresh(["-c", _FLOOR])
    result = {"example_seconds": example, **json.loads(first), "pocl_floor": json.loads(floor)}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"device {result['device']} ({result['driver']})")
    print(f"README command 1's example, every cache new: {example:.2f} s wall")
    floor = result["pocl_floor"]
    print(f"PoCL's build of the {floor['programs']} programs of a plan, outside fmmloopy: "
          f"{floor['seconds']:.2f} s")
    for number, row in enumerate(result["rows"]):
        what = "every cache new" if number == 0 else "after the first order, same process"
        print(f"order {row['order']:2d} ({what}): set-up {row['setup']:.2f} s, first call "
              f"{row['first_call']:.3f} s  {row['stages']}")


if __name__ == "__main__":
    main()
