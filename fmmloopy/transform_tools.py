"""Building blocks for recipes: the few transforms every device recipe for these templates needs.

Each takes and returns a loopy ``TranslationUnit`` and never changes what is computed.
"""

from __future__ import annotations

import loopy as lp

#: A loopy preamble that maps OpenCL's ``sqrt`` onto the LLVM intrinsic. PoCL 3.0 otherwise calls
#: a library ``sqrt``, which keeps LLVM from vectorising the work-group loop (DESIGN.md).
BUILTIN_SQRT_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                         "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrt(x)")


def add_preamble(knl: lp.TranslationUnit, key: str, text: str) -> lp.TranslationUnit:
    """Add a preamble (``#define``, helper function) to the entry kernel, once per key."""
    entry = knl.default_entrypoint
    if any(existing == key for existing, _ in entry.preambles):
        return knl
    return knl.with_kernel(entry.copy(preambles=(*entry.preambles, (key, text))))


def use_builtin_sqrt(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Let the OpenCL compiler inline and vectorise ``sqrt`` (see :data:`BUILTIN_SQRT_PREAMBLE`)."""
    return add_preamble(knl, *BUILTIN_SQRT_PREAMBLE)


def add_build_options(knl: lp.TranslationUnit, *options: str) -> lp.TranslationUnit:
    """Append OpenCL compiler options (e.g. ``-cl-fast-relaxed-math``)."""
    current = list(knl.default_entrypoint.options.build_options or [])
    return lp.set_options(knl, build_options=current + [o for o in options if o not in current])


def spread_over_local_axis(knl: lp.TranslationUnit, loop: str, width: int,
                           ) -> lp.TranslationUnit:
    """Split ``loop`` by ``width`` and map the inner part to ``l.0`` (work-items of a group).

    Instructions outside ``loop`` (the loads of loop bounds in the box loop) are made to run on
    every work-item, as loopy requires once a local axis exists.
    """
    inner = f"{loop}_inner"
    knl = lp.split_iname(knl, loop, width, inner_iname=inner, outer_iname=f"{loop}_outer",
                         inner_tag="l.0")
    return lp.add_inames_to_insn(knl, inner, f"not iname:{inner}")


def parallelize_box_loop(knl: lp.TranslationUnit, axis: int = 0) -> lp.TranslationUnit:
    """One work-group per target box (``itgt_box`` -> ``g.<axis>``)."""
    return lp.tag_inames(knl, {"itgt_box": f"g.{axis}"})
