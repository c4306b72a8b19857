"""fmmloopy against FMM3D (``fmm3dpy.lfmm3d``) on the same points and charges, side by side.

Usage::

    pip install -e ".[bench]"            # fmm3dpy, an optional benchmark dependency
    python benchmarks/vs_fmm3d.py --n 100000 1000000 [--repeats 3] [--json]
    python benchmarks/vs_fmm3d.py --setup --n 1000000    # cold and warm set-up, peak memory
    python benchmarks/vs_fmm3d.py --n 4000000 --repeats 1 --eps 1e-3   # FMM3D's memory allows

N random charges (uniform in [-1, 1)) on the unit sphere, or in the cube [-1, 1]^3 (``--dist
sphere cube``: the uniform cube is the field's standard volume benchmark). fmmloopy runs at
``--order`` (6) with ``--n-crit`` (default ``auto``: chosen by its cost model, printed);
``lfmm3d`` at eps = 1e-3 and 1e-6, potential only (its Laplace kernel includes the 1/(4 pi), as
ours does). Both run in this process on all cores (``OMP_NUM_THREADS`` is set to the core count
before fmm3dpy loads, PoCL uses every core), alternating, ``--repeats`` times after a warm-up
each; the table gives median times. fmmloopy's *evaluation* (``Fmm(charges)``: upload,
upward and downward passes, download, back to user order) is timed apart from its set-up
(tree, lists, precomputed operators, kernels), which is done once per point set; ``lfmm3d`` has
no such split, so its time includes its own tree. Errors are relative L2 against direct
summation on ``--check-targets`` sampled targets. "cores busy" is CPU time over wall time of
the timed runs: the fmm3dpy 2.1.0 wheel from PyPI keeps one core busy whatever
``OMP_NUM_THREADS`` says, so for a per-core comparison run fmmloopy on one core too
(``POCL_MAX_PTHREAD_COUNT=1``, read by PoCL 3.0 when it starts).

``--setup`` runs each N in fresh processes instead: once with empty caches (a temporary
``XDG_CACHE_HOME``, ``POCL_CACHE_DIR`` and ``FMMLOOPY_CACHE_DIR``: cold) and once more with the
caches the first left (warm), and reports each set-up stage and the peak resident memory of the
warm process next to the size of the data (points, charges, expansions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CORES = os.cpu_count() or 1
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

import fmmloopy  # noqa: E402  (after OMP_NUM_THREADS, which fmm3dpy's OpenMP reads on load)
from fmmloopy.base.distributions import DISTRIBUTIONS, sphere_surface  # noqa: E402
from fmmloopy.maths.green import LAPLACE_3D  # noqa: E402
from fmmloopy.maths.reference import direct_sum  # noqa: E402

FMM3D_EPS = (1e-3, 1e-6)


def sphere_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on the unit sphere, ``(n, 3)``, and charges uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return sphere_surface(n, rng), rng.uniform(-1.0, 1.0, n)


def problem(distribution: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of ``distribution`` (``sphere``: :func:`sphere_problem`'s points; ``cube``:
    uniform in [-1, 1]^3) and charges uniform in [-1, 1]."""
    if distribution == "sphere":
        return sphere_problem(n, seed)
    rng = np.random.default_rng(seed)
    return DISTRIBUTIONS[distribution](n, rng), rng.uniform(-1.0, 1.0, n)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def compare(n: int, args: argparse.Namespace, distribution: str = "sphere") -> dict:
    """Median times and errors of fmmloopy and lfmm3d at both eps on ``n`` points."""
    import fmm3dpy

    points, charges = problem(distribution, n, args.seed)
    sample = np.random.default_rng(args.seed + 1).choice(n, min(args.check_targets, n),
                                                         replace=False)
    reference = direct_sum(LAPLACE_3D, points, charges, points[sample])
    points_fortran = np.asfortranarray(points.T)

    start = time.perf_counter()
    fmm = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
    setup_seconds = time.perf_counter() - start

    runners = {"fmmloopy": lambda: fmm(charges)}
    for eps in args.eps:
        runners[f"lfmm3d eps={eps:g}"] = (
            lambda eps=eps: fmm3dpy.lfmm3d(eps=eps, sources=points_fortran, charges=charges,
                                           pg=1).pot)
    times = {name: [] for name in runners}
    cpu_times = {name: [] for name in runners}
    errors = {}
    for name, run in runners.items():  # warm-up, and the error of each
        errors[name] = relative_error(run()[sample], reference)
    for _ in range(args.repeats):  # alternating
        for name, run in runners.items():
            cpu, clock = _cpu_seconds(), time.perf_counter()
            run()
            times[name].append(time.perf_counter() - clock)
            cpu_times[name].append(_cpu_seconds() - cpu)
    medians = {name: statistics.median(values) for name, values in times.items()}
    # CPU seconds over wall seconds: how many cores each one kept busy.
    cores_busy = {name: sum(cpu_times[name]) / sum(times[name]) for name in times}
    return {"n": n, "distribution": distribution, "order": args.order, "n_crit": fmm.n_crit,
            "n_crit_chosen": args.n_crit == "auto", "repeats": args.repeats,
            "fmmloopy_setup_seconds": setup_seconds,
            "fmmloopy_setup_stages": dict(fmm.setup_seconds),
            "fmmloopy_steps": dict(fmm.eval_seconds),
            "median_seconds": medians, "relative_l2_error": errors, "cores_busy": cores_busy,
            "ratio_to_fmmloopy": {name: medians["fmmloopy"] / medians[name]
                                  for name in medians if name != "fmmloopy"}}


