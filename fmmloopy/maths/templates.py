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

The naming contract above lives here, in one place, and this module is the templates'
interface: import their names from here. It holds the pairwise template; the matvec templates
are in :mod:`fmmloopy.maths.matvec_templates`, the point sets in
:mod:`fmmloopy.maths.point_sets` and what every template kernel gets (language version, options,
assumptions) in :mod:`fmmloopy.maths.template_options`, all re-exported.
"""

from __future__ import annotations

import loopy as lp
import numpy as np
from pymbolic.mapper import IdentityMapper

from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.green import OFFSET_VARIABLES, GreenKernel, is_zero_entry
from fmmloopy.maths.matvec_templates import make_grouped_matvec_kernel, make_matvec_kernel
from fmmloopy.maths.point_sets import (
    SURFACE_SIZE,
    BoxParticles,
    BoxSurface,
    PointCode,
    PointSet,
    particles_for,
    point_code,
)
from fmmloopy.maths.template_options import (
    LANG_VERSION,
    assume,
    finish_template,
    parameters_in_name_order,
)

__all__ = [
    "BoxParticles", "particles_for", "SURFACE_SIZE", "BoxSurface", "PointSet",
    "pairwise_part", "pairwise_role", "green_rule_name", "make_pairwise_kernel",
    "MATVEC_SIZES", "make_matvec_kernel", "make_grouped_matvec_kernel",
    "assume", "parameters_in_name_order",
]

#: The matvec templates' sizes, arguments of every launch (not fixed in the kernel): one kernel
#: serves every order and rank. The grouped layout also takes the row stride of its transposed
#: matrices (:data:`~fmmloopy.maths.layouts.TARGET_STRIDE`).
MATVEC_SIZES = ("n_target_coeffs", "n_source_coeffs")


def _offset(target: PointCode, source: PointCode, axis: int) -> str:
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


#: The rule of an isotropic kernel's ``B`` (its ``A`` is the rule ``green``).
ISOTROPIC_RULE = "green_dyadic"


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
    tgt = point_code(targets, "target", dtype, n_out, value_dtype)
    src = point_code(sources, "source", dtype, n_in, value_dtype)
    offsets = "\n".join(
        f"<> d{axis} = {_offset(tgt, src, axis)}" " {id=offset%d}" % axis for axis in range(3))

    isotropic = green.isotropic_parts

    def terms(o: int) -> str:
        """What output ``o`` adds per pair: the entries times the strengths, or for an
        isotropic kernel ``A f_a + B d_a (d . f)`` (``GreenKernel.isotropic_parts``)."""
        if isotropic is not None:
            vector, a = divmod(o, 3)
            force = [src.value_of(3 * vector + i, n_in) for i in range(3)]
            along = " + ".join(f"d{i} * {force[i]}" for i in range(3))
            return (f"{force[a]} * green(d0, d1, d2) "
                    f"+ {ISOTROPIC_RULE}(d0, d1, d2) * d{a} * ({along})")
        return " + ".join(f"{src.value_of(i, n_in)} * {green_rule_name(o, i)}(d0, d1, d2)"
                          for i in range(n_in) if not is_zero_entry(green.expressions[o][i]))

    def each_output(line: str) -> str:
        return "\n".join(line.format(
            acc=pairwise_part("acc", o), init=pairwise_part("init", o),
            update=pairwise_part("update", o), store=pairwise_part("store", o),
            value=tgt.value_of(o, n_out), terms=terms(o))
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
             if not is_zero_entry(expression)] if isotropic is None else [
        lp.SubstitutionRule(name, OFFSET_VARIABLES, _constants_of(part, value_dtype))
        for name, part in zip(("green", ISOTROPIC_RULE), isotropic, strict=True)]
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
                         lang_version=LANG_VERSION)
    if isinstance(targets, BoxSurface) and n_out > 1:
        # The components' rows (box * n_out + o) are disjoint, which loopy cannot prove.
        knl = lp.add_nosync(knl, "any", "id:store*", "id:store*", bidirectional=True,
                             force=True)
    return finish_template(knl)
