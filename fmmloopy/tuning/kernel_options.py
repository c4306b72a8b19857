"""What a recipe attaches to a kernel besides its loops: preambles (OpenCL's ``sqrt`` mapped onto
the compiler's intrinsic), OpenCL build options and silenced loopy warnings.

Each takes and returns a loopy ``TranslationUnit`` and never changes what is computed; recipes
import them from :mod:`fmmloopy.tuning.tools`.
"""

from __future__ import annotations

import loopy as lp
import numpy as np

#: A loopy preamble that maps OpenCL's ``sqrt`` onto the LLVM intrinsic. PoCL 3.0 otherwise calls
#: a library ``sqrt``, which keeps LLVM from vectorising the work-group loop (docs/recipes.md).
BUILTIN_SQRT_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                         "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrt(x)")
#: The same for kernels in float: the float intrinsic (``__builtin_sqrt`` would take every float
#: to double and back, and halve the lanes of every vector that holds it).
BUILTIN_SQRTF_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                          "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrtf(x)")

#: Arguments whose dtype is a pairwise kernel's coordinate precision.
_COORDINATE_ARGUMENTS = ("targets", "sources", "target_surface", "source_surface")


def add_preamble(knl: lp.TranslationUnit, key: str, text: str) -> lp.TranslationUnit:
    """Add a preamble (``#define``, helper function) to the entry kernel, once per key."""
    entry = knl.default_entrypoint
    if any(existing == key for existing, _ in entry.preambles):
        return knl
    return knl.with_kernel(entry.copy(preambles=(*entry.preambles, (key, text))))


def is_single_precision(knl: lp.TranslationUnit) -> bool:
    """Whether a pairwise kernel's coordinates are float32 (False for a kernel without them)."""
    arguments = knl.default_entrypoint.arg_dict
    return any(arguments[name].dtype.numpy_dtype == np.float32
               for name in _COORDINATE_ARGUMENTS if name in arguments)


def use_builtin_sqrt(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Let the OpenCL compiler inline and vectorise ``sqrt`` (see :data:`BUILTIN_SQRT_PREAMBLE`;
    the float intrinsic in a float32 kernel, :data:`BUILTIN_SQRTF_PREAMBLE`)."""
    return add_preamble(knl, *(BUILTIN_SQRTF_PREAMBLE if is_single_precision(knl)
                               else BUILTIN_SQRT_PREAMBLE))


def add_build_options(knl: lp.TranslationUnit, *options: str) -> lp.TranslationUnit:
    """Append OpenCL compiler options (e.g. ``-cl-fast-relaxed-math``)."""
    current = list(knl.default_entrypoint.options.build_options or [])
    return lp.set_options(knl, build_options=current + [o for o in options if o not in current])


def silence_warnings(knl: lp.TranslationUnit, *names: str) -> lp.TranslationUnit:
    """Silence loopy warnings by name (e.g. ``v1_scheduler_fallback``, which loopy raises for
    any kernel with ``vec`` or ``ilp`` loops: they are scheduled by its older scheduler)."""
    entry = knl.default_entrypoint
    return knl.with_kernel(entry.copy(
        silenced_warnings=frozenset(entry.silenced_warnings) | set(names)))
