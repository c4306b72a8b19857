"""Calibrate the order that ``Fmm(..., eps=...)`` chooses: measured errors by kernel and order.

Usage: ``python benchmarks/calibrate_eps.py [--n 10000] [--out FILE]``. For every built-in
kernel family at a grid of its dimensionless parameter (Laplace; Yukawa at ``kappa L``, Helmholtz
at ``L`` in wavelengths, ``L`` the side of the FMM's root box) and every order from 3 up, it
runs ``fmmloopy.Fmm`` on six point sets, each scaled to the unit box:

- ``sphere``: points on a sphere's surface (sources = targets);
- ``cube``: uniform in a cube (sources = targets);
- ``plummer``: a Plummer sphere (sources = targets; a deep, uneven tree);
- ``shell``: sources uniform in the central half-cube, targets on the enclosing sphere;
- ``lattice``: the points of a regular cubic lattice filling the cube, its faces included
  (sources = targets; no two points closer than the spacing, so the near field carries less of
  the field's norm than in a random set and the relative error is larger: a grid held out of
  the first table missed ``eps`` 1e-3 by up to 1.9x, docs/kernels.md);
- ``apart``: sources on a sphere, targets on the concentric sphere 1.5 times as wide (every
  target apart from every source: a Yukawa field there is exponentially smaller than near the
  sources, and the expansions' error is not; the issue's case of ``kappa L`` 30 held out first
  missed ``eps`` 1e-3 at ``kappa L`` 100 by up to 7.9x, docs/kernels.md),

with charges and dipole moments uniform in [-1, 1] (real and imaginary parts for Helmholtz),
on a tree whose leaves hold at most ``--n-crit-cap`` points (the cost model's ``n_crit`` where it
is smaller): the cost model's leaves grow with the order, and at high orders on 10^4 points they
left the tree one or two levels deep, with little far field to measure (every pair direct at
order 12 on ``shell``), while the same order at 10^6 points has a deep tree whose error is the
far field's. It measures the relative L2 error, over **every** target, of the potential and
the gradient of each strength kind against :class:`fmmloopy.DirectSum` (and of the scalar
kernels, :data:`HESSIAN_FAMILIES`, the Hessian: ``--hessians`` adds it to a table's rows).
An order's row stops the family's parameter once every quantity is below :data:`STOP_BELOW`, or at
``--max-order`` (default :data:`MAX_CALIBRATED_ORDER`).

The periodic families (``periodic laplace``: a Laplace FMM of the cell ``[0, 1)^3`` periodic
along every axis; ``slab laplace``: along x and y; ``wire laplace``: along z) have point sets of
their own, against :func:`fmmloopy.maths.ewald.ewald_sum` (tin-foil, a net charge's
background), :func:`fmmloopy.maths.slab_ewald.slab_ewald_sum` and
:func:`fmmloopy.maths.wire_sum.wire_image_sum` (the last two at :data:`SAMPLED_TARGETS` sampled
targets, the charges made neutral): ``cell`` (uniform), ``clustered`` (a Plummer sphere of
scale 0.1 about the cell's centre, wrapped; a deep tree), ``apart`` (sources uniform, targets
uniform and apart from them), ``lattice`` (a cubic grid, targets the sources) and ``halves``
(sources below z = 1/2, targets above); the last two were added after a held-out jittered
grid and targets in the upper half missed ``eps`` by up to 2.6x (``benchmarks/
eps_periodic_held_out.py``; docs/fmm.md).

It writes the JSON table that :mod:`fmmloopy.maths.accuracy` reads (``--out``; the shipped one
is ``fmmloopy/maths/eps_calibration.json``): each row the family, parameter, order, the largest
error of each quantity over the point sets, and each point set's errors and evaluation seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import fmmloopy
from fmmloopy.api.lattice_reference import lattice_sum
from fmmloopy.api.periodic import checked_cell
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.execution.cache_files import CACHE_ENV, cache_dir
from fmmloopy.execution.precomputed import forget_operators
from fmmloopy.maths.accuracy import (
    CALIBRATION_FILE,
    FAMILY_GRIDS,
    HESSIAN_FAMILIES,
    HESSIAN_QUANTITIES,
    MAX_CALIBRATED_ORDER,
    PERIODIC_FAMILY,
    QUANTITIES,
    SLAB_FAMILY,
    STOP_BELOW,
    WIRE_FAMILY,
    kernel_at,
    row_error,
)
from fmmloopy.maths.green import max_root_wavelengths
from fmmloopy.tree.octree import root_box_side

POINT_SETS = ("sphere", "cube", "plummer", "shell", "lattice", "apart")
#: The periodic family's point sets (in the cell [0, 1)^3), and whose targets are the sources.
PERIODIC_SETS = {"cell": True, "clustered": True, "apart": False, "lattice": True,
                 "halves": False}
#: The periodic axes of each periodic family (as ``Fmm(periodic_axes=...)`` names them).
PERIODIC_AXES = {PERIODIC_FAMILY: "xyz", SLAB_FAMILY: "xy", WIRE_FAMILY: "z"}
#: The targets at which a slab's or a wire's reference is summed (a random sample of each
#: set's; their sums cost every pair times hundreds of waves or images): the relative L2 error
#: over them estimates that over every target.
SAMPLED_TARGETS = 400
#: The largest leaf the calibration's trees take (``--n-crit-cap``): three to seven levels on
#: 10^4 points, so that every row measures a far field like that of a large problem.
N_CRIT_CAP = 64


def unit_box(points: np.ndarray) -> np.ndarray:
    """``points`` shifted and scaled so that their bounding box's longest side is 1."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / float((hi - lo).max())


