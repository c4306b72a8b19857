"""Periodic boundaries for :class:`~fmmloopy.api.fmm.Fmm` (``periodic=``): the cell, its
working coordinates, and what an evaluation adds to the free-space passes over the tree of the
cell and its images (:mod:`fmmloopy.tree.periodic`).

Between the passes (:meth:`PeriodicImages.between_passes`) the image boxes get their real box's
multipole (copied on the device), and the cell's children's downward check potentials get the
far images': their multipoles through the far lattice operators
(:func:`~fmmloopy.maths.periodic.lattice_operators`), a launch of the plan
(:meth:`PeriodicImages.lattice_launch`), and the children's exact charges' part, from the host.
After the passes every potential gets the tin-foil sum's constant
(:func:`~fmmloopy.maths.periodic.mean_potential_constant`). The convention is the Ewald sum's
(:mod:`fmmloopy.maths.ewald`): tin-foil boundary, and a net charge neutralised by a uniform
background. Charges and dipoles. A slab or a wire (``periodic_axes`` of two axes or one) sums
its images along those axes only, a plain sum of neutral charges: a net charge is refused
(:meth:`PeriodicImages.check_strengths`) and nothing is added after the passes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.api.periodic_flow import check_periodic_flow
from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.driver.builder import ExtraMatvec
from fmmloopy.driver.evaluation import PassHooks
from fmmloopy.execution.precomputed import get_lattice_operators
from fmmloopy.execution.rows import add_rows, copy_rows, folded_rows, gather_rows
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel
from fmmloopy.maths.harmonic import harmonic_split
from fmmloopy.maths.m2l_compression import expected_error
from fmmloopy.maths.periodic import ALL_AXES, mean_potential_constant, offset_code
from fmmloopy.tree.periodic import (
    AXIS_NAMES,
    CELL_LEVEL,
    Periodic,
    cell_children,
    lattice_list,
)

__all__ = ["LATTICE_STEP", "NET_CHARGE", "PeriodicCell", "PeriodicImages",
           "check_wrap_precision", "checked_cell"]

#: The far lattice's launch: the name its time is reported under and ``recipes`` may give.
LATTICE_STEP = "lattice"
#: The largest net charge of a "neutral" slab or wire, relative to its charges' absolute sum.
NET_CHARGE = 1e-10


@dataclass(frozen=True)
class PeriodicCell:
    """A cubic cell ``[lower, lower + side)^3``, repeated along the three axes, or along the
    periodic ``axes`` only (a slab's two, a wire's one; along the others the points must lie
    in the cell's range)."""

    lower: np.ndarray
    side: float
    axes: tuple[int, ...] = ALL_AXES

    @property
    def volume(self) -> float:
        return self.side ** 3

    def working(self) -> tuple[np.ndarray, int, PeriodicCell]:
        """``(origin, exponent, cell)``: the working coordinates ``(x - origin) 2**-exponent``
        of a periodic FMM (origin the cell's centre, the side scaled into ``[1, 2)``) and the
        cell in them."""
        origin = self.lower + 0.5 * self.side
        exponent = math.frexp(self.side)[1] - 1
        side = math.ldexp(self.side, -exponent)
        return origin, exponent, PeriodicCell(np.full(3, -0.5 * side), side, self.axes)


def checked_cell(periodic, periodic_axes: str = "xyz") -> PeriodicCell | None:
    """The cell of ``periodic=``: None, the side ``L`` of the cell ``[0, L)^3``, or its corners
    ``(lower, upper)`` (a cube), periodic along ``periodic_axes`` (``"xyz"``, two of the axes:
    a slab, or one: a wire); ValueError for anything else."""
    axes = _periodic_axes(periodic_axes)
    if periodic is None:
        if axes != ALL_AXES:
            raise ValueError(f"periodic_axes={periodic_axes!r} needs a periodic cell "
                             "(periodic=)")
        return None
    if np.ndim(periodic) == 0:
        try:
            side = float(periodic)
        except (TypeError, ValueError):
            raise ValueError(f"periodic must be the cell's side L or its corners (lower, upper), "
                             f"got {periodic!r}") from None
        corners = np.zeros(3), np.full(3, side)
    else:
        try:
            corners = np.asarray(periodic, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"periodic must be the cell's side L or its corners (lower, upper), "
                             f"got {periodic!r}") from None
        if corners.shape != (2, 3):
            raise ValueError(f"periodic corners must be (lower, upper), two points of 3 "
                             f"coordinates; got shape {corners.shape}")
        corners = corners[0], corners[1]
    lower, upper = corners
    sides = upper - lower
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(sides)) and np.all(sides > 0)):
        raise ValueError(f"the periodic cell must have finite corners and positive sides; got "
                         f"lower {lower.tolist()}, sides {sides.tolist()}")
    if not np.allclose(sides, sides[0], rtol=1e-12, atol=0):
        raise ValueError(f"the periodic cell must be a cube (sides {sides.tolist()}); "
                         "orthorhombic cells are not supported yet")
    return PeriodicCell(np.array(lower, dtype=np.float64), float(sides[0]), axes)


