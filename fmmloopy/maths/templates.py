"""The two math-level loopy templates every FMM operator is specialised from.

* :func:`make_pairwise_kernel` -- for each target box, for each source box in its CSR list, for each
  target point, for each source point: accumulate ``G(target - source) * strength``.
* :func:`make_matvec_kernel` -- for each target box, for each listed source box: add
  ``level_scales[level(target box)] * matrices[matrix index] @ source_vectors[source box]``.

Both are *math only*: no hardware tags, no device knowledge. Recipes (``transforms/``) tune them.

Loop indices (inames) are named after what they index, so recipes can refer to them:
``itgt_box`` (position in ``target_boxes``), ``isrc_box`` (CSR entry of the source list), ``itgt``
/ ``isrc`` (point inside a box) and, in the matvec, ``iexp_tgt`` / ``iexp_src`` (expansion
coefficient). The instructions that load loop bounds carry the tag ``bounds`` and the final store
the id ``store``.

Loops summed over (``isrc_box``, ``isrc``, ``iexp_src``) or kept in order (``igroup`` of the
grouped matvec) must not run in parallel; :mod:`fmmloopy.tuning.races` declares them
(:data:`fmmloopy.tuning.races.TEMPLATE_LOOPS`) and checks recipes against them.

Target loops over particles run to ``max_box_targets`` (the largest box) with a guard, so that a
recipe may map them to hardware axes, which need bounds that do not come from data.

Why one module of some 340 lines: the two templates share the CSR loop header, the point sets
and the naming contract above, which recipes and :mod:`fmmloopy.tuning.races` rely on; split, the
contract would live in two places.
"""

from __future__ import annotations

from dataclasses import dataclass

import islpy as isl
import loopy as lp
import numpy as np
from pymbolic.mapper import IdentityMapper

from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.green import OFFSET_VARIABLES, GreenKernel, is_zero_entry
from fmmloopy.maths.layouts import TARGET_STRIDE

_LANG_VERSION = (2018, 2)


# {{{ point sets

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
class _PointCode:
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


def _point_code(points: PointSet, role: str, dtype: np.dtype, components: int = 1,
                value_dtype: np.dtype | None = None) -> _PointCode:
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
            return _PointCode(loads, domain, guard, f"box_centres[{{axis}}, {box}]", value,
                              args, relative=stored)
        return _PointCode(loads, domain, guard, stored, value, args)
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
        return _PointCode(loads, f"0 <= {index} < {SURFACE_SIZE}", None,
                          f"box_centres[{{axis}}, {box}]", value, args,
                          relative=f"{half_width} * {role}_surface[{{axis}}, {index}]",
                          leading_component=False, surface=True)
    raise TypeError(f"unknown point set {points!r}")

# }}}


def _offset(target: _PointCode, source: _PointCode, axis: int) -> str:
    """``target - source`` along ``axis``, summed left to right as ``target base - source base
    + target relative - source relative``: a surface point's offset from a particle is its box
    centre's offset plus the surface's, so the rounding of ``centre + half_width * unit`` (of
    the centre's size, far above the offset's in deep boxes) never enters; the two bases lie
    close together, and their difference is exact or rounded relative to itself. Particles
    stored relative to their leaf's centre take the same sum: two leaves' centres, then the
    stored parts (a point meets itself at exactly 0). Two surfaces
    (no operator of the FMM) are each summed first, so that a surface point meets itself at
    exactly 0 offset where the compiler rounds both sides alike; one that contracts only one
    side into a fused multiply-add (NVIDIA's OpenCL under the cpu recipe) leaves its rounding
    residue, so two surfaces must not share points (the FMM's never do)."""
    if target.surface and source.surface:
        return (f"{target.base.format(axis=axis)} + {target.relative.format(axis=axis)} - "
                f"({source.base.format(axis=axis)} + {source.relative.format(axis=axis)})")
    terms = f"{target.base.format(axis=axis)} - {source.base.format(axis=axis)}"
    if target.relative:
        terms += f" + {target.relative.format(axis=axis)}"
    if source.relative:
        terms += f" - {source.relative.format(axis=axis)}"
    return terms


class _TypedConstants(IdentityMapper):
    """Floating-point constants as numbers of one precision (float32 kernels: a float64
    constant would promote a float vector, which OpenCL C refuses)."""

    def __init__(self, real: type, complex_: type):
        super().__init__()
        self.real, self.complex = real, complex_

    def map_constant(self, expr):
        if isinstance(expr, complex | np.complexfloating):
            return self.complex(expr)
        if isinstance(expr, float | np.floating):
            return self.real(expr)
        return expr


