"""The buffers one FMM evaluation shares between its launches, from the KIFMM's steps.

The plan allocates exactly these (:func:`fmmloopy.driver.builder.build_plan`), and the memory
estimate counts them (:mod:`fmmloopy.driver.memory`): one function, so the two cannot drift.
"""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.precompute import matrix_shapes
from fmmloopy.maths.scheme import KIFMM, KifmmScheme


def evaluation_buffer_shapes(expansion: Expansion, ranks: dict[str, int], nboxes: int,
                             nsources: int, ntargets: int, green: GreenKernel | None = None,
                             scheme: KifmmScheme = KIFMM, components: int | None = None
                             ) -> dict[str, tuple[int, ...]]:
    """Name -> shape (``green.value_dtype()``: float64, complex128 for a complex kernel) of
    every per-evaluation buffer: charges, potentials (``(n,
    points)`` for ``green``'s ``n`` input or output components where there are several: dipoles,
    a gradient; several strength vectors are components too, see
    :attr:`~fmmloopy.maths.green.GreenKernel.vectors`), and per box (and vector) every
    expansion and every buffer between factors, as wide as the
    matrices that write them (``ranks`` as
    :meth:`~fmmloopy.maths.precompute.KifmmOperators.ranks` gives them,
    :meth:`~fmmloopy.maths.scheme.KifmmScheme.buffer_widths`)."""
    n_in, n_out = (1, 1) if green is None else (green.n_inputs, green.n_outputs)
    shapes: dict[str, tuple[int, ...]] = {
        "strengths": (n_in, nsources) if n_in > 1 else (nsources,),
        "potential": (n_out, ntargets) if n_out > 1 else (ntargets,)}
    if components is None:  # the densities per surface point: the kernel's, else one
        components = 1 if green is None else green.density_components
    widths = scheme.buffer_widths(expansion.n_e,
                                  matrix_shapes(components * expansion.n_e, ranks), components)
    # Several strength vectors: a box's expansions of each vector in turn (row b * k + v).
    rows = nboxes * (1 if green is None else green.vectors)
    shapes |= {name: (rows, width) for name, width in widths.items()}
    return shapes


#: What a buffer's view for the pairwise steps is called (:func:`surface_views`).
_SURFACE_VIEW = "{}:per_point"


def surface_view_name(name: str, green: GreenKernel) -> str:
    """The buffer a pairwise step of ``green`` binds for expansion ``name``: the expansion
    itself, or for a tensor kernel (densities of several components per surface point) its
    view one row per component (:func:`surface_views`). The per-point buffers are their own."""
    if green.density_components == 1 or name in ("strengths", "potential"):
        return name
    return _SURFACE_VIEW.format(name)


def surface_views(buffers: dict[str, cla.Array], components: int) -> dict[str, cla.Array]:
    """For a tensor kernel's ``components`` densities per surface point, each per-box buffer
    as the pairwise template reads it: a box's expansion (row ``b k + v`` of vector ``v``,
    ``components * n_e`` values, component-major) is ``components`` rows of ``n_e`` (rows
    ``(b k + v) components + c``), the same memory. None for one component."""
    if components == 1:
        return {}
    views = {}
    for name, array in buffers.items():
        if name in ("strengths", "potential") or array.shape[1] % components:
            continue
        views[_SURFACE_VIEW.format(name)] = array.reshape(
            (array.shape[0] * components, array.shape[1] // components))
    return views


#: What a complex buffer's view as real numbers is called (:func:`real_views`).
_REAL_VIEW = "{}:real"


def real_view_name(name: str) -> str:
    """The buffer a matvec launch of a complex kernel binds for buffer ``name``: its real
    view (:func:`real_views`)."""
    return _REAL_VIEW.format(name)


def real_views(buffers: dict[str, cla.Array]) -> dict[str, cla.Array]:
    """Each complex per-box buffer (rows of a box's expansion or factor values) as real numbers:
    a row of ``w`` complex values is ``2 w`` real ones, real and imaginary parts alternating,
    the same memory (what the real matvec kernels read and write for a complex kernel:
    :mod:`fmmloopy.maths.complex_blocks`)."""
    views = {}
    for name, array in buffers.items():
        if (name in ("strengths", "potential") or ":" in name or array.ndim != 2
                or array.dtype.kind != "c"):
            continue
        views[real_view_name(name)] = cla.Array(
            array.queue, (array.shape[0], 2 * array.shape[1]),
            np.empty(0, array.dtype).real.dtype, data=array.base_data, offset=array.offset)
    return views


def base_buffer(name: str) -> str:
    """The buffer whose memory buffer ``name`` is (itself, or the buffer a view of
    :func:`surface_views` or :func:`real_views` reads)."""
    return name.split(":", 1)[0]


def allocations(shapes: dict[str, tuple[int, ...]], scheme: KifmmScheme = KIFMM
                ) -> dict[str, int]:
    """Allocation -> its values, for the buffers ``shapes`` (:func:`evaluation_buffer_shapes`):
    a buffer alone is its own allocation; buffers that share one
    (:meth:`~fmmloopy.maths.scheme.KifmmScheme.buffer_pools`) get the largest of them."""
    pools = scheme.buffer_pools()
    sizes: dict[str, int] = {}
    for name, shape in shapes.items():
        allocation = pools.get(name, name)
        sizes[allocation] = max(sizes.get(allocation, 0), math.prod(shape))
    return sizes