#: The most a periodic FMM lets the wrapping of its points into the cell cost: their offsets'
#: rounding, relative to the side, at most this fraction of the order's expected error.
WRAP_SHARE = 0.1


def check_wrap_precision(points: np.ndarray, cell: PeriodicCell, order: int,
                         what: str = "points") -> None:
    """ValueError where wrapping ``points`` ``(n, 3)`` (user coordinates) into ``cell`` keeps
    too few of their digits for ``order``: a point ``D`` from the cell along a periodic axis
    has its offset rounded by about ``D 2^-53``, which relative to the side ``L`` must stay
    within :data:`WRAP_SHARE` of the order's expected error
    (:func:`~fmmloopy.maths.m2l_compression.expected_error`). A side far below the points'
    spread (``periodic=1e-300`` for points in ``[0, 1)^3``) or points many thousands of
    millions of cells away fail it; points a million cells away do not."""
    if not len(points):
        return
    axes = list(cell.axes)
    reach = float(np.abs(points[:, axes] - (cell.lower + 0.5 * cell.side)[axes]).max())
    lost = reach / cell.side * 2.0 ** -53
    allowed = WRAP_SHARE * expected_error(order)
    if not lost <= allowed:
        raise ValueError(
            f"the {what} lie up to {reach:.3g} from the periodic cell of side {cell.side:.3g} "
            f"({reach / cell.side:.3g} sides): wrapped into it, their offsets keep only "
            f"{max(0.0, -np.log10(lost)):.1f} of their digits relative to the side, and "
            f"the FMM at order {order} needs {-np.log10(allowed):.1f}; give the cell its "
            "real size (periodic=L is the side) or wrap the points into it first")


def _periodic_axes(periodic_axes) -> tuple[int, ...]:
    """The axes ``periodic_axes`` names, in order: a string of distinct axes of ``"xyz"``, a
    sequence of such names, or three booleans (``(True, True, False)``: x and y); ValueError
    for anything else or for no axis."""
    names = periodic_axes
    if not isinstance(names, str):
        try:
            items = list(names)
        except TypeError:
            items = None
        if items is not None and len(items) == 3 and all(
                isinstance(item, (bool, np.bool_)) for item in items):
            names = "".join(name for name, flag in zip(AXIS_NAMES, items, strict=True) if flag)
            if not names:
                raise ValueError("periodic_axes (False, False, False) names no periodic axis; "
                                 "for free space leave periodic= out")
        elif items is not None and all(isinstance(item, str) for item in items):
            names = "".join(items)
    if not isinstance(names, str) or not names or (set(names) - set(AXIS_NAMES)) or len(
            set(names)) != len(names):
        raise ValueError(f"periodic_axes must name distinct axes of 'xyz' (e.g. 'xyz', 'xy' "
                         f"for a slab, 'z' for a wire, or three booleans); got "
                         f"{periodic_axes!r}")
    return tuple(sorted(AXIS_NAMES.index(name) for name in names))


def check_periodic_kernel(kernel: GreenKernel, axes: tuple[int, ...] = ALL_AXES) -> None:
    """ValueError for a kernel the periodic FMM does not sum: it sums the Laplace potential
    (and its gradient) of charges and dipoles, and Stokes flow of point forces in a cell
    periodic along every axis (:mod:`fmmloopy.api.periodic_flow`)."""
    split = harmonic_split(kernel)
    if split is not None and kernel.name == "stokes":
        check_periodic_flow(split, kernel, axes)
        return
    if kernel.name != "laplace":
        raise ValueError(f"periodic boundaries are for the Laplace and Stokes kernels; got "
                         f"{kernel.label!r} (its lattice sums are not built)")