def _constants_of(expression, value_dtype: np.dtype):
    """``expression`` with its floating-point constants in ``value_dtype``'s precision
    (unchanged for float64 and complex128)."""
    if np.dtype(value_dtype) in (np.dtype(np.float64), np.dtype(np.complex128)):
        return expression
    return _TypedConstants(np.float32, np.complex64)(expression)


def _merge_args(args) -> list[lp.KernelArgument]:
    """Drop repeated arguments (e.g. ``box_centres`` shared by two surfaces), keep the order."""
    merged: dict[str, lp.KernelArgument] = {}
    for arg in args:
        merged.setdefault(arg.name, arg)
    return list(merged.values())


def pairwise_part(kind: str, component: int) -> str:
    """The name of a part of the pairwise template for output ``component``: ``acc`` (the
    accumulator), instruction ids ``init``, ``update``, ``store``; ``<part>_<component>`` for
    components after the first (a gradient's, say)."""
    return kind if component == 0 else f"{kind}_{component}"


def pairwise_role(name: str) -> str | None:
    """``"acc"``, ``"init"``, ``"update"`` or ``"store"`` for a part named by
    :func:`pairwise_part` (of any component), else None."""
    kind, _, component = name.partition("_")
    if kind in ("acc", "init", "update", "store") and (not component or component.isdigit()):
        return kind
    return None


def green_rule_name(output: int, source: int) -> str:
    """The substitution rule of kernel entry (``output``, ``source``): ``green`` for the first,
    ``green_<output>_<source>`` for the others."""
    return "green" if output == source == 0 else f"green_{output}_{source}"


def make_pairwise_kernel(name: str, green: GreenKernel, targets: PointSet, sources: PointSet,
                         *, accumulate: bool = False,
                         dtype: np.dtype = np.float64) -> lp.TranslationUnit:
    """The pairwise-sum template: ``result(t) (+)= sum_{s in list(box(t))} G(t - s) strength(s)``.

    The target boxes must not share targets (for particles: leaves, or boxes of one level), so
    that parallel target boxes never write the same output.

    ``target_boxes[ntarget_boxes]`` names the boxes whose targets are computed;
    ``source_box_starts[ntarget_boxes + 1]`` / ``source_box_lists`` is the CSR source list of each.
    With ``accumulate`` the sum is added to ``result``; otherwise it overwrites it. Coordinates
    are ``dtype``; strengths and results ``green.value_dtype(dtype)`` (complex for Helmholtz).

    A kernel of several outputs or inputs (``green.expressions``, a gradient or dipoles) sums
    ``result[o, t] (+)= sum_s sum_i G_oi(t - s) strengths[i, s]`` with one accumulator per
    output (:func:`pairwise_part`) and one rule per entry (:func:`green_rule_name`), all in
    the same source loop (the offset and the common subexpressions computed once per pair).
    Over several strength vectors (``green.vectors``) the components are the vectors' in turn
    and the zero entries between vectors are left out: each pair's entries are computed once
    and applied to every vector.
    """
    dtype = np.dtype(dtype)
    n_out, n_in = green.n_outputs, green.n_inputs
    value_dtype = green.value_dtype(dtype)
    tgt = _point_code(targets, "target", dtype, n_out, value_dtype)
    src = _point_code(sources, "source", dtype, n_in, value_dtype)
    offsets = "\n".join(
        f"<> d{axis} = {_offset(tgt, src, axis)}" " {id=offset%d}" % axis for axis in range(3))

    def each_output(line: str) -> str:
        return "\n".join(line.format(
            acc=pairwise_part("acc", o), init=pairwise_part("init", o),
            update=pairwise_part("update", o), store=pairwise_part("store", o),
            value=tgt.value_of(o, n_out),
            terms=" + ".join(f"{src.value_of(i, n_in)} * {green_rule_name(o, i)}(d0, d1, d2)"
                             for i in range(n_in)
                             if not is_zero_entry(green.expressions[o][i])))
            for o in range(n_out))
    store = "{value} + {acc}" if accumulate else "{acc}"
    guard_open, guard_close = (f"if {tgt.guard}", "end") if tgt.guard else ("", "")
    instructions = f"""
    for itgt_box
      <> tgt_box = target_boxes[itgt_box] {{tags=bounds}}
      {tgt.loads[0]} {{tags=bounds}}
      {tgt.loads[1] + ' {tags=bounds}' if len(tgt.loads) > 1 else ''}
      <> isrc_box_start = source_box_starts[itgt_box] {{tags=bounds}}
      <> isrc_box_end = source_box_starts[itgt_box + 1] {{tags=bounds}}
      for itgt
        {guard_open}
          {each_output("<> {acc} = 0 {{id={init}}}")}
          for isrc_box
            <> src_box = source_box_lists[isrc_box] {{tags=bounds}}
            {src.loads[0]} {{tags=bounds}}
            {src.loads[1] + ' {tags=bounds}' if len(src.loads) > 1 else ''}
            for isrc
              {offsets}
              {each_output("{acc} = {acc} + {terms} {{id={update}, dep={init}:offset*}}")}
            end
          end
          {each_output("{value} = " + store + " {{id={store}, dep={update}}}")}
        {guard_close}
      end
    end
    """
    rules = [lp.SubstitutionRule(green_rule_name(o, i), OFFSET_VARIABLES,
                                 _constants_of(expression, value_dtype))
             for o, row in enumerate(green.expressions) for i, expression in enumerate(row)
             if not is_zero_entry(expression)]
    domains = [
        f"{{[itgt_box, itgt]: 0 <= itgt_box < ntarget_boxes and {tgt.domain}}}",
        "{[isrc_box]: isrc_box_start <= isrc_box < isrc_box_end}",
        f"{{[isrc]: {src.domain}}}",
    ]
    args = _merge_args((
        lp.GlobalArg("target_boxes", INDEX_DTYPE, "ntarget_boxes"),
        lp.GlobalArg("source_box_starts", INDEX_DTYPE, "ntarget_boxes + 1"),
        lp.GlobalArg("source_box_lists", INDEX_DTYPE, "nsource_list_entries"),
        *tgt.args, *src.args,
        lp.ValueArg("nboxes, ntarget_boxes, nsource_list_entries", INDEX_DTYPE),
    ))
    knl = lp.make_kernel(domains, [instructions, *rules], args, name=name,
                         lang_version=_LANG_VERSION)
    if isinstance(targets, BoxSurface) and n_out > 1:
        # The components' rows (box * n_out + o) are disjoint, which loopy cannot prove.
        knl = lp.add_nosync(knl, "any", "id:store*", "id:store*", bidirectional=True,
                             force=True)
    return _finish(knl)


