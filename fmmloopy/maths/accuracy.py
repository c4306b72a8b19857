"""The order an accuracy asks for: ``eps`` -> expansion order, from a measured table.

``Fmm(..., eps=...)`` chooses the lowest order whose measured relative L2 error, times
:data:`MARGIN` (more for rows measured on fewer points), is at most ``eps`` for every quantity
the FMM is built for (the potential, gradient and/or Hessian of charges and/or dipoles). The errors
come from ``eps_calibration.json`` beside this module, written by
``benchmarks/calibrate_eps.py``: for each built-in kernel family at a grid of its
dimensionless parameter (:data:`FAMILY_GRIDS`) and each order, the largest error over
six point sets (sphere, uniform cube, Plummer, a cubic lattice; targets on a shell outside the
sources, targets on a sphere around sources on a sphere) at every target against a direct sum
(an FMM whose targets are its sources: the worst of the four sets whose targets are theirs),
each on a tree of three or more levels (leaves of at most 64 points: the far field's error, as
in a large problem, not the near field's exactness). A kernel that is not scale-invariant is
placed on the grid by its parameter over the root box (Yukawa
``kappa L``, Helmholtz ``L`` in wavelengths); between two grid points the larger of their
errors is taken, and below the first one Laplace's too.

What ``eps`` means: the relative L2 error over all targets, ``||u_fmm - u|| / ||u||``, of each
quantity asked for. Expression kernels have no calibration: ``eps`` refuses them (give
``order``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from fmmloopy.maths.green import (
    LAPLACE_3D,
    GreenKernel,
    helmholtz,
    max_root_wavelengths,
    stokes,
    wavelength,
    yukawa,
)
from fmmloopy.maths.harmonic import harmonic_split
from fmmloopy.maths.length_scale import builtin_name

__all__ = ["CALIBRATION_FILE", "EPS_FOR", "FAMILY_GRIDS", "MARGIN", "PERIODIC_FAMILIES",
           "HESSIAN_FAMILIES", "HESSIAN_QUANTITIES", "PERIODIC_FAMILY", "QUANTITIES",
           "QUANTITY_POWERS", "SLAB_FAMILY", "WIRE_FAMILY",
           "YUKAWA_APART_LIMIT", "YUKAWA_SHARE_LIMIT", "calibrated_family", "eps_quantities",
           "far_share_error", "far_share_orders", "far_share_refusal", "family_parameter",
           "kernel_at", "laplace_ratio", "order_for_eps", "order_for_far_share", "row_error",
           "validate_eps"]

#: The measured table (``benchmarks/calibrate_eps.py`` writes it).
CALIBRATION_FILE = Path(__file__).with_name("eps_calibration.json")
#: The quantities measured: (strength kind, field).
QUANTITIES = ("charge potential", "charge gradient", "dipole potential", "dipole gradient")
#: The Hessians' quantities, measured for the scalar kernels' families (:data:`HESSIAN_FAMILIES`)
#: where the table's rows hold them.
HESSIAN_QUANTITIES = ("charge hessian", "dipole hessian")
HESSIAN_FAMILIES = ("laplace", "yukawa", "helmholtz")
#: What ``eps_for`` takes: strengths (``"charges"``, ``"dipoles"``) and fields (``"potential"``,
#: always included, ``"gradient"`` and ``"hessian"``).
EPS_FOR = ("charges", "dipoles", "potential", "gradient", "hessian")
#: The family of a Laplace FMM periodic along every axis, measured against the Ewald sum.
PERIODIC_FAMILY = "periodic laplace"
#: The families of a Laplace slab (two periodic axes), measured against the slab's Ewald sum,
#: and of a wire (one), measured against the sum over its images.
SLAB_FAMILY, WIRE_FAMILY = "slab laplace", "wire laplace"
#: The family of a Laplace FMM by its number of periodic axes.
PERIODIC_FAMILIES = {3: PERIODIC_FAMILY, 2: SLAB_FAMILY, 1: WIRE_FAMILY}
#: The grid of each family's dimensionless parameter: Laplace none; Yukawa ``kappa L``;
#: Helmholtz the root box ``L`` in wavelengths (the range of order 13, the highest measured for
#: it, ends at 13 / 3 wavelengths; wider boxes are refused under ``eps``); beyond the last
#: grid point a box takes that point's rows.
FAMILY_GRIDS = {"laplace": (0.0,), "yukawa": (1.0, 10.0, 30.0, 100.0),
                "helmholtz": (0.5, 1.0, 2.0, 2.6, 3.0), "stokes": (0.0,), PERIODIC_FAMILY: (0.0,),
                SLAB_FAMILY: (0.0,), WIRE_FAMILY: (0.0,)}
#: The factor between the table's error and ``eps``: the table holds the worst of its four point
#: sets at :data:`REFERENCE_N` points (trees of 3-7 levels); an FMM's error grows slowly with
#: N (the potential of charges at 10^6 points, the cost model's tree: 1.4x the table's set at
#: orders 6 and 9 on the sphere, 1.6x on the cube at order 6; docs/kernels.md), and the worst
#: set's error moved by up to 2.9x between draws of 5*10^3 and 10^4 points (Yukawa,
#: kappa L = 1, orders 4-6).
MARGIN = 3.0
#: The points of each set the margin is stated for; a row measured on fewer points (its ``n``)
#: takes the margin times ``sqrt(REFERENCE_N / n)``.
REFERENCE_N = 10_000
#: Rows stop where every quantity measured below this (the smallest ``eps`` the table serves
#: is ``MARGIN`` times the last row's error), or at :data:`MAX_CALIBRATED_ORDER`.
STOP_BELOW = 1e-10
#: The highest order the calibration measures by default: the largest the FMM takes. The
#: shipped table has Laplace and Yukawa to it, Helmholtz to 13 (their operators are computed
#: per level, keyed by ``kappa h``: the sets of a row share them; Helmholtz's three complex sets
#: of order 14 need more than a 24 GB machine has).
MAX_CALIBRATED_ORDER = 16
#: The largest ``kappa L`` at which ``eps`` serves a Yukawa FMM whose targets are not its
#: sources. Beyond it, targets many ``1 / kappa`` from every source see a field exponentially
#: smaller than the sources' own, and the expansions' error relative to it is not bounded by
#: the table: on held-out sets at ``kappa L`` 100 (targets on a cube's surface 0.6 beyond a ball
#: of sources) the order chosen for 1e-3 missed it by up to 3.2x (docs/kernels.md).
YUKAWA_APART_LIMIT = 30.0


def eps_quantities(eps_for: str | Iterable[str]) -> tuple[str, ...]:
    """The :data:`QUANTITIES` named by ``eps_for`` (a word of :data:`EPS_FOR` or several):
    the strength kinds given (charges if none) times the potential, and the gradient where
    ``"gradient"`` is given (a call with ``gradient=True`` returns both)."""
    words = (eps_for,) if isinstance(eps_for, str) else tuple(eps_for)
    unknown = [word for word in words if word not in EPS_FOR]
    if unknown or not words:
        raise ValueError(f"eps_for takes one or more of {', '.join(EPS_FOR)}, not "
                         f"{eps_for!r}")
    kinds = [kind for kind in ("charges", "dipoles") if kind in words] or ["charges"]
    fields = ["potential"] + [field for field in ("gradient", "hessian") if field in words]
    return tuple(f"{kind[:-1]} {field}" for kind in kinds for field in fields)


def validate_eps(eps) -> float:
    """``eps`` as a float; ValueError unless it is a number strictly between 0 and 1."""
    if not (isinstance(eps, (int, float, np.floating)) and not isinstance(eps, bool)
            and 0 < eps < 1):
        raise ValueError(f"eps must be a number between 0 and 1 (a relative L2 error), not "
                         f"{eps!r}")
    return float(eps)


def calibrated_family(kernel: GreenKernel, periodic_axes: int = 0) -> str | None:
    """``"laplace"``, ``"yukawa"``, ``"helmholtz"`` or ``"stokes"`` where ``kernel`` is that
    built-in Green's function (a kernel of the same name and another expression is not); in a
    cell periodic along ``periodic_axes`` axes (3, 2: a slab, 1: a wire) Laplace's family of
    :data:`PERIODIC_FAMILIES`; else None. Stokes' relative errors do not depend on the
    viscosity (a factor of every result but the pressure, which does not depend on it): one
    grid point. Every kernel summed as the
    Stokeslet's Laplace sums (:func:`~fmmloopy.maths.harmonic.harmonic_split`, which
    recognises the built-in ones) takes Stokes' rows: the RPY tensor's far field is those sums
    with dipoles on one of the four, its near field summed exactly."""
    if isinstance(periodic_axes, bool) or periodic_axes not in (0, *PERIODIC_FAMILIES):
        raise ValueError(f"periodic_axes is a number of axes, 0 to 3, not {periodic_axes!r}")
    if periodic_axes:
        return PERIODIC_FAMILIES[periodic_axes] if kernel.base == LAPLACE_3D else None
    if harmonic_split(kernel) is not None:
        return "stokes"
    return builtin_name(kernel)


def family_parameter(family: str, kernel: GreenKernel, root_side: float) -> float:
    """Where ``kernel`` (of ``family``, :func:`calibrated_family`) lies on its family's grid for
    a root box of side ``root_side``."""
    if family == "yukawa":
        return abs(dict(kernel.parameters)["kappa"]) * root_side
    if family == "helmholtz":
        return root_side / wavelength(kernel)
    return 0.0


def kernel_at(family: str, parameter: float, root_side: float) -> GreenKernel:
    """The family's kernel at ``parameter`` for a root box of side ``root_side`` (the inverse of
    :func:`family_parameter`; what the calibration runs)."""
    if family == "yukawa":
        return yukawa(parameter / root_side)
    if family == "helmholtz":
        return helmholtz(2 * math.pi * parameter / root_side)
    return stokes() if family == "stokes" else LAPLACE_3D


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        return json.loads(CALIBRATION_FILE.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"fmmloopy's accuracy table {CALIBRATION_FILE} cannot be read "
                           f"({exc}); reinstall fmmloopy or give order= instead of eps=") from exc


def _rows_near(family: str, parameter: float) -> list[list[dict]]:
    """The table's rows (by grid point) that bound ``parameter``: the grid points on both
    sides of it (one where it lies on the grid, to a relative 1e-9: a parameter made from a
    grid point and the root box, ``kappa = 30 / L`` say, comes back with its rounding; or
    beyond its end), and Laplace's below the first."""
    grid = FAMILY_GRIDS[family]
    parameter = next((value for value in grid if math.isclose(value, parameter, rel_tol=1e-9)),
                     parameter)
    below = [value for value in grid if value <= parameter]
    above = [value for value in grid if value >= parameter]
    points = {below[-1] if below else None, above[0] if above else grid[-1]}
    rows = _table()["rows"]
    near = []
    if None in points:
        points.discard(None)
        near.append([row for row in rows if row["family"] == "laplace"])
    for point in points:
        near.append([row for row in rows if row["family"] == family
                     and math.isclose(row["parameter"], point)])
    return near