def point_set(name: str, n: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(sources, targets)`` of a calibration point set (targets None: the sources)."""
    if name == "lattice":  # about n points: the nearest cube of a whole number
        axis = np.linspace(0.0, 1.0, max(round(n ** (1 / 3)), 2))
        return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3), None
    if name == "apart":  # the two scaled together to the unit box
        sources = DISTRIBUTIONS["sphere"](n, rng) / 1.5
        both = unit_box(np.concatenate([sources, DISTRIBUTIONS["sphere"](n, rng)]))
        return both[:n], both[n:]
    if name == "shell":
        sources = 0.25 + 0.5 * rng.random((n, 3))
        targets = 0.5 + 0.5 * DISTRIBUTIONS["sphere"](n, rng)
        return sources, targets
    return unit_box(DISTRIBUTIONS[name](n, rng)), None


def periodic_set(name: str, n: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(sources, targets)`` of a periodic point set in the cell [0, 1)^3 (targets None: the
    sources)."""
    if name == "clustered":
        return np.mod(0.5 + 0.1 * DISTRIBUTIONS["plummer"](n, rng), 1.0), None
    if name == "lattice":  # the nearest cube of a whole number, no two points one image apart
        m = max(round(n ** (1 / 3)), 2)
        axis = (np.arange(m) + 0.5) / m
        return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3), None
    if name == "halves":  # sources below z = 1/2, targets above
        sources, targets = rng.random((n, 3)), rng.random((n, 3))
        sources[:, 2] *= 0.5
        targets[:, 2] = 0.5 + 0.5 * targets[:, 2]
        return sources, targets
    sources = rng.random((n, 3))
    return sources, (rng.random((n, 3)) if name == "apart" else None)


def lattice_references(family, sources, at, charges, dipoles):
    """The sums of the family's lattice (the Ewald sum, the slab's, the wire's images) at the
    points ``at`` (as :func:`cached_references` gives them), charges and dipoles apart."""
    cell = checked_cell(1.0, PERIODIC_AXES[family])  # [0, 1)^3
    sums = {"charge": lattice_sum(cell, sources, at, charges, None, True),
            "dipole": lattice_sum(cell, sources, at, None, dipoles, True)}
    return lambda kernel: sums