#: The matvec templates' sizes, arguments of every launch (not fixed in the kernel): one kernel
#: serves every order and rank. The grouped layout also takes the row stride of its transposed
#: matrices (:data:`~fmmloopy.maths.layouts.TARGET_STRIDE`).
MATVEC_SIZES = ("n_target_coeffs", "n_source_coeffs")


def make_matvec_kernel(name: str, *, accumulate: bool = False, dtype: np.dtype = np.float64,
                       value_dtype: np.dtype | None = None) -> lp.TranslationUnit:
    """The batched-matvec template over a CSR box list.

    ``target_vectors[t] (+)= level_scales[box_levels[t]]
    * sum_{e in list(t)} matrices[matrix_indices[e]] @ source_vectors[source_box_lists[e]]``
    for every ``t`` in ``target_boxes``. The matrices are ``n_target_coeffs x n_source_coeffs``,
    both launch arguments (:data:`MATVEC_SIZES`). The level scales are ``dtype``; matrices and
    vectors ``value_dtype`` (default ``dtype``; complex for a complex kernel).
    """
    dtype = np.dtype(dtype)
    value_dtype = dtype if value_dtype is None else np.dtype(value_dtype)
    store = "target_vectors[tgt_box, iexp_tgt] + scale * acc" if accumulate else "scale * acc"
    instructions = f"""
    for itgt_box
      <> tgt_box = target_boxes[itgt_box] {{tags=bounds}}
      <> isrc_box_start = source_box_starts[itgt_box] {{tags=bounds}}
      <> isrc_box_end = source_box_starts[itgt_box + 1] {{tags=bounds}}
      <> scale = level_scales[box_levels[tgt_box]]
      for iexp_tgt
        <> acc = 0 {{id=init}}
        for isrc_box
          <> src_box = source_box_lists[isrc_box] {{tags=bounds}}
          <> imatrix = matrix_indices[isrc_box] {{tags=bounds}}
          for iexp_src
            acc = acc + matrices[imatrix, iexp_tgt, iexp_src] * source_vectors[src_box, iexp_src] \
                {{id=update, dep=init}}
          end
        end
        target_vectors[tgt_box, iexp_tgt] = {store} {{id=store, dep=update}}
      end
    end
    """
    domains = [
        "{[itgt_box, iexp_tgt]: 0 <= itgt_box < ntarget_boxes "
        "and 0 <= iexp_tgt < n_target_coeffs}",
        "{[isrc_box]: isrc_box_start <= isrc_box < isrc_box_end}",
        "{[iexp_src]: 0 <= iexp_src < n_source_coeffs}",
    ]
    args = [
        lp.GlobalArg("target_boxes", INDEX_DTYPE, "ntarget_boxes"),
        lp.GlobalArg("source_box_starts", INDEX_DTYPE, "ntarget_boxes + 1"),
        lp.GlobalArg("source_box_lists", INDEX_DTYPE, "nsource_list_entries"),
        lp.GlobalArg("matrix_indices", INDEX_DTYPE, "nsource_list_entries"),
        lp.GlobalArg("matrices", value_dtype, "nmatrices, n_target_coeffs, n_source_coeffs"),
        *_expansion_args(dtype, value_dtype),
        lp.ValueArg("nboxes, ntarget_boxes, nsource_list_entries, nmatrices, nlevels, "
                    "n_target_coeffs, n_source_coeffs", INDEX_DTYPE),
    ]
    knl = lp.make_kernel(domains, instructions, args, name=name, lang_version=_LANG_VERSION)
    return _finish(knl, "n_target_coeffs >= 1 and n_source_coeffs >= 1")