def checked_periodic_options(periodic, periodic_axes: str, kernel: GreenKernel,
                             eps: float | None, precision: Precision,
                             max_depth: int) -> PeriodicCell | None:
    """The cell of ``periodic=`` (:func:`checked_cell`), with the other options of an FMM
    checked against it: a periodic FMM sums the Laplace kernel or Stokes flow
    (:func:`check_periodic_kernel`) in float64, ``eps`` only for Laplace (a cell, a slab or a
    wire), its tree deeper than the cell's level;
    ValueError naming what is wrong. None in free space."""
    cell = checked_cell(periodic, periodic_axes)
    if cell is None:
        return None
    check_periodic_kernel(kernel, cell.axes)
    if eps is not None and kernel.base != LAPLACE_3D:
        raise ValueError("eps of a periodic FMM is calibrated for Laplace (a cell, a slab or a "
                         "wire, against their Ewald sums); give order= for Stokes flow "
                         "(docs/fmm.md, 'Periodic boundaries': the error at each order)")
    if precision != FLOAT64:
        raise ValueError(f"periodic boundaries are built for float64 FMMs, not "
                         f"{precision.name}")
    if max_depth <= CELL_LEVEL:
        raise ValueError(f"a periodic FMM needs max_depth > {CELL_LEVEL} (its cell is a box of "
                         f"level {CELL_LEVEL}), got {max_depth}")
    return cell