def print_comparison(row: dict) -> None:
    fastest = row["median_seconds"]["fmmloopy"]
    chosen = " (chosen by cost)" if row.get("n_crit_chosen") else ""
    print(f"N = {row['n']} ({row.get('distribution', 'sphere')}): fmmloopy order {row['order']}, "
          f"n_crit {row['n_crit']}{chosen} "
          f"(set-up {row['fmmloopy_setup_seconds']:.2f} s, once per point set); "
          f"median of {row['repeats']}")
    print(f"  {'':22s} {'seconds':>9s} {'fmmloopy / it':>14s} {'rel. L2 error':>14s} "
          f"{'cores busy':>11s}")
    for name, seconds in row["median_seconds"].items():
        ratio = fastest / seconds
        print(f"  {name:22s} {seconds:9.3f} {ratio:14.3f} {row['relative_l2_error'][name]:14.2e} "
              f"{row['cores_busy'][name]:11.2f}")


_SETUP_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {bench_dir!r})
from vs_fmm3d import sphere_problem
import fmmloopy
from fmmloopy.base.devices import choose_device, context_for
context_for(choose_device())
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
points, charges = sphere_problem({n}, {seed})
clock = time.perf_counter()
fmm = fmmloopy.Fmm(points, order={order}, n_crit={n_crit!r})
total = time.perf_counter() - clock
fmm(charges)
clock = time.perf_counter()
fmm(charges)
evaluation = time.perf_counter() - clock
tree, n_e = fmm.tree, fmm.operators.n_e
data = 8 * (points.size + charges.size + points.shape[0] + 4 * tree.nboxes * n_e)
print(json.dumps({{"stages": fmm.setup_seconds, "total": total, "evaluation": evaluation,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "baseline_rss_bytes": baseline, "data_bytes": data}}))
"""


def setup_times(n: int, args: argparse.Namespace) -> dict:
    """Cold (empty caches) and warm set-up of ``n`` points, each in a fresh process."""
    child = _SETUP_CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), n=n,
                                seed=args.seed, order=args.order, n_crit=args.n_crit)
    result = {"n": n}
    with tempfile.TemporaryDirectory() as caches:
        env = os.environ | {"XDG_CACHE_HOME": caches,
                            "POCL_CACHE_DIR": os.path.join(caches, "pocl"),
                            "FMMLOOPY_CACHE_DIR": os.path.join(caches, "fmmloopy")}
        for label in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                                  text=True, check=True)
            result[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_setup(row: dict) -> None:
    print(f"N = {row['n']}: set-up in a fresh process (seconds)")
    stages = list(row["cold"]["stages"])
    print(f"  {'':6s} " + " ".join(f"{s:>10s}" for s in stages) + f" {'total':>10s}"
          f" {'precompute+kernels':>19s}")
    for label in ("cold", "warm"):
        run = row[label]
        loaded = run["stages"]["precompute"] + run["stages"]["kernels"]
        print(f"  {label:6s} " + " ".join(f"{run['stages'][s]:10.3f}" for s in stages)
              + f" {run['total']:10.3f} {loaded:19.3f}")
    warm = row["warm"]
    grown = warm["peak_rss_bytes"] - warm["baseline_rss_bytes"]
    print(f"  warm evaluation {warm['evaluation']:.3f} s; peak resident memory "
          f"{warm['peak_rss_bytes'] / 2**30:.2f} GiB ({warm['baseline_rss_bytes'] / 2**30:.2f} "
          f"GiB after imports and the OpenCL context, {grown / 2**30:.2f} GiB more for the FMM) "
          f"for {warm['data_bytes'] / 2**30:.3f} GiB of points, charges, potentials and "
          f"expansions ({warm['peak_rss_bytes'] / warm['data_bytes']:.1f}x; growth "
          f"{grown / warm['data_bytes']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--n-crit", type=lambda text: text if text == "auto" else int(text),
                        default="auto", help="fmmloopy's n_crit (default: auto)")
    parser.add_argument("--dist", nargs="+", default=["sphere"], choices=["sphere", "cube"],
                        help="point distributions (default: sphere)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, nargs="+", default=list(FMM3D_EPS),
                        help="lfmm3d tolerances (eps=1e-6 took 7.2 GiB at N = 10^6 here)")
    parser.add_argument("--setup", action="store_true",
                        help="cold and warm set-up and peak memory, in fresh processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if min(args.n) < 1 or args.repeats < 1 or args.check_targets < 1:
        parser.error("--n, --repeats and --check-targets must be at least 1")

    rows = []
    for distribution in args.dist:
        for n in args.n:
            row = setup_times(n, args) if args.setup else compare(n, args, distribution)
            rows.append(row)
            if not args.json:
                (print_setup if args.setup else print_comparison)(row)
    if args.json:
        print(json.dumps({"cores": CORES, "omp_num_threads": os.environ["OMP_NUM_THREADS"],
                          "rows": rows, "peak_rss_bytes":
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