def make_grouped_matvec_kernel(name: str, *, pair_tile: int = 1, dtype: np.dtype = np.float64,
                               value_dtype: np.dtype | None = None) -> lp.TranslationUnit:
    """The batched-matvec template over (target, source) pairs grouped by matrix.

    The same sum as :func:`make_matvec_kernel` (always accumulating), walked in another order:
    target boxes come in blocks; each block's pairs are grouped by matrix, so one matrix serves
    every pair of its group (a small matrix-matrix product: "matrix-major" M2L)::

        for each block, for each group of the block (matrix m), for each pair (t, s) of the group:
            target_vectors[t] += level_scales[box_levels[t]] * matrices[m] @ source_vectors[s]

    Matrices are stored transposed, ``transposed_matrices[m, iexp_src, iexp_tgt]``, so the
    coefficients of one output run contiguously, each row ``n_target_stride`` long
    (:data:`TARGET_STRIDE`, at least ``n_target_coeffs``, the entries past it zero): the
    accumulators run over the whole stride, so that a recipe may cut it into whole vectors, and
    only the first ``n_target_coeffs`` are stored. A group holds each target box at most once
    and blocks hold disjoint target boxes, so blocks may run in parallel and the pairs of a
    group too; groups of one block update the same boxes and must stay in order (or be
    separated by a barrier). See :mod:`fmmloopy.maths.layouts` for how the lists are built.

    A group's pairs are walked in tiles of ``pair_tile`` (loop ``ipair_tile``, then ``ipair``
    inside the tile, of fixed length so that a recipe may unroll it into a register tile); the
    last tile repeats the group's last pair and skips its stores. Dtypes as in
    :func:`make_matvec_kernel`.
    """
    dtype = np.dtype(dtype)
    value_dtype = dtype if value_dtype is None else np.dtype(value_dtype)
    instructions = f"""
    for iblock
      <> igroup_start = block_group_starts[iblock] {{tags=bounds}}
      <> igroup_end = block_group_starts[iblock + 1] {{tags=bounds}}
      for igroup
        <> imatrix = group_matrices[igroup] {{tags=bounds}}
        <> ipair_start = group_pair_starts[igroup] {{tags=bounds}}
        <> group_size = group_pair_starts[igroup + 1] - ipair_start {{tags=bounds}}
        <> group_tiles = (group_size + {pair_tile - 1}) // {pair_tile} {{tags=bounds}}
        for ipair_tile
          for ipair
            <> pair = ipair_tile * {pair_tile} + ipair {{tags=bounds}}
            <> pair_used = ipair_start + (pair if pair < group_size else group_size - 1) \
                {{tags=bounds}}
            <> tgt_box = pair_targets[pair_used] {{tags=bounds}}
            <> src_box = pair_sources[pair_used] {{tags=bounds}}
            <> scale = level_scales[box_levels[tgt_box]] {{tags=bounds}}
            for iexp_tgt
              <> acc = 0 {{id=init}}
              for iexp_src
                acc = acc + transposed_matrices[imatrix, iexp_src, iexp_tgt] \
                    * source_vectors[src_box, iexp_src] {{id=update, dep=init}}
              end
              if pair < group_size and iexp_tgt < n_target_coeffs
                target_vectors[tgt_box, iexp_tgt] = target_vectors[tgt_box, iexp_tgt] \
                    + scale * acc {{id=store, dep=update}}
              end
            end
          end
        end
      end
    end
    """
    domains = [
        "{[iblock]: 0 <= iblock < nblocks}",
        "{[igroup]: igroup_start <= igroup < igroup_end}",
        "{[ipair_tile]: 0 <= ipair_tile < group_tiles}",
        f"{{[ipair]: 0 <= ipair < {pair_tile}}}",
        f"{{[iexp_tgt]: 0 <= iexp_tgt < {TARGET_STRIDE}}}",
        "{[iexp_src]: 0 <= iexp_src < n_source_coeffs}",
    ]
    args = [
        lp.GlobalArg("block_group_starts", INDEX_DTYPE, "nblocks + 1"),
        lp.GlobalArg("group_matrices", INDEX_DTYPE, "ngroups"),
        lp.GlobalArg("group_pair_starts", INDEX_DTYPE, "ngroups + 1"),
        lp.GlobalArg("pair_targets", INDEX_DTYPE, "npairs"),
        lp.GlobalArg("pair_sources", INDEX_DTYPE, "npairs"),
        lp.GlobalArg("transposed_matrices", value_dtype,
                     f"nmatrices, n_source_coeffs, {TARGET_STRIDE}"),
        *_expansion_args(dtype, value_dtype),
        lp.ValueArg("nblocks, ngroups, npairs, nmatrices, nboxes, nlevels, "
                    f"n_target_coeffs, n_source_coeffs, {TARGET_STRIDE}", INDEX_DTYPE),
    ]
    knl = lp.make_kernel(domains, instructions, args, name=name, lang_version=_LANG_VERSION)
    return _finish(knl, f"n_source_coeffs >= 1 and {TARGET_STRIDE} >= 1")