def strengths(n: int, complex_values: bool, rng: np.random.Generator, family: str = "laplace"
              ) -> tuple[np.ndarray, np.ndarray]:
    """Charges ``(n,)`` and dipole moments ``(n, 3)`` uniform in [-1, 1] (parts of each);
    Stokes: forces ``(n, 3)`` and force dipoles ``(n, 3, 3)``."""
    def draw(shape):
        values = rng.uniform(-1, 1, shape)
        return values + 1j * rng.uniform(-1, 1, shape) if complex_values else values
    if family == "stokes":
        return draw((n, 3)), draw((n, 3, 3))
    return draw(n), draw((n, 3))


def potential_and_gradient(result) -> tuple[np.ndarray, np.ndarray]:
    """A call's potential (Stokes: velocity) and gradient (``fmmloopy.Fields``,
    ``HessianFields`` or ``Flow``)."""
    if isinstance(result, fmmloopy.Flow):
        return result.velocity, result.gradient
    return result.potential, result.gradient


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


@contextlib.contextmanager
def scratch_operators(enabled: bool):
    """With ``enabled``, the operators computed inside go to a scratch cache directory that is
    removed after (the user's cache lends it its kernels and programs): a Helmholtz set of
    order 14 is 0.73 GB on disk, and one row's sets per level (a few per point set, each
    point set's own ``k h``) would be tens of GB, never read again."""
    if not enabled:
        yield
        return
    real, previous = cache_dir(), os.environ.get(CACHE_ENV)
    scratch = Path(tempfile.mkdtemp(prefix="fmmloopy-operators-"))
    for name in ("kernels", "programs"):
        (real / name).mkdir(parents=True, exist_ok=True)
        (scratch / name).symlink_to(real / name, target_is_directory=True)
    os.environ[CACHE_ENV] = str(scratch)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous
        forget_operators()
        gc.collect()
        shutil.rmtree(scratch, ignore_errors=True)


def measure(family: str, parameter: float, order: int, cases: dict,
            n_crit_cap: int = N_CRIT_CAP, memory_limit: float | None = None,
            scratch: bool = False) -> dict:
    """Errors of every quantity on every point set at ``order`` (and the seconds), on trees
    whose leaves hold at most ``n_crit_cap`` points; ``scratch``: each point set's operators
    in a scratch cache, let go after it (:func:`scratch_operators`)."""
    row = {"family": family, "parameter": parameter, "order": order, "sets": {}}
    for name, case in cases.items():
        with scratch_operators(scratch):
            row["sets"][name], row["device"] = _measure_set(family, parameter, order, case,
                                                            n_crit_cap, memory_limit)
    set_row_maxima(row)
    return row