#: The table's point sets whose targets are their sources: an FMM without targets of its own
#: takes the worst of these (the ``shell`` set, targets apart from the sources, has no near
#: field to carry the norm and is by far the worst for gradients and dipoles).
SELF_TARGET_SETS = ("sphere", "cube", "plummer", "lattice")


def row_error(row: dict, quantity: str, targets_are_sources: bool) -> float:
    """The error a row holds for ``quantity``: the worst of every point set, or of the sets
    whose targets are the sources (:data:`SELF_TARGET_SETS`, or those a set marks with
    ``"targets_are_sources"``)."""
    if targets_are_sources and "sets" in row:
        return max(case["errors"][quantity] for name, case in row["sets"].items()
                   if case.get("targets_are_sources", name in SELF_TARGET_SETS))
    return row[quantity]


def order_for_eps(eps: float, kernel: GreenKernel, root_side: float,
                  quantities: Iterable[str] = ("charge potential",),
                  targets_are_sources: bool = False, periodic_axes: int = 0) -> int:
    """The lowest order whose measured error of every one of ``quantities`` is at most
    ``eps / MARGIN`` for ``kernel`` over a root box of side ``root_side`` (rows of fewer than
    :data:`REFERENCE_N` points: a larger margin; module docstring); ``targets_are_sources``:
    the point sets whose targets are their sources only; ``periodic_axes``: the periodic axes
    of a periodic FMM (3, a slab's 2 or a wire's 1: rows measured against the Ewald sum, the
    slab's Ewald sum, the sum over the wire's images). ValueError naming the reason where
    no order does or the kernel has no calibration."""
    validate_eps(eps)
    family = calibrated_family(kernel, periodic_axes)
    if family is None:
        raise ValueError(f"eps: kernel {kernel.spec} has no accuracy calibration "
                         + ("in a periodic cell (Laplace's has)" if periodic_axes else
                            "(the built-in laplace, yukawa, helmholtz and stokes have)")
                         + "; give order= instead")
    quantities = tuple(quantities)
    parameter = family_parameter(family, kernel, root_side)
    # Rows measure the Hessians up to an order of their own (docs/kernels.md): an order
    # counts where its row measured every quantity asked for.
    near = [[row for row in rows if all(q in row for q in quantities)]
            for rows in _rows_near(family, parameter)]
    unmeasured = sorted({q for q in quantities for rows in _rows_near(family, parameter)
                         if not any(q in row for row in rows)})
    if unmeasured:
        raise ValueError(f"eps: fmmloopy's accuracy table has no rows of {', '.join(unmeasured)} "
                         f"for {kernel.spec} ({family}; docs/kernels.md, 'Accuracy by eps'); "
                         "give order= instead and check the error with a direct sum")
    measured = [{row["order"]: max(row_error(row, q, targets_are_sources) for q in quantities)
                 * math.sqrt(max(1.0, REFERENCE_N / row.get("n", REFERENCE_N)))
                 for row in rows}
                for rows in near]
    # An order counts where every bounding grid point measured it; its error is the largest.
    orders = set.intersection(*(set(by_order) for by_order in measured)) if measured else set()
    errors = {order: max(by_order[order] for by_order in measured) for order in orders}
    if family == "yukawa" and not targets_are_sources and parameter > YUKAWA_APART_LIMIT * (
            1 + 1e-9):
        raise ValueError(
            f"eps={eps:g} for {kernel.spec} with targets of their own: the root box is "
            f"{parameter:.3g} / kappa wide, beyond the {YUKAWA_APART_LIMIT:g} up to which "
            "fmmloopy's accuracy table bounds the error where targets lie apart from the "
            "sources (the field there decays as exp(-kappa r); docs/kernels.md, 'Accuracy by "
            "eps'); give order= and check the error with Fmm.estimate_error")
    if family == "helmholtz":  # its range: order / 3 wavelengths
        errors = {order: error for order, error in errors.items()
                  if parameter <= max_root_wavelengths(order)}
        if not errors:
            raise ValueError(
                f"eps={eps:g} for {kernel.spec}: the root box is {parameter:.3g} wavelengths "
                "wide, beyond the range of every order fmmloopy's accuracy table measured "
                "(order / 3 wavelengths; docs/kernels.md, 'Accuracy by eps'); give order= "
                "(up to 16) and check the error with Fmm.estimate_error")
    enough = sorted(order for order, error in errors.items() if MARGIN * error <= eps)
    if enough:
        return enough[0]
    best = min(errors.values()) if errors else math.nan
    where = f" at {parameter:.3g} {'wavelengths' if family == 'helmholtz' else 'kappa L'}" \
        if family in ("yukawa", "helmholtz") else ""
    raise ValueError(
        f"eps={eps:g} for {', '.join(quantities)} of {kernel.spec}{where}: the most accurate "
        f"order measured reaches {best:.2g} (times the margin {MARGIN:g}; fmmloopy's accuracy "
        "table, docs/kernels.md); ask for a larger eps, or give order= (up to 16) and check the "
        "error with Fmm.estimate_error")


