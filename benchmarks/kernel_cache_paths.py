"""Warm start of the kernels: fmmloopy's data-only kernel cache against loopy's public path.

    python benchmarks/kernel_cache_paths.py                  # N = 100000, 5 warm runs each
    python benchmarks/kernel_cache_paths.py --n 20000 --repeats 7

Ways for a second process to get the 9 operator kernels of ``fmmloopy.Fmm(points, order=6,
n_crit=150)`` ready, every cache warm:

* ``data`` -- what fmmloopy does: the disk kernel cache (:mod:`fmmloopy.execution.kernel_cache`)
  holds each kernel's OpenCL source, arguments and launch grid as data, and fmmloopy's launcher
  runs it; the math-level kernel, the recipe, the race analysis and loopy are skipped. Describing
  the launch as data is what needs loopy's internals (:mod:`fmmloopy.tuning.loopy_internals`).
* ``public`` -- loopy's public API only: the kernel cache off, every kernel transformed anew
  (math-level kernel, recipe, race analysis) and run through ``t_unit.executor(context)``, whose
  persistent dictionaries (pytools, keyed by the transformed kernel) are meant to hold the
  scheduled kernel, the generated code and the host wrapper; pyopencl's cache holds the binary.
  They missed in every new process until the templates put the parameters of a kernel's
  assumptions in name order (``lp.make_kernel`` orders them by iterating a set of names, so the
  kernel's key followed Python's per-process string hashing, ``PYTHONHASHSEED``).
* ``public-seeded`` -- the same with ``PYTHONHASHSEED=0`` in every process (before that change,
  the only way loopy's caches hit; now it should measure as ``public``).

Each path gets caches of its own (``XDG_CACHE_HOME``, ``POCL_CACHE_DIR``, ``FMMLOOPY_CACHE_DIR``
in a temporary folder): one cold process fills them, then ``--repeats`` warm processes per path,
alternating, each fresh. Reported per path, min and median over the warm runs: the seconds of
``fmm.setup_seconds["kernels"]`` (every kernel ready: transformed or loaded, built, run once) and
of the whole set-up (``Fmm(...)``); medians of the part of "kernels" spent building the
transformed kernels (math-level kernel, recipe, race analysis) before loopy's executor runs, and
of the misses of loopy's persistent caches (loopy logs each at debug level).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = """
import json, logging, sys, time
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import numpy as np
import fmmloopy
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.execution import compiled

misses = []


class Misses(logging.Handler):  # loopy logs each persistent-cache miss at debug level
    def emit(self, record):
        if "cache miss" in record.getMessage():
            misses.append(record.getMessage())


logging.getLogger("loopy").addHandler(Misses())
logging.getLogger("loopy").setLevel(logging.DEBUG)
transform_seconds = [0.0]
if path != "data":
    def launcher(self, context):  # loopy's executor only, nothing described as data
        with compiled.loopy_output_to_log():
            return self.t_unit.executor(context)

    build_t_unit = compiled.CompiledOperator._build_t_unit

    def timed_build_t_unit(self):
        clock = time.perf_counter()
        build_t_unit(self)
        transform_seconds[0] += time.perf_counter() - clock

    compiled.CompiledOperator._launcher = launcher
    compiled.CompiledOperator._build_t_unit = timed_build_t_unit

context_for(choose_device())
points = sphere_surface(n, np.random.default_rng(seed))
clock = time.perf_counter()
fmm = fmmloopy.Fmm(points, order=6, n_crit=150)
total = time.perf_counter() - clock
operators = sorted({launch.kernel.operator for launch in fmm.plan.launches})
print(json.dumps({"kernels": fmm.setup_seconds["kernels"], "total": total,
                  "transform": transform_seconds[0], "operators": operators,
                  "loopy_cache_misses": len(misses)}))
"""

PATHS = ("data", "public", "public-seeded")


def _environment(caches: str, path: str) -> dict[str, str]:
    environment = os.environ | {"XDG_CACHE_HOME": caches,
                                "POCL_CACHE_DIR": os.path.join(caches, "pocl"),
                                "FMMLOOPY_CACHE_DIR": os.path.join(caches, "fmmloopy")}
    environment.pop("FMMLOOPY_KERNEL_CACHE", None)
    if path != "data":
        environment["FMMLOOPY_KERNEL_CACHE"] = "off"
    if path == "public-seeded":  # the same string hashes in every process (see the docstring)
        environment["PYTHONHASHSEED"] = "0"
    else:
        environment.pop("PYTHONHASHSEED", None)
    return environment


def _run(path: str, caches: str, n: int, seed: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, path, str(n), str(seed)],
                          env=_environment(caches, path), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {path} process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, repeats: int, seed: int) -> dict[str, dict]:
    """Per path: the cold run and the warm runs, each in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        caches = {path: os.path.join(folder, path) for path in PATHS}
        results = {path: {"cold": _run(path, caches[path], n, seed), "warm": []}
                   for path in PATHS}
        for _ in range(repeats):
            for path in PATHS:
                results[path]["warm"].append(_run(path, caches[path], n, seed))
    return results


def _summary(runs: list[dict], field: str) -> tuple[float, float]:
    values = [run[field] for run in runs]
    return min(values), statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the runs as one JSON object")
    args = parser.parse_args()
    results = measure(args.n, args.repeats, args.seed)
    if args.json:
        print(json.dumps(results))
        return
    operators = results["data"]["cold"]["operators"]
    print(f"N = {args.n} sphere points, order 6, n_crit 150; {len(operators)} operator kernels "
          f"({', '.join(operators)}); {args.repeats} warm processes per path (seconds)")
    print(f"  {'path':14s} {'cold kernels':>13s} {'kernels min':>12s} {'median':>8s} "
          f"{'set-up min':>11s} {'median':>8s} {'transform':>10s} {'loopy misses':>13s}")
    for path in PATHS:
        warm = results[path]["warm"]
        kernels, total = _summary(warm, "kernels"), _summary(warm, "total")
        transform = _summary(warm, "transform")[1]
        misses = _summary(warm, "loopy_cache_misses")[1]
        print(f"  {path:14s} {results[path]['cold']['kernels']:13.3f} {kernels[0]:12.3f} "
              f"{kernels[1]:8.3f} {total[0]:11.3f} {total[1]:8.3f} {transform:10.3f} "
              f"{misses:13.0f}")
    data = _summary(results["data"]["warm"], "kernels")[1]
    for path in PATHS[1:]:
        extra = _summary(results[path]["warm"], "kernels")[1] - data
        print(f"  {path} costs {extra:+.3f} s over data on a warm start (medians of "
              "'kernels'; fmmloopy prefers the public API below +0.1 s)")


if __name__ == "__main__":
    main()