def _measure_set(family: str, parameter: float, order: int, case: tuple, n_crit_cap: int,
                 memory_limit: float | None) -> tuple[dict, str]:
    """One point set's entry of :func:`measure`'s row, and the device that measured it."""
    sources, targets, charges, dipoles, references, sample = case
    side = root_box_side(sources, targets)
    kernel = kernel_at(family, parameter, side)
    cell = ({"periodic": 1.0, "periodic_axes": PERIODIC_AXES[family]}
            if family in PERIODIC_AXES else {})
    cell["memory_limit"] = memory_limit
    fmm = fmmloopy.Fmm(sources, targets, kernel=kernel, order=order, **cell)
    auto_n_crit = fmm.n_crit
    if auto_n_crit > n_crit_cap:
        del fmm  # its buffers and operators freed before the next is built (orders 13-14:
        forget_operators()  # GBs; the disk cache keeps the operators)
        gc.collect()
        fmm = fmmloopy.Fmm(sources, targets, kernel=kernel, order=order, n_crit=n_crit_cap,
                           **cell)
    errors, seconds = {}, 0.0
    hessian = family in HESSIAN_FAMILIES
    for kind, values in (("charge", {"charges": charges}), ("dipole", {"dipoles": dipoles})):
        result = fmm(**values, gradient=True, **({"hessian": True} if hessian else {}))
        seconds += fmm.eval_seconds["total"]
        exact = references(kernel)[kind]
        (potential, gradient), (exact_potential, exact_gradient) = (
            potential_and_gradient(result), potential_and_gradient(exact))
        if sample is not None:
            potential, gradient = potential[sample], gradient[sample]
        errors[f"{kind} potential"] = relative_error(potential, exact_potential)
        errors[f"{kind} gradient"] = relative_error(gradient, exact_gradient)
        if hessian:
            errors[f"{kind} hessian"] = relative_error(
                result.hessian if sample is None else result.hessian[sample], exact.hessian)
    entry = {"errors": errors, "seconds": round(seconds, 4), "n_crit": fmm.n_crit,
             "auto_n_crit": auto_n_crit, "depth": int(fmm.tree.box_levels.max()),
             "targets_are_sources": targets is None} | (
        {} if sample is None else {"sampled_targets": len(sample)})
    return entry, fmm.device.name.strip()  # the OpenCL device that measured the row


def set_row_maxima(row: dict) -> None:
    """Each quantity's error in ``row`` (the Hessians' where every set measured them): the
    largest over the point sets it holds."""
    for quantity in QUANTITIES + HESSIAN_QUANTITIES:
        if all(quantity in case["errors"] for case in row["sets"].values()):
            row[quantity] = max(case["errors"][quantity] for case in row["sets"].values())


def cached_references(sources, targets, charges, dipoles):
    """The direct sums of a point set, by kernel (computed once per kernel)."""
    memo = {}

    def references(kernel):
        if kernel.spec not in memo:
            direct = fmmloopy.DirectSum(sources, targets, kernel=kernel)
            fields = {"gradient": True} | ({} if kernel.is_tensor else {"hessian": True})
            memo[kernel.spec] = {"charge": direct(charges, **fields),
                                 "dipole": direct(dipoles=dipoles, **fields)}
        return memo[kernel.spec]
    return references