#: The power of ``1 / r`` in ``|K|`` of each quantity of a Laplace FMM (what
#: :mod:`fmmloopy.tree.far_share` measures the far field's share of).
QUANTITY_POWERS = {"charge potential": 1, "charge gradient": 2, "dipole potential": 2,
                   "dipole gradient": 3}


def _far_pair_error(row: dict, quantity: str, coherent: bool, targets_are_sources: bool
                    ) -> float:
    """The largest error over the row's point sets (those whose targets are their sources if
    ``targets_are_sources``) of ``quantity`` over the set's far share, for random or coherent
    strengths; a set without far field says nothing."""
    index = QUANTITY_POWERS[quantity] - 1
    largest = 0.0
    for name, case in row["sets"].items():
        if targets_are_sources and not case.get("targets_are_sources",
                                                name in SELF_TARGET_SETS):
            continue
        share = case["far_share"]["coherent" if coherent else "random"][index]
        error = (case["coherent_errors"] if coherent else case["errors"])[quantity]
        if share > 0:
            largest = max(largest, error / share)
    return largest


def far_share_orders() -> list[int]:
    """The orders whose Laplace rows hold far shares (:data:`far_share_error`), ascending."""
    return sorted(row["order"] for row in _table()["rows"]
                  if row["family"] == "laplace" and row.get("sets") and all(
                      "far_share" in case for case in row["sets"].values()))


