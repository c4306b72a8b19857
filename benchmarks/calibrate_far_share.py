"""Add what the far-share rule of ``eps`` needs to the Laplace rows of the accuracy table.

Usage: ``python benchmarks/calibrate_far_share.py [--out FILE] [--orders 3 4 ...]``. For each
Laplace row of the table (``fmmloopy/maths/eps_calibration.json``, written by
``benchmarks/calibrate_eps.py``) and each of its point sets, it rebuilds the set (the same seed
and draws), the FMM the row measured (its order, its ``n_crit``) and records in the set:

- ``far_share``: :func:`fmmloopy.tree.far_share.far_share` of that FMM's tree and lists, the
  far field's share of the kernel weights for strengths independent with mean 0 (``random``)
  and of one sign (``coherent``), for ``|K| = r^-1, r^-2, r^-3``;
- ``coherent_errors``: the relative L2 error of each quantity with strengths of one sign and
  direction, charges uniform in [0, 1] and unit dipoles pointing away from the set's centre
  (drawn from a generator of their own: the table's random strengths stay as they were),
  against :class:`fmmloopy.DirectSum`.

The table's random-strength errors over ``far_share["random"]``, and the coherent errors over
``far_share["coherent"]``, are the far pair's error at each order that
:func:`fmmloopy.maths.accuracy.order_for_far_share` multiplies by an FMM's own share.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

import fmmloopy
from fmmloopy.execution.precomputed import forget_operators
from fmmloopy.maths.accuracy import CALIBRATION_FILE
from fmmloopy.tree.far_share import far_share

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_eps import (  # noqa: E402
    family_cases,
    potential_and_gradient,
    relative_error,
)


def coherent_strengths(sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Charges in [0, 1] (a generator seeded by the set's size) and unit dipoles pointing away
    from the sources' centre."""
    rng = np.random.default_rng([len(sources), 1])
    outward = sources - sources.mean(axis=0)
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-300)
    return rng.random(len(sources)), outward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--orders", type=int, nargs="+", help="only these orders' rows")
    args = parser.parse_args()
    table = json.loads(args.out.read_text())
    rows = [row for row in table["rows"] if row["family"] == "laplace"
            and (args.orders is None or row["order"] in args.orders)]
    n = rows[0]["n"]
    cases = family_cases("laplace", n, table["seed"], names=list(rows[0]["sets"]))
    coherent = {}
    for name, (sources, targets, *_rest) in cases.items():
        charges, dipoles = coherent_strengths(sources)
        direct = fmmloopy.DirectSum(sources, targets)
        coherent[name] = (charges, dipoles, {
            "charge": potential_and_gradient(direct(charges, gradient=True)),
            "dipole": potential_and_gradient(direct(dipoles=dipoles, gradient=True))})
    for row in rows:
        clock = time.perf_counter()
        for name, case in row["sets"].items():
            sources, targets = cases[name][:2]
            fmm = fmmloopy.Fmm(sources, targets, order=row["order"], n_crit=case["n_crit"])
            share = far_share(fmm.tree, fmm.evaluated_lists)
            case["far_share"] = {"random": [round(value, 6) for value in share.random],
                                 "coherent": [round(value, 6) for value in share.coherent]}
            charges, dipoles, references = coherent[name]
            errors = {}
            for kind, values in (("charge", {"charges": charges}),
                                 ("dipole", {"dipoles": dipoles})):
                potential, gradient = potential_and_gradient(fmm(**values, gradient=True))
                exact_potential, exact_gradient = references[kind]
                errors[f"{kind} potential"] = relative_error(potential, exact_potential)
                errors[f"{kind} gradient"] = relative_error(gradient, exact_gradient)
            case["coherent_errors"] = errors
            del fmm
        forget_operators()
        gc.collect()
        print(f"order {row['order']:2d}: " + "  ".join(
            f"{name} {case['far_share']['random'][0]:.2f}/{case['far_share']['coherent'][0]:.2f}"
            for name, case in row["sets"].items())
            + f"  ({time.perf_counter() - clock:.0f} s)", flush=True)
        args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