def _expansion_args(dtype: np.dtype, value_dtype: np.dtype) -> list:
    """The arguments both matvec layouts share: per-box expansion vectors and level scales."""
    return [
        lp.GlobalArg("source_vectors", value_dtype, "nboxes, n_source_coeffs"),
        lp.GlobalArg("target_vectors", value_dtype, "nboxes, n_target_coeffs"),
        lp.GlobalArg("box_levels", INDEX_DTYPE, "nboxes"),
        lp.GlobalArg("level_scales", dtype, "nlevels"),
    ]


def _finish(knl: lp.TranslationUnit, assumptions: str | None = None) -> lp.TranslationUnit:
    """Options shared by every template: outputs returned as a dict; ``assumptions`` on the
    parameters (:func:`assume`).

    No write-race warning is silenced here: the final store's races through the box loop are
    benign (each target box is listed once), but a recipe that puts a summed-over loop on a
    parallel axis races at the same store. :mod:`fmmloopy.tuning.races` tells the two apart on the
    transformed kernel and silences ``write_race(<id>)`` only where it proves the race benign;
    the loops the templates sum over or keep in order are declared there
    (:data:`fmmloopy.tuning.races.TEMPLATE_LOOPS`).
    """
    knl = parameters_in_name_order(knl)
    if assumptions:
        knl = assume(knl, assumptions)
    return lp.set_options(knl, return_dict=True)


def assume(knl: lp.TranslationUnit, assumptions: str | isl.BasicSet) -> lp.TranslationUnit:
    """``lp.assume(knl, assumptions)`` with the parameters kept in name order
    (:func:`parameters_in_name_order`; loopy writes them in the order of a set). A set (not
    text) may name parameters the loop domains do not (a size used in a guard alone)."""
    return parameters_in_name_order(lp.assume(knl, assumptions))


def parameters_in_name_order(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """The kernel with the parameters of its assumptions in name order.

    ``lp.make_kernel`` and ``lp.assume`` take them from a set of names, so their order, and with
    it the kernel's hash, would follow Python's per-process string hashing: loopy's persistent
    caches (code generation, preprocessing, scheduling), keyed by that hash, would then miss in
    every new process."""
    kernel = knl.default_entrypoint
    assumptions = kernel.assumptions
    names = sorted(assumptions.get_var_dict(isl.dim_type.param))
    model = isl.Space.create_from_names(assumptions.get_ctx(), set=[], params=names)
    return knl.with_kernel(kernel.copy(assumptions=assumptions.align_params(model)))