def far_share_error(order: int, quantities: Iterable[str], random: tuple[float, ...],
                    coherent: tuple[float, ...], targets_are_sources: bool) -> float:
    """The error a Laplace FMM of ``order`` is predicted to reach, the worst of
    ``quantities`` and of strengths random or of one sign: the table's largest error per
    unit far share (``benchmarks/calibrate_far_share.py``) times the FMM's own far share
    (``random``, ``coherent``: :class:`fmmloopy.tree.far_share.FarShare`'s, by power)."""
    row = next(row for row in _table()["rows"]
               if row["family"] == "laplace" and row["order"] == order)
    scale = math.sqrt(max(1.0, REFERENCE_N / row.get("n", REFERENCE_N)))
    return scale * max(
        _far_pair_error(row, quantity, coherent_kind, targets_are_sources)
        * (coherent if coherent_kind else random)[QUANTITY_POWERS[quantity] - 1]
        for quantity in quantities for coherent_kind in (False, True))


#: The largest ``kappa L`` at which a Yukawa FMM whose targets are not its sources takes the
#: order from its own tree's far share, as Laplace's (:func:`laplace_ratio`); one whose
#: targets are its sources takes it at every ``kappa L``. The table's Yukawa errors are
#: 0.02-2.4 times Laplace's at the same order where the targets are the sources (every grid
#: point), and up to 5.2 times with targets apart at ``kappa L`` 10, 42 at 30 (where the
#: table's single parameter runs out: docs/kernels.md); the ratio is part of the prediction.
#: (Helmholtz takes the search over its table's whole range: its errors are 0.05-1.16 times
#: Laplace's.)
YUKAWA_SHARE_LIMIT = 10.0


