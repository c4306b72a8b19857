"""Benchmark: how long a first run waits, with every cache new (what a user meets first).

Usage: ``python benchmarks/cold_start.py [--points 100000] [--orders 6 4 8 10 12] [--json]``.

Each measurement runs in a process of its own with a new ``FMMLOOPY_CACHE_DIR`` and
``XDG_CACHE_HOME`` (fmmloopy's kernel and operator caches, loopy's and PoCL's caches all empty):

- ``example``: README command 1's example (``examples/laplace_sphere.py``, 10^5 sphere points,
  order 6), wall seconds of the whole process;
- ``first``: ``Fmm(points on the sphere, order=<first order>)``, its set-up and its stages, then
  in the same process a first ``Fmm`` at each further order (kernels built, operators not);
- ``pocl_floor``: PoCL's own build of the programs the first order's plan uses, outside
  fmmloopy: each shipped source built and its binary asked for (PoCL then compiles every kernel
  of the program for any work-group size), one after the other.

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
    args = parser.parse_args()
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
