"""The FMM operators as specialisations of the two templates in :mod:`fmmloopy.maths.templates`.

An :class:`OperatorSpec` says which template an operator is, which point sets (pairwise) it sums
between, which box list it walks and what matrices (matvec) it applies; :func:`math_kernel`
builds its math-level (untransformed) loopy kernel.

============ ========== ======================= =========================== =============
operator     template   targets                 sources                     box list
============ ========== ======================= =========================== =============
``p2p``      pairwise   particles               particles                   U
``p2m``      pairwise   upward check surface    particles                   the box itself
``p2l``      pairwise   downward check surface  particles                   X
``m2p``      pairwise   particles               upward equivalent surface   W
``l2p``      pairwise   particles               downward equivalent surface the box itself
``m2m``      matvec     parent's multipole      children's multipoles       children
``l2l``      matvec     child's local           parent's local              parent
``m2l``      matvec     compressed check        compressed multipoles       V
``m2l_...``  matvec     compressed or check     multipole or compressed     the box itself
``c2e``      matvec     equivalent density      check potential (a factor)  the box itself
============ ========== ======================= =========================== =============

M2L is SVD-compressed (:func:`fmmloopy.maths.m2l_compression.m2l_bases`): ``m2l_compress`` takes
each source box's multipole to ``k`` coefficients, ``m2l`` applies the ``k x k`` core of each V
pair's transfer vector, ``m2l_expand`` takes each target box's sum back to its ``n_e``-point
downward check potential.

Every operator adds into its output. Matvec operators can walk their list in either layout of
:mod:`fmmloopy.maths.layouts` (target-major, or grouped by matrix); the recipe chooses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import loopy as lp
import numpy as np

from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.layouts import TARGET_MAJOR, Grouped, ListLayout
from fmmloopy.maths.reference import (
    matvec_magnitudes,
    matvec_reference,
    pairwise_magnitudes,
    pairwise_reference,
)
from fmmloopy.maths.templates import (
    MATVEC_SIZES,
    SURFACE_SIZE,
    BoxSurface,
    PointSet,
    make_grouped_matvec_kernel,
    make_matvec_kernel,
    make_pairwise_kernel,
    particles_for,
)

PAIRWISE = "pairwise"
MATVEC = "matvec"
#: The kernel name of the matvec template in the grouped layout (:data:`MATVEC` in the
#: target-major one).
GROUPED_MATVEC = "grouped_matvec"

PARTICLES = "particles"
SURFACE = "surface"


@dataclass(frozen=True)
class OperatorSpec:
    """One operator: its template, what it sums between, and the box list it walks."""

    name: str
    template: str
    box_list: str  # "u", "v", "w", "x", "self", "children" or "parent"
    summary: str
    targets: str | None = None  # PARTICLES or SURFACE (pairwise only)
    sources: str | None = None

    def point_sets(self, n_surface: int | None, dtype=np.float64) -> tuple[PointSet, PointSet]:
        """The template's point sets for coordinates of ``dtype`` (particles:
        :func:`~fmmloopy.maths.templates.particles_for`); surfaces need their size
        ``n_surface``."""
        def make(kind: str) -> PointSet:
            if kind == PARTICLES:
                return particles_for(dtype)
            if n_surface is None:
                raise ValueError(f"operator {self.name!r} needs the size 'n_surface'")
            return BoxSurface(n_surface)
        return make(self.targets), make(self.sources)

    def make(self, green: GreenKernel, dtype: np.dtype, layout: ListLayout = TARGET_MAJOR,
             **sizes: int) -> lp.TranslationUnit:
        """The math-level kernel for these sizes, walking its list in ``layout``."""
        if self.template == PAIRWISE:
            if layout != TARGET_MAJOR:
                raise ValueError(f"operator {self.name!r} (pairwise template) has only the "
                                 f"target-major layout, not {layout!r}")
            # The kernel takes the surface size at launch (any number stands for it here).
            has_surface = SURFACE in (self.targets, self.sources)
            targets, sources = self.point_sets(sizes.pop(SURFACE_SIZE, 1) if has_surface
                                               else None, dtype)
            _no_more(self.name, sizes)
            return make_pairwise_kernel(self.name, green, targets, sources, accumulate=True,
                                        dtype=dtype)
        _no_more(self.name, sizes)
        dtypes = {"dtype": dtype, "value_dtype": green.value_dtype(dtype)}
        # Named after the template, not the operator: every matvec operator is then the same
        # kernel (its sizes are launch arguments), generated and built once for all of them.
        if isinstance(layout, Grouped):
            return make_grouped_matvec_kernel(GROUPED_MATVEC, pair_tile=layout.pair_tile,
                                              **dtypes)
        return make_matvec_kernel(MATVEC, accumulate=True, **dtypes)

    def kernel_sizes(self, sizes: dict[str, int]) -> dict[str, int]:
        """The sizes of ``sizes`` a kernel of this operator is generated for: none of its own,
        which are arguments of its launches (the matvec's coefficient counts,
        :data:`~fmmloopy.maths.templates.MATVEC_SIZES`; the pairwise template's surface size,
        :data:`~fmmloopy.maths.templates.SURFACE_SIZE`); sizes it does not take are kept, for
        :meth:`make` to refuse."""
        own = (MATVEC_SIZES if self.template == MATVEC
               else (SURFACE_SIZE,) if SURFACE in (self.targets, self.sources) else ())
        return {name: value for name, value in sizes.items() if name not in own}

    def work(self, rows: dict, sizes: dict[str, int], box_target_counts: np.ndarray,
             box_source_counts: np.ndarray, complex_values: bool = False) -> int:
        """The work of one launch over ``rows`` (the CSR list arguments of its target boxes):
        ``2 n_out n_in`` flops per list entry (matvec; ``8 n_out n_in`` for complex values, a
        complex multiply-add being 8 real operations) or the target-source pairs (pairwise;
        ``box_*_counts`` are the particles per box, a surface side has ``n_surface`` points)."""
        if self.template == MATVEC:
            return ((8 if complex_values else 2) * sizes["n_target_coeffs"]
                    * sizes["n_source_coeffs"] * len(rows["source_box_lists"]))

        def points_per_box(kind: str, particle_counts: np.ndarray) -> np.ndarray:
            if kind == PARTICLES:
                return particle_counts
            return np.full(len(particle_counts), sizes["n_surface"])
        return pair_count(rows, points_per_box(self.targets, box_target_counts),
                          points_per_box(self.sources, box_source_counts))

    def traffic(self, rows: dict, sizes: dict[str, int], box_target_counts: np.ndarray,
                box_source_counts: np.ndarray, itemsize: int = 8,
                green: GreenKernel | None = None) -> int:
        """The fewest bytes of values one launch over ``rows`` moves: every input it reads once,
        every output read and written once (index arrays not counted). The roofline of
        ``fmmloopy bench`` divides :meth:`work` (in flops) by it.

        Matvec: the distinct matrices, the distinct source vectors, the target vectors twice.
        Pairwise: per particle 3 coordinates and its values (sources: ``green``'s input
        components) or 3 coordinates and the outputs twice (targets); a surface side, its values
        only (its points are shared)."""
        n_out, n_in = (1, 1) if green is None else (green.n_outputs, green.n_inputs)
        target_boxes = np.asarray(rows["target_boxes"])
        source_boxes = _distinct(rows["source_box_lists"])
        if self.template == MATVEC:
            matrices = len(_distinct(rows["matrix_indices"])) if "matrix_indices" in rows else 1
            return matvec_traffic(sizes, matrices, len(source_boxes), len(target_boxes),
                                  itemsize)

        def side(kind: str, boxes: np.ndarray, counts: np.ndarray, per_particle: int,
                 per_surface_point: int) -> int:
            if kind == PARTICLES:
                return int(counts[boxes].astype(np.int64).sum()) * per_particle
            return len(boxes) * sizes["n_surface"] * per_surface_point
        values = (side(self.targets, target_boxes, box_target_counts, 3 + 2 * n_out, 2)
                  + side(self.sources, source_boxes, box_source_counts, 3 + n_in, 1))
        return int(values * itemsize)

    def host_reference(self, green: GreenKernel, inputs: dict, sizes: dict[str, int],
                       dtype=np.float64) -> dict[str, np.ndarray]:
        """What the kernel of ``dtype`` coordinates computes, in numpy: the new value of its
        output."""
        if self.template == PAIRWISE:
            targets, sources = self.point_sets(sizes.get("n_surface"), dtype)
            return {"result": pairwise_reference(green, inputs, targets, sources)}
        return {"target_vectors": matvec_reference(inputs)}

    def host_magnitudes(self, green: GreenKernel, inputs: dict, sizes: dict[str, int],
                        dtype=np.float64) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """What bounds the kernel's rounding error per output entry, in numpy: the sum of its
        terms' magnitudes and the same weighted by how its computed coordinates move them
        (:func:`~fmmloopy.maths.reference.pairwise_magnitudes`; a matvec computes none)."""
        if self.template == PAIRWISE:
            targets, sources = self.point_sets(sizes.get("n_surface"), dtype)
            return {"result": pairwise_magnitudes(green, inputs, targets, sources)}
        terms = matvec_magnitudes(inputs)
        return {"target_vectors": (terms, np.zeros_like(terms))}


def matvec_traffic(sizes: dict[str, int], matrices: int, source_boxes: int, target_boxes: int,
                   itemsize: int = 8) -> int:
    """:meth:`OperatorSpec.traffic` of a matvec launch from its counts: ``matrices`` distinct
    matrices, ``source_boxes`` distinct source vectors, ``target_boxes`` target vectors."""
    n_out, n_in = sizes["n_target_coeffs"], sizes["n_source_coeffs"]
    return int((matrices * n_out * n_in + source_boxes * n_in + 2 * target_boxes * n_out)
               * itemsize)


def _distinct(indices) -> np.ndarray:
    """The distinct values of an array of indices (non-negative integers), ascending: what
    ``np.unique`` gives, by counting instead of sorting (a launch's lists hold millions of
    entries at 10^6 points)."""
    indices = np.asarray(indices)
    if indices.dtype.kind != "i" or not len(indices) or indices.min() < 0:
        return np.unique(indices)
    return np.flatnonzero(np.bincount(indices)).astype(indices.dtype)


def pair_count(rows: dict, box_target_counts: np.ndarray, box_source_counts: np.ndarray) -> int:
    """Target-source pairs a pairwise kernel visits over the CSR list ``rows`` (its
    ``target_boxes``, ``source_box_starts``, ``source_box_lists``), counted on the host;
    ``box_*_counts`` are the points per box on each side."""
    counts_t = box_target_counts[rows["target_boxes"]].astype(np.int64)
    per_entry = box_source_counts[rows["source_box_lists"]].astype(np.int64)
    cumulative = np.concatenate([[0], np.cumsum(per_entry)])
    row_starts = rows["source_box_starts"]
    sources_per_row = cumulative[row_starts[1:]] - cumulative[row_starts[:-1]]
    return int(counts_t @ sources_per_row)


def _no_more(operator: str, sizes: dict) -> None:
    if sizes:
        raise TypeError(f"operator {operator!r} takes no sizes {sorted(sizes)}")


OPERATORS: dict[str, OperatorSpec] = {spec.name: spec for spec in (
    OperatorSpec("p2p", PAIRWISE, "u", "near field: particles of U-list leaves -> particles",
                 PARTICLES, PARTICLES),
    OperatorSpec("p2m", PAIRWISE, "self", "particles -> the box's upward check potential",
                 SURFACE, PARTICLES),
    OperatorSpec("p2l", PAIRWISE, "x", "particles of X-list boxes -> downward check potential",
                 SURFACE, PARTICLES),
    OperatorSpec("m2p", PAIRWISE, "w", "multipoles of W-list boxes -> particles",
                 PARTICLES, SURFACE),
    OperatorSpec("l2p", PAIRWISE, "self", "the leaf's local expansion -> its particles",
                 PARTICLES, SURFACE),
    OperatorSpec("m2m", MATVEC, "children", "children's multipoles -> the parent's"),
    OperatorSpec("l2l", MATVEC, "parent", "the parent's local expansion -> the child's"),
    OperatorSpec("m2l", MATVEC, "v",
                 "compressed multipoles of V-list boxes -> compressed downward check potential"),
    OperatorSpec("m2l_compress", MATVEC, "self", "multipole -> its k compressed M2L coefficients"),
    OperatorSpec("m2l_expand", MATVEC, "self",
                 "k compressed M2L coefficients -> downward check potential"),
    OperatorSpec("c2e", MATVEC, "self", "check potential -> equivalent density (one factor)"),
)}

def get_operator(name: str) -> OperatorSpec:
    """The operator called ``name``, with a clear error for an unknown one."""
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; operators: {sorted(OPERATORS)}") from None


@cache
def _math_kernel(operator: str, green: GreenKernel, dtype: np.dtype, layout: ListLayout,
                 sizes: tuple[tuple[str, int], ...]) -> lp.TranslationUnit:
    return get_operator(operator).make(green, dtype, layout, **dict(sizes))


def math_kernel(operator: str, *, kernel: str | GreenKernel = "laplace", dtype=np.float64,
                layout: ListLayout = TARGET_MAJOR, **sizes: int) -> lp.TranslationUnit:
    """The math-level kernel of ``operator`` (memoised; loopy kernels are immutable); of
    ``sizes``, those it is generated for (:meth:`OperatorSpec.kernel_sizes`)."""
    sizes = get_operator(operator).kernel_sizes(sizes)
    return _math_kernel(operator, get_kernel(kernel), np.dtype(dtype), layout,
                        tuple(sorted(sizes.items())))


def operator_sizes(operator: str, n_e: int, rank: int | None = None,
                   first_factor: bool = True, m2l_rank: int | None = None) -> dict[str, int]:
    """Template sizes of ``operator`` for surfaces of ``n_e`` points.

    ``c2e`` is applied as two factors: ``(rank x n_e)`` first, then ``(n_e x rank)``. The
    compressed M2L has rank ``m2l_rank`` (``rank`` if not given): ``m2l_compress`` is
    ``(m2l_rank x n_e)``, ``m2l`` ``(m2l_rank x m2l_rank)``, ``m2l_expand`` ``(n_e x m2l_rank)``.
    """
    m2l_rank = rank if m2l_rank is None else m2l_rank
    spec = get_operator(operator)
    if spec.template == PAIRWISE:
        return {} if spec.targets == spec.sources == PARTICLES else {"n_surface": n_e}
    if operator == "c2e":
        if rank is None:
            raise ValueError("c2e needs the rank of its factors")
        return ({"n_target_coeffs": rank, "n_source_coeffs": n_e} if first_factor
                else {"n_target_coeffs": n_e, "n_source_coeffs": rank})
    if operator.startswith("m2l"):
        if m2l_rank is None:
            raise ValueError(f"{operator} needs the rank of the compressed M2L")
        n_out, n_in = {"m2l": (m2l_rank, m2l_rank), "m2l_compress": (m2l_rank, n_e),
                       "m2l_expand": (n_e, m2l_rank)}[operator]
        return {"n_target_coeffs": n_out, "n_source_coeffs": n_in}
    return {"n_target_coeffs": n_e, "n_source_coeffs": n_e}