def markdown(table: dict) -> str:
    """The table as docs/kernels.md shows it: the largest error of each quantity over every
    point set and over the sets whose targets are their sources, by family, parameter and
    order."""
    lines = ["| kernel | parameter | order | " + " | ".join(QUANTITIES) + " |",
             "|---|---:|---:|" + "---:|" * len(QUANTITIES)]
    for row in table["rows"]:
        cells = [f"{row[q]:.1e} / {row_error(row, q, True):.1e}" for q in QUANTITIES]
        lines.append(f"| {row['family']} | {row['parameter']:g} | {row['order']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_cases(family: str, n: int, seed: int, names=None) -> dict:
    """Point set -> ``(sources, targets, charges, dipoles, references, sample)`` of
    ``family``'s calibration, drawn in the order of :data:`POINT_SETS` from one generator per
    family (a set added at the end leaves the others' draws as they were); ``sample``: the
    targets the references are summed at (None: every one). A slab's and a wire's charges are
    made neutral (their sums need it) and their references summed at
    :data:`SAMPLED_TARGETS` of the targets. ``names``: the sets returned (every set is drawn,
    so that each one's draws are those of a whole run)."""
    rng = np.random.default_rng([seed, list(FAMILY_GRIDS).index(family)])
    periodic = family in PERIODIC_AXES
    cases = {}
    for name in PERIODIC_SETS if periodic else POINT_SETS:
        sources, targets = (periodic_set if periodic else point_set)(name, n, rng)
        charges, dipoles = strengths(len(sources), family == "helmholtz", rng, family)
        sample = None
        if family in (SLAB_FAMILY, WIRE_FAMILY):
            charges = charges - charges.mean()
            every = sources if targets is None else targets
            sample = np.sort(rng.choice(len(every), min(SAMPLED_TARGETS, len(every)),
                                        replace=False))
        if names is not None and name not in names:
            continue
        if periodic:
            clock = time.perf_counter()
            every = sources if targets is None else targets
            at = every if sample is None else every[sample]
            references = lattice_references(family, sources, at, charges, dipoles)
            print(f"{family} {name}: references at {len(at)} targets in "
                  f"{time.perf_counter() - clock:.0f} s", flush=True)
        else:
            references = cached_references(sources, targets, charges, dipoles)
        cases[name] = (sources, targets, charges, dipoles, references, sample)
    return cases


def add_hessians(args, families: list[str]) -> None:
    """``--hessians``: measure the Hessians' errors (:data:`HESSIAN_QUANTITIES`) of the rows of
    ``--out`` for ``families`` (and ``--parameter``, ``--from-order``, ``--max-order``) on
    their point sets, into those rows; the rest of each row as it was."""
    table = json.loads(args.out.read_text())
    for family in families:
        if family not in HESSIAN_FAMILIES:
            continue
        cases = None
        for row in table["rows"]:
            if (row["family"] != family or not args.from_order <= row["order"] <= args.max_order
                    or (args.parameter and not any(math.isclose(row["parameter"], value)
                                                   for value in args.parameter))):
                continue
            cases = cases or family_cases(family, args.n, args.seed, list(row["sets"]))
            clock = time.perf_counter()
            new = measure(family, row["parameter"], row["order"], cases, args.n_crit_cap,
                          args.memory_limit, args.scratch_operators)
            forget_operators()
            gc.collect()
            for name, case in new["sets"].items():
                row["sets"][name]["errors"] |= {quantity: case["errors"][quantity]
                                                for quantity in HESSIAN_QUANTITIES}
            set_row_maxima(row)
            print(f"{family:9s} {row['parameter']:6g} order {row['order']:2d}: "
                  + "  ".join(f"{q} {row[q]:.2e}" for q in HESSIAN_QUANTITIES)
                  + f"  ({time.perf_counter() - clock:.0f} s)", flush=True)
            args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}")


