"""The same FMM on every CPU OpenCL runtime of this machine, in one run: the evaluation (best
of ``--repeats``) of ``--n`` sphere and cube points at order 6 with the defaults (``n_crit``
from each device's cost model, its tuning record where ``fmmloopy tune`` wrote one), the error
against a direct sum on sampled targets, and each runtime's time over the first's.

    .venv/bin/python benchmarks/cpu_runtimes.py --n 1000000

Each device runs in a process of its own (one OpenCL runtime's threads never compete with
another's), one after the other; docs/performance.md ("CPU runtimes") has what it printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_ONE = """
import json, sys, time
import numpy as np
import fmmloopy
from fmmloopy.base.devices import choose_device, vector_doubles
from fmmloopy.base.distributions import sphere_surface, uniform_cube
import pyopencl as cl
wanted = json.loads(sys.argv[1])  # [platform version, device name], or a device= spec
device = (next(d for p in cl.get_platforms() if p.version == wanted[0] for d in p.get_devices()
               if d.name == wanted[1]) if isinstance(wanted, list) else choose_device(wanted))
n, repeats, order = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
report = {"device": device.name, "platform": device.platform.name,
          "version": device.platform.version, "lanes": vector_doubles(device)}
for shape in ("sphere", "cube"):
    make = sphere_surface if shape == "sphere" else uniform_cube
    points = make(n, np.random.default_rng(0))
    charges = np.random.default_rng(1).standard_normal(n)
    start = time.perf_counter()
    fmm = fmmloopy.Fmm(points, order=order, device=device)
    setup = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        potential = fmm(charges)
        best = min(best, time.perf_counter() - start)
    sample = np.random.default_rng(2).choice(n, 500, replace=False)
    reference = fmmloopy.DirectSum(points, targets=points[sample], device=device)(charges)
    error = float(np.linalg.norm(potential[sample] - reference) / np.linalg.norm(reference))
    report[shape] = {"setup": setup, "evaluation": best, "error": error,
                     "n_crit": int(fmm.n_crit)}
print(json.dumps(report))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", action="append", default=None,
                        help="a device as fmmloopy's device= takes it (repeatable; default: "
                             "every CPU device fmmloopy may choose, in its order)")
    args = parser.parse_args()
    devices = args.device
    if devices is None:
        listing = subprocess.run(
            [sys.executable, "-c", "import fmmloopy, pyopencl as cl\n"
             "from fmmloopy.base.devices import compiler_problem, listed_devices\n"
             "for d in listed_devices():\n"
             "    if d.type & cl.device_type.CPU and compiler_problem(d) is None:\n"
             "        print(d.platform.version + '|' + d.name)"],
            capture_output=True, text=True, check=True)
        devices = [json.dumps(line.split("|", 1)) for line in listing.stdout.splitlines()]
    else:
        devices = [json.dumps(spec) for spec in devices]
    reports = []
    for device in devices:
        finished = subprocess.run([sys.executable, "-c", _ONE, device, str(args.n),
                                   str(args.repeats), str(args.order)],
                                  capture_output=True, text=True)
        if finished.returncode:
            print(f"{device}: failed\n{finished.stderr[-2000:]}")
            continue
        reports.append(json.loads(finished.stdout.strip().splitlines()[-1]))
    first = reports[0] if reports else None
    print(f"{args.n} points, order {args.order}, evaluation best of {args.repeats}")
    for report in reports:
        for shape in ("sphere", "cube"):
            entry = report[shape]
            ratio = entry["evaluation"] / first[shape]["evaluation"]
            print(f"{report['device'][:40]:40s} ({report['version'][:24]:24s}) {shape:6s} "
                  f"n_crit {entry['n_crit']:3d}  set-up {entry['setup']:6.2f} s  evaluation "
                  f"{entry['evaluation']:6.3f} s ({ratio:4.2f}x the first)  error "
                  f"{entry['error']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