def laplace_ratio(order: int, quantity: str, family: str, parameter: float,
                  targets_are_sources: bool) -> float:
    """The table's error of ``family`` at ``parameter`` over Laplace's, for ``quantity`` at
    ``order`` on the same point sets (the worst of the grid points bounding ``parameter``,
    as :func:`order_for_eps` takes them; those whose targets are their sources where the
    FMM's are): what turns Laplace's predicted error on a tree (:func:`far_share_error`) into
    the family's. Yukawa's far field's weights decay faster than Laplace's, so Laplace's far
    share of a tree overstates its own (the ratio is measured with that in it); Helmholtz's
    have Laplace's magnitude. Infinite where a grid point has no row of ``order``, or where
    a Helmholtz box of ``parameter`` wavelengths is beyond the order's range: nothing is
    predicted there."""
    if family == "helmholtz" and parameter > max_root_wavelengths(order):  # as Fmm checks
        return math.inf
    rows = _table()["rows"]
    laplace = next(row for row in rows if row["family"] == "laplace" and row["order"] == order)
    reference = row_error(laplace, quantity, targets_are_sources)
    ratio = 0.0
    for grid_point in _rows_near(family, parameter):
        row = next((row for row in grid_point if row["order"] == order), None)
        if row is None:
            return math.inf
        ratio = max(ratio, row_error(row, quantity, targets_are_sources) / reference)
    return ratio


def order_for_far_share(eps: float, quantities: Iterable[str],
                        share_at: Callable[[int], tuple[tuple[float, ...], tuple[float, ...]]],
                        targets_are_sources: bool, orders: Iterable[int] | None = None) -> int:
    """The lowest of ``orders`` (every order :func:`far_share_orders` holds if None) whose
    :func:`far_share_error` times :data:`MARGIN` is at most ``eps``; ``share_at(order)``:
    ``(random, coherent)`` far shares of the FMM that order would run (its own tree).
    ValueError where none is."""
    validate_eps(eps)
    quantities = tuple(quantities)
    orders = far_share_orders() if orders is None else sorted(orders)
    best = math.inf
    for order in orders:
        error = far_share_error(order, quantities, *share_at(order), targets_are_sources)
        if MARGIN * error <= eps:
            return order
        best = min(best, error)
    raise far_share_refusal(eps, quantities, best)


def far_share_refusal(eps: float, quantities: Iterable[str], best: float,
                      family: str = "laplace") -> ValueError:
    """The error that refuses ``eps`` for an FMM of ``family`` whose most accurate order is
    predicted to reach ``best`` on its points."""
    return ValueError(
        f"eps={eps:g} for {', '.join(quantities)} of {family}: the most accurate order measured "
        f"reaches {best:.2g} on these points (times the margin {MARGIN:g}; fmmloopy's accuracy "
        "table, docs/kernels.md); ask for a larger eps, or give order= (up to 16) and check the "
        "error with Fmm.estimate_error")
