"""The point sets a pairwise template sums between: particles stored sorted by box
(:class:`BoxParticles`) or points computed on each box's surface (:class:`BoxSurface`), and
their description in loopy text (:func:`point_code`).

The templates (:mod:`fmmloopy.maths.templates`, which re-exports the public names) splice these
fragments into their loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import loopy as lp
import numpy as np

from fmmloopy.maths.geometry import INDEX_DTYPE


@dataclass(frozen=True)
class BoxParticles:
    """Points stored sorted by box: box ``b`` owns ``box_<role>_counts[b]`` points from
    ``box_<role>_starts[b]`` on (leaf or not: a box's descendants are contiguous).

    Coordinates are ``<role>s[3, n]`` (structure of arrays); values (strengths of sources, results
    of targets) live in a flat array of the same order.

    ``relative``: each point is stored relative to the centre of the box that lists it (a point
    is ``box_centres[:, b] + <role>s[:, i]``; every box listed with particles must then be the
    leaf that holds them). Float32 kernels store points so (:func:`particles_for`): a stored
    coordinate is then rounded relative to its leaf's width, not to the point's distance from
    the origin, and two near points' offset ``(c_t - c_s) + (x_t - x_s)`` keeps that accuracy.
    """

    relative: bool = False
    kind = "particles"


def particles_for(dtype) -> BoxParticles:
    """The particle point set of kernels whose coordinates are ``dtype``: relative to their
    leaf's centre below float64 (float32 has 24 bits: the absolute coordinates of 10^6 points
    would round each near pair's offset by ``u |x|``, 1e-4 of the potential), absolute in
    float64."""
    return BoxParticles(relative=np.dtype(dtype) != np.dtype(np.float64))


#: The pairwise template's number of points per box surface, a launch argument (not fixed in
#: the kernel): one kernel serves every order.
SURFACE_SIZE = "n_surface"


@dataclass(frozen=True)
class BoxSurface:
    """``npoints`` points per box, computed, not stored: ``centre + half_width * unit_surface``.

    ``<role>_surface[3, npoints]`` is the template in units of the box half-width (the relative
    radius of an equivalent or check surface is folded into it); values are ``[nboxes, npoints]``.
    The kernel takes ``npoints`` as its argument :data:`SURFACE_SIZE`: ``npoints`` here is what
    the references (:mod:`fmmloopy.maths.reference`) compute with.
    """

    npoints: int
    kind = "surface"


PointSet = BoxParticles | BoxSurface


@dataclass(frozen=True)
class PointCode:
    """Loopy text fragments that describe one side (target or source) of a pairwise sum."""

    loads: tuple[str, ...]
    domain: str
    guard: str | None
    #: The point's coordinate: ``base + relative`` (a surface: ``centre + half_width * unit``;
    #: a particle: its stored coordinate, no relative part, or its leaf's centre plus its
    #: stored coordinate, :attr:`BoxParticles.relative`); both contain ``"{axis}"``.
    base: str
    value: str  # the array element holding this point's strength or result; "{component}"
    args: tuple[lp.KernelArgument, ...]
    relative: str | None = None

    #: Whether the point is on a computed surface (else a stored particle).
    surface: bool = False

    #: Whether ``value`` takes the component as a leading index (``"{component}"`` is then
    #: ``"c, "``, or nothing for one component) rather than as a number in an expression.
    leading_component: bool = True

    def value_of(self, component: int, components: int) -> str:
        """The element of value ``component`` (of ``components`` per point)."""
        if not self.leading_component:
            return self.value.format(component=component)
        return self.value.format(component=f"{component}, " if components > 1 else "")


def point_code(points: PointSet, role: str, dtype: np.dtype, components: int = 1,
                value_dtype: np.dtype | None = None) -> PointCode:
    """Describe ``points`` in loopy text for the role ``"target"`` or ``"source"``, with
    ``components`` values per point (particles: ``values[component, point]``; surfaces:
    ``values[box * components + component, point]``);
    coordinates are ``dtype``, values ``value_dtype`` (complex for a complex kernel)."""
    value_dtype = dtype if value_dtype is None else value_dtype
    short = {"target": "tgt", "source": "src"}[role]
    box, index = f"{short}_box", f"i{short}"
    if isinstance(points, BoxParticles):
        values = "result" if role == "target" else "strengths"
        start, count = f"i{short}_start", f"n{short}"
        loads = (f"<> {start} = box_{role}_starts[{box}]",
                 f"<> {count} = box_{role}_counts[{box}]")
        shape = f"{components}, n{role}s" if components > 1 else f"n{role}s"
        args = (lp.GlobalArg(f"{role}s", dtype, f"3, n{role}s"),
                lp.GlobalArg(f"box_{role}_starts", INDEX_DTYPE, "nboxes"),
                lp.GlobalArg(f"box_{role}_counts", INDEX_DTYPE, "nboxes"),
                lp.GlobalArg(values, value_dtype, shape),
                lp.ValueArg(f"n{role}s", INDEX_DTYPE))
        if role == "target":
            # Padded to the largest box so the loop may become a hardware axis.
            domain, guard = f"0 <= {index} < max_box_targets", f"{index} < {count}"
            args += (lp.ValueArg("max_box_targets", INDEX_DTYPE),)
        else:
            domain, guard = f"0 <= {index} < {count}", None
        stored = f"{role}s[{{axis}}, {start} + {index}]"
        value = f"{values}[{{component}}{start} + {index}]"
        if points.relative:
            args += (lp.GlobalArg("box_centres", dtype, "3, nboxes"),)
            return PointCode(loads, domain, guard, f"box_centres[{{axis}}, {box}]", value,
                              args, relative=stored)
        return PointCode(loads, domain, guard, stored, value, args)
    if isinstance(points, BoxSurface):
        values = "result" if role == "target" else "strengths"
        half_width = f"{short}_half_width"
        # Several components (strength vectors): row box * components + component, so that a
        # box's rows are those of the matvec's folded boxes (fold_vectors).
        rows = f" * {components}" if components > 1 else ""
        loads = (f"<> {half_width} = level_half_widths[box_levels[{box}]]",)
        args = (lp.GlobalArg(f"{role}_surface", dtype, f"3, {SURFACE_SIZE}"),
                lp.GlobalArg("box_centres", dtype, "3, nboxes"),
                lp.GlobalArg("box_levels", INDEX_DTYPE, "nboxes"),
                lp.GlobalArg("level_half_widths", dtype, "nlevels"),
                lp.GlobalArg(values, value_dtype, f"nboxes{rows}, {SURFACE_SIZE}"),
                lp.ValueArg(f"nlevels, {SURFACE_SIZE}", INDEX_DTYPE))
        value = (f"{values}[{box} * {components} + {{component}}, {index}]" if components > 1
                 else f"{values}[{box}, {index}]")
        return PointCode(loads, f"0 <= {index} < {SURFACE_SIZE}", None,
                          f"box_centres[{{axis}}, {box}]", value, args,
                          relative=f"{half_width} * {role}_surface[{{axis}}, {index}]",
                          leading_component=False, surface=True)
    raise TypeError(f"unknown point set {points!r}")