class PeriodicImages:
    """What an evaluation of a periodic FMM adds to the passes over :class:`Periodic`'s tree
    (module docstring), in working units; ``cell``: the cell in working coordinates."""

    def __init__(self, periodic: Periodic, cell: PeriodicCell, order: int):
        tree = periodic.tree
        self._periodic = periodic
        self.images = periodic.image_boxes
        self.originals = periodic.real_box[self.images]
        #: The cell's children (boxes) and their positions in it (0 or 1 per axis).
        self.children, positions = cell_children(periodic)
        self.sources = tree.box_source_counts[self.children] > 0
        #: The children's ranges of sources (tree order): ``(first, count)``.
        self.source_ranges = [(int(tree.box_source_starts[child]),
                               int(tree.box_source_counts[child])) for child in self.children]
        self.targets = tree.box_target_counts[self.children] > 0
        #: Per (target child, source child): the index of its operator.
        self.codes = offset_code(positions[None, :, :] - positions[:, None, :])
        half_width = 0.5 * cell.side
        #: The periodic axes.
        self.axes = cell.axes
        operators = get_lattice_operators(order, cell.axes)  # for a cell of half-width 1
        n_e = operators.shape[1]
        row_sums = operators.sum(axis=2)
        #: The far images' operators as the lattice launch applies them (for a cell of
        #: half-width 1; the Laplace kernel scales as 1/h: the launch scales them by
        #: 1/half-width): each less its row sums spread over the equivalent points, so that a
        #: density's sum (its charge, as the upward pass made it) does not enter
        #: (:meth:`between_passes` adds the children's exact charges' part).
        self.operators = operators - row_sums[:, :, None] / n_e
        #: Each operator applied to a unit charge spread evenly over the equivalent points, in
        #: working units, (27, n_e): the part of the children's exact charges.
        self.unit_charge = row_sums / (n_e * half_width)
        centre = cell.lower + 0.5 * cell.side
        equivalent = 0.5 * half_width * Expansion(order).surface("upward_equivalent")
        #: |e - c|^2 of each child's equivalent points, (children, n_e).
        self.equivalent_moment = ((tree.box_centres[self.children][:, :, None] + equivalent
                                   - centre[None, :, None]) ** 2).sum(axis=1)
        real = tree.source_user_ids < tree.nsources - len(periodic.ghost_sources)
        #: x - c of each source in tree order, (3, ns), and |x - c|^2, (ns,); 0 for the
        #: ghosts (the second moments are the cell's sources' only).
        self.source_offsets = np.where(real, tree.sources_soa - centre[:, None], 0.0)
        self.source_moment = (self.source_offsets ** 2).sum(axis=0)
        self.half_width = half_width
        self.volume = cell.volume
        #: The targets less the cell's centre, (3, nt), and their squared distances to it.
        self.target_offsets = tree.targets_soa - centre[:, None]
        self.target_moment = (self.target_offsets ** 2).sum(axis=0)
        check = 0.5 * half_width * Expansion(order).surface("downward_check")
        #: |r - c|^2 of each child's downward check points, (children, n_e).
        self.check_moment = ((tree.box_centres[self.children][:, :, None] + check
                              - centre[None, :, None]) ** 2).sum(axis=1)
        self._totals = self._net = None
        #: Strength vectors -> the image rows and their real rows, on the device.
        self._copies: dict[int, tuple[cla.Array, cla.Array]] = {}

    def launches(self) -> list[ExtraMatvec]:
        """The plan's launches of the far lattice: :meth:`lattice_launch`."""
        return [self.lattice_launch()]

    def lattice_launch(self) -> ExtraMatvec:
        """The far images' check potentials at the cell's children, a launch of the plan
        (:class:`~fmmloopy.driver.builder.ExtraMatvec`): the 27 lattice operators applied to
        the children's multipoles by M2M's kernel (its matvec template at the same sizes),
        under the recipe ``recipes`` names for ``"lattice"``, else M2M's, verified at first
        use as every launch is. Entries: each child with targets lists the children with
        sources, with the operator of their offset."""
        targets, rows = lattice_list(self._periodic)
        return ExtraMatvec(LATTICE_STEP, "m2m", targets, rows, self.operators,
                           1.0 / self.half_width)

    @staticmethod
    def strengths_of(strengths: np.ndarray, kernel: GreenKernel
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(charges (vectors, ns), dipoles (vectors, 3, ns) or None)`` of a call's
        ``strengths`` ``(n_inputs, ns)`` (tree order) for ``kernel``'s inputs (no charges:
        zeros)."""
        per_vector = strengths.reshape(kernel.vectors, -1, strengths.shape[-1])
        charges = (per_vector[:, 0] if "charge" in kernel.inputs
                   else np.zeros((kernel.vectors, strengths.shape[-1])))
        return charges, per_vector[:, -3:] if "dipole" in kernel.inputs else None

    def _child_charges(self, charges: np.ndarray) -> np.ndarray:
        """``(children, vectors)``: the charges ``(vectors, ns)`` (tree order) summed per child
        of the cell."""
        return np.stack([charges[:, first:first + count].sum(axis=1)
                         for first, count in self.source_ranges])

    def check_strengths(self, strengths: np.ndarray, kernel: GreenKernel) -> None:
        """ValueError where the charges of a slab or a wire (``strengths`` as
        :meth:`between_passes` takes them) are not neutral: a charged sheet's or line's
        potential grows without bound away from it and its lattice sum diverges. Neutral means
        a net charge of at most :data:`NET_CHARGE` of the charges' absolute sum (rounding)."""
        if self.axes == ALL_AXES:
            return
        charges, _ = self.strengths_of(strengths, kernel)
        totals = self._child_charges(charges)
        net = totals.sum(axis=0)
        scale = self._child_charges(np.abs(charges)).sum(axis=0)
        charged = np.abs(net) > NET_CHARGE * scale
        if charged.any():
            vector = int(np.argmax(charged))
            shape = "slab" if len(self.axes) == 2 else "wire"
            raise ValueError(
                f"a {shape}'s charges must be neutral: net charge {net[vector]:.6g} (of "
                f"{scale[vector]:.6g} in absolute value"
                f"{f', vector {vector}' if len(net) > 1 else ''}); the potential of a charged "
                f"periodic {'sheet' if shape == 'slab' else 'line'} grows without bound away "
                "from it")

    def pass_hooks(self, charges: np.ndarray, kernel: GreenKernel) -> PassHooks:
        """What an evaluation of ``charges`` (tree order, ``kernel``'s inputs) adds to the
        passes: :meth:`between_passes` and :meth:`finish`; ValueError for strengths a slab or
        a wire refuses (:meth:`check_strengths`)."""
        strengths = np.reshape(charges, (kernel.n_inputs, -1))
        self.check_strengths(strengths, kernel)
        return PassHooks(
            between=lambda plan: self.between_passes(plan, strengths, kernel),
            after=lambda plan, potential: self.finish(plan, np.atleast_2d(potential), strengths,
                                                      kernel))

    def between_passes(self, plan, strengths: np.ndarray,
                       kernel: GreenKernel) -> dict[str, float]:
        """Copy the real boxes' multipoles to their images and add to the cell's children's
        check potentials what the plan's lattice launch (:meth:`lattice_launch`) leaves out,
        all of it enqueued without waiting for the upward pass (``strengths``: the call's,
        ``(n_inputs, ns)`` in tree order, of ``kernel``'s inputs). Its seconds, as
        ``periodic``.

        What the launch leaves out: each child's far images act with the child's exact charge
        (the launch's operators ignore a density's sum; here that charge, spread evenly over
        the equivalent points, goes through the operators): a far image's field holds each
        child's charge times the smooth remainder ``F``, so a relative error of the densities'
        sums would move every potential by about that much (measured at order 6 with
        densities from M2M, 2000 random charges: the far field's error 2.2e-6 of it, almost
        all of it one constant, before; 1.9e-7 after). And the background of a net charge,
        below."""
        clock = time.perf_counter()
        charges, _ = self.strengths_of(strengths, kernel)
        vectors = len(charges)
        queue: cl.CommandQueue = plan.queue
        if len(self.images):
            copy_rows(queue, plan.buffers["multipole"], *self._copy_rows(queue, vectors))
        #: The children's charges, (children, vectors) (a dipole carries none).
        self._totals = self._child_charges(charges)
        checks = np.einsum("tsi,sv->tvi", self.unit_charge[self.codes], self._totals)
        self._net = self._totals.sum(axis=0)  # (vectors,)
        if self.axes == ALL_AXES:
            # The background's part of a net charge Q, Q |r - c|^2 / (6 V), is not harmonic:
            # no local expansion holds it. Left out of the check potentials here,
            # :meth:`finish` adds it at the targets. (A slab or a wire has none: neutral.)
            checks -= (self._net[None, :, None] * self.check_moment[:, None, :]
                       / (6.0 * self.volume))
        rows = folded_rows(self.children[self.targets], vectors)
        add_rows(queue, plan.buffers["check_down"], rows,
                 checks[self.targets].reshape(len(rows), -1))
        return {"periodic": time.perf_counter() - clock}

    def _copy_rows(self, queue: cl.CommandQueue, vectors: int) -> tuple[cla.Array, cla.Array]:
        """The real rows and the image rows of the multipole buffer for ``vectors`` strength
        vectors, uploaded once."""
        if vectors not in self._copies:
            self._copies[vectors] = tuple(
                cla.to_device(queue, folded_rows(boxes, vectors).astype(np.int64))
                for boxes in (self.originals, self.images))
        return self._copies[vectors]

    def finish(self, plan, outputs: np.ndarray, strengths: np.ndarray,
               kernel: GreenKernel) -> None:
        """Add to ``outputs`` (``(n_outputs, M)`` in tree order, in place) what the passes
        leave out: the tin-foil sum's constant and the background's quadratic potential (and
        its gradient, for a gradient), from the call's ``strengths`` (as
        :meth:`between_passes` takes them), the children's charges the last
        :meth:`between_passes` summed and their densities in ``plan``'s multipole buffer (read
        now, after the passes: the children's densities, given their exact charges).

        The constant is fixed by the sources' second moment ``sum q |x - c|^2`` (a dipole
        ``p``'s is ``2 p . (x - c)``) against the densities' (module docstring). The sum of a
        slab or a wire has neither (neutral, and no constant to fix: it is the plain sum over
        the images, :mod:`fmmloopy.maths.periodic`): nothing is added."""
        if self.axes != ALL_AXES:
            return
        clock = time.perf_counter()
        charges, dipoles = self.strengths_of(strengths, kernel)
        vectors = len(charges)
        child_rows = folded_rows(self.children, vectors)
        densities = np.real(gather_rows(plan.queue, plan.buffers["multipole"], child_rows)
                            ).reshape(len(self.children), vectors, -1)
        densities[~self.sources] = 0.0
        densities += ((self._totals - densities.sum(axis=2)) / densities.shape[2])[:, :, None]
        charge_moment = charges @ self.source_moment
        if dipoles is not None:
            charge_moment = charge_moment + 2.0 * np.einsum("vas,as->v", dipoles,
                                                            self.source_offsets)
        density_moment = np.einsum("cvj,cj->v", densities, self.equivalent_moment)
        constants = np.array([mean_potential_constant(charge, density, self.half_width)
                              for charge, density in zip(charge_moment, density_moment,
                                                         strict=True)])
        per_vector = kernel.n_outputs // kernel.vectors
        background = self._net / (6.0 * self.volume)
        for vector in range(kernel.vectors):
            for number, field in enumerate(kernel.outputs):
                row = outputs[vector * per_vector + number:]
                if field == "potential":
                    row[0] += constants[vector] + background[vector] * self.target_moment
                elif field == "gradient":
                    row[:3] += 2.0 * background[vector] * self.target_offsets
        plan.eval_seconds["periodic"] = (plan.eval_seconds.get("periodic", 0.0)
                                         + time.perf_counter() - clock)