def add_sets(args, families: list[str]) -> None:
    """``--sets``: measure those point sets at the orders of the rows of ``--out`` for
    ``families`` (and ``--parameter``, ``--from-order``, ``--max-order``), into those rows."""
    table = json.loads(args.out.read_text())
    for family in families:
        cases = family_cases(family, args.n, args.seed, args.sets)
        for row in table["rows"]:
            if (row["family"] != family or not args.from_order <= row["order"] <= args.max_order
                    or (args.parameter and not any(math.isclose(row["parameter"], value)
                                                   for value in args.parameter))):
                continue
            clock = time.perf_counter()
            new = measure(family, row["parameter"], row["order"], cases, args.n_crit_cap,
                          args.memory_limit, args.scratch_operators)
            forget_operators()
            gc.collect()
            row["sets"] |= new["sets"]
            set_row_maxima(row)
            print(f"{family:9s} {row['parameter']:6g} order {row['order']:2d}: "
                  + "  ".join(f"{q} {new[q]:.2e}" for q in QUANTITIES)
                  + f"  ({time.perf_counter() - clock:.0f} s)", flush=True)
            table["point_sets"] = sorted(set(table.get("point_sets", ())) | set(args.sets),
                                         key=(POINT_SETS + tuple(PERIODIC_SETS)).index)
            args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="points of each set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="append", choices=sorted(FAMILY_GRIDS),
                        help="calibrate only this family (repeatable; default: all)")
    parser.add_argument("--parameter", type=float, action="append",
                        help="calibrate only this grid point of the family (repeatable; "
                             "default: all; the point sets are the same, so separate runs' "
                             "rows join into one table)")
    parser.add_argument("--hessians", action="store_true",
                        help="add the Hessians' errors to the rows of --out of the families "
                             "(laplace, yukawa, helmholtz) and stop")
    parser.add_argument("--max-order", type=int, default=MAX_CALIBRATED_ORDER,
                        help="the highest order measured (the operators' precomputation grows "
                             "fast with it: 2 minutes at order 11 for Laplace)")
    parser.add_argument("--n-crit-cap", type=int, default=N_CRIT_CAP,
                        help="the most points per leaf of the trees measured")
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--memory-limit", type=float, default=None,
                        help="bytes each FMM may take (default: the free memory it finds; "
                             "orders 13-14 of Helmholtz estimate 5-15 GB with their "
                             "precomputation's temporaries)")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the rows of the families not calibrated now from --out")
    parser.add_argument("--from-order", type=int, default=3,
                        help="keep the family's rows below this order from --out and measure "
                             "the orders after each grid point's kept rows (extends a table to "
                             "higher orders; a grid point without rows is measured from 3)")
    parser.add_argument("--sets", nargs="+", choices=POINT_SETS + tuple(PERIODIC_SETS),
                        help="measure only these point sets, at the orders of the rows --out "
                             "holds for each family and grid point calibrated now, into those "
                             "rows (each row's errors are the largest over the sets it holds); "
                             "the sets are drawn as in a whole run")
    parser.add_argument("--scratch-operators", action="store_true",
                        help="compute each point set's operators into a scratch cache removed "
                             "after it (Helmholtz's order-14 sets are 0.73 GB each on disk)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table in --out as markdown and stop")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return

    families = args.family or list(FAMILY_GRIDS)
    if args.sets:
        add_sets(args, families)
        return
    if args.hessians:
        add_hessians(args, families)
        return
    rows = []
    if (args.keep_others or args.from_order > 3) and args.out.exists():
        rows = [row for row in json.loads(args.out.read_text())["rows"]
                if (args.keep_others and row["family"] not in families)
                or (row["family"] in families and (row["order"] < args.from_order or (
                    args.parameter and not any(math.isclose(row["parameter"], value)
                                               for value in args.parameter))))]
    table = {"format": 1, "written_by": "benchmarks/calibrate_eps.py", "seed": args.seed,
             "n_crit_cap": args.n_crit_cap,
             "point_sets": list(dict.fromkeys(POINT_SETS + tuple(PERIODIC_SETS))),
             "machine": platform.processor() or platform.machine(), "rows": rows}
    for family in families:
        cases = family_cases(family, args.n, args.seed)
        for parameter in FAMILY_GRIDS[family]:
            if args.parameter and not any(math.isclose(parameter, value)
                                          for value in args.parameter):
                continue
            # After the kept rows of this grid point (all orders for a new one).
            kept = [row["order"] for row in rows
                    if row["family"] == family and row["parameter"] == parameter]
            first = max(kept) + 1 if kept else 3
            if family == "helmholtz":  # the FMM's range: order / 3 wavelengths
                first = max(first, math.ceil(3 * parameter - 1e-9))
            if any(row["family"] == family and row["parameter"] == parameter
                   and max(row[q] for q in QUANTITIES) < STOP_BELOW for row in rows):
                continue  # the kept rows reached the stop already
            for order in range(first, args.max_order + 1):
                if family == "helmholtz" and parameter > max_root_wavelengths(order):
                    continue
                clock = time.perf_counter()
                row = measure(family, parameter, order, cases, args.n_crit_cap,
                              args.memory_limit, args.scratch_operators) | {"n": args.n}
                forget_operators()  # the disk cache keeps them; high orders' sets are GBs
                gc.collect()
                rows.append(row)
                worst = max(row[q] for q in QUANTITIES)
                print(f"{family:9s} {parameter:6g} order {order:2d}: "
                      + "  ".join(f"{q} {row[q]:.2e}" for q in QUANTITIES)
                      + f"  ({time.perf_counter() - clock:.0f} s)", flush=True)
                args.out.write_text(json.dumps(table, indent=1) + "\n")
                if worst < STOP_BELOW:
                    break
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
