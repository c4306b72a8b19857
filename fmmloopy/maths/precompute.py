"""Precomputed KIFMM operators (numpy, float64) for a box of half-width ``h`` centred at the origin
(``h = 1`` for a homogeneous kernel, whose FMM scales them from level to level; each level's own
``h`` otherwise).

Expansions are densities on equivalent surfaces (:mod:`fmmloopy.maths.surfaces`): a box's
*multipole* is its upward equivalent density (surface radius 1.05), its *local* its downward
equivalent density (radius 2.95). The matrices, all built from :func:`kernel_matrix`:

- ``uc2e``: upward check potential (radius 2.95) -> upward equivalent density;
  ``dc2e``: downward check potential (radius 1.05) -> downward equivalent density. Each is the
  pseudo-inverse of ``K(check <- equivalent)`` from its SVD ``K = U S V^T``, singular values
  below ``rcond * s_max`` dropped, kept as two factors applied in turn:
  ``equivalent = second @ (first @ check)``, ``first = U_k^T`` (k x n_e),
  ``second = V_k S_k^-1`` (n_e x k). ``first`` is orthonormal, so only ``second`` carries the
  large entries ``1 / s``; multiplying the factors out first would mix them into every entry.
- ``m2m[o]``: child (octant ``o``, half-width 1/2) multipole -> parent multipole.
- ``l2l[o]``: parent local -> child (octant ``o``) local.
- ``m2l[t]``: source multipole -> target downward *check* potential for transfer vector ``t``
  (:func:`fmmloopy.tree.lists.transfer_vectors`); follow it with ``dc2e``. What the compressed
  classes below approximate: the FMM does not apply it, so the operators an FMM holds and the
  operator cache's file of them leave it out (316 n_e^2 numbers, 58 MB at order 6, 85 % of
  the rest); :func:`compute_operators` returns it where asked for, and the operator cache keeps
  it apart.
- ``m2l_<class>_compress`` (k x n_e), ``m2l_<class>_core[i]`` (k x k), ``m2l_<class>_expand``
  (n_e x k), for the 18 transfer-vector classes (a band of lengths, ``near``, ``middle`` or
  ``far``, and a direction, e.g. ``near_xp``: :data:`fmmloopy.maths.geometry.M2L_CLASSES`): the
  SVD-compressed M2L, ``m2l[t] ~ expand @ core[i] @ compress`` for the class's ``i``-th vector
  ``t`` (:func:`~fmmloopy.maths.m2l_compression.m2l_bases`). The FMM applies these: each source
  box's multipole is compressed once per class, each V pair costs ``2 k^2`` flops instead of
  ``2 n_e^2``, and each target box's sums are expanded once per class.

Least-squares fits. ``uc2e``/``dc2e`` act on check potentials that the particle kernels (P2M,
P2L) evaluate at the ``n_e`` check points, so they interpolate there. The translations are ours
to define: where those square fits keep every singular value (``k_u = k_d = n_e``; orders <= 7 at
:data:`DEFAULT_RCOND`), ``m2m``, ``l2l`` and ``m2l`` fit the equivalent density by least squares
to the check potential on the *fine* check surface (:func:`fmmloopy.maths.surfaces.fine_order`,
``2 order - 1`` points per edge), which bounds the misfit between the check points too (what
the maximum principle turns into the error inside/outside the check surface). ``m2l[t]`` is then
``K(check <- equivalent)`` times that least-squares local, i.e. the check potential that the
driver's ``dc2e`` maps back to exactly that local. Where a square fit drops singular values
(orders >= 8) everything stays square: the least-squares translations were measured less
accurate there (docs/kifmm.md).

Level scaling (:mod:`fmmloopy.maths.kifmm`): the matrices are for half-width 1; for a
homogeneous kernel each step scales them by a power of the box's half-width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from fmmloopy.maths.cube_symmetry import is_cube_invariant, reflection, surface_permutation
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import (
    M2L_CLASSES,
    NTRANSFER_VECTORS,
    child_centres,
    interior_v_entries,
    transfer_class,
    transfer_vectors,
)
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.m2l_compression import (
    ClassSvd,
    m2l_bases,
    m2l_threshold,
    stacks_svd,
)
from fmmloopy.maths.surfaces import fine_order
from fmmloopy.maths.symmetric_stacks import symmetric_stack_svd
from fmmloopy.maths.translations import Translations

__all__ = [
    "DEFAULT_RCOND",
    "KifmmOperators",
    "check_to_equivalent",
    "compute_operators",
    "full_ranks",
    "kernel_matrix",
    "matrix_shapes",
    "pad_ranks",
]

#: Relative singular-value cutoff of the check-to-equivalent pseudo-inverses (docs/kifmm.md).
DEFAULT_RCOND = 1e-12


@dataclass(frozen=True, eq=False)
class KifmmOperators:
    """The KIFMM matrices of one kernel and surface order, for half-width 1 (module docstring).

    All arrays are float64 (complex128 for a complex kernel: :attr:`dtype`), C-contiguous and
    read-only; ``k_u``/``k_d`` are the numbers of singular values kept in ``uc2e``/``dc2e``.
    """

    kernel_name: str
    #: Degree d of the kernel's homogeneity, None if it has none (no level scaling then).
    homogeneity: float | None
    order: int
    #: Points per surface.
    n_e: int
    rcond: float
    #: (k_u, n_e), (n_e, k_u): upward check potential -> upward equivalent density.
    uc2e_first: np.ndarray
    uc2e_second: np.ndarray
    #: (k_d, n_e), (n_e, k_d): downward check potential -> downward equivalent density.
    dc2e_first: np.ndarray
    dc2e_second: np.ndarray
    #: (8, n_e, n_e): child multipole (octant o) -> parent multipole.
    m2m: np.ndarray
    #: (8, n_e, n_e): parent local -> child local (octant o).
    l2l: np.ndarray
    #: Per transfer-vector class (:data:`~fmmloopy.maths.geometry.M2L_CLASSES`: a band of
    #: lengths and a direction), the SVD-compressed ``m2l``
    #: (:func:`~fmmloopy.maths.m2l_compression.m2l_bases`), by field name
    #: ``m2l_<class>_compress`` (k, n_e), ``m2l_<class>_core`` (vectors, k, k) and
    #: ``m2l_<class>_expand`` (n_e, k); :meth:`matrix` reads any field.
    compressed_m2l: Mapping[str, np.ndarray]
    #: The half-width of the box these matrices are for (the child of M2M and L2L: half that).
    half_width: float = 1.0
    #: (316, n_e, n_e): source multipole -> target downward check potential, per transfer vector
    #: (of the least-squares local where the fits are least squares; module docstring), which
    #: the compressed M2L approximates and the FMM does not apply; None where these operators
    #: were made without it (:data:`ARRAY_FIELDS`: an FMM's, the operator cache's).
    m2l: np.ndarray | None = None
    #: Densities per surface point (a tensor kernel's components,
    #: :attr:`~fmmloopy.maths.green.GreenKernel.density_components`): every ``n_e`` in the
    #: shapes above is then :attr:`n_coeffs`, the values component-major (component ``c`` of
    #: point ``i`` at ``c n_e + i``).
    components: int = 1

    @property
    def n_coeffs(self) -> int:
        """Values of one expansion: ``components * n_e``."""
        return self.components * self.n_e

    def __post_init__(self) -> None:
        if self.n_e != self.expansion.n_e:
            raise ValueError(f"n_e = {self.n_e} does not match order {self.order}")
        compressed = dict(self.compressed_m2l)
        unknown = set(compressed) - set(COMPRESSED_M2L_FIELDS)
        if unknown:
            raise ValueError(f"unknown compressed M2L matrices {sorted(unknown)}")
        missing = set(COMPRESSED_M2L_FIELDS) - set(compressed)
        if missing:
            raise ValueError(f"missing compressed M2L matrices {sorted(missing)}")
        ranks = {"uc2e": _leading_size(self.uc2e_first), "dc2e": _leading_size(self.dc2e_first)}
        ranks |= {f"m2l_{name}": _leading_size(compressed[f"m2l_{name}_compress"])
                  for name in M2L_CLASSES}
        dtype = np.asarray(self.uc2e_first).dtype
        if dtype not in (np.float64, np.complex128):
            raise ValueError(f"operators are float64 or complex128, not {dtype}")
        shapes = matrix_shapes(self.n_coeffs, ranks)
        if self.m2l is not None:
            shapes["m2l"] = (NTRANSFER_VECTORS, self.n_coeffs, self.n_coeffs)
        for name, shape in shapes.items():
            array = np.asarray(compressed[name] if name in compressed else getattr(self, name))
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{name} has shape {array.shape} and dtype {array.dtype}, "
                    f"expected {shape} {dtype}")
            array = np.ascontiguousarray(array)
            array.setflags(write=False)
            if name in compressed:
                compressed[name] = array
            else:
                object.__setattr__(self, name, array)
        object.__setattr__(self, "compressed_m2l", MappingProxyType(compressed))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **scalars) -> KifmmOperators:
        """The operators from :meth:`arrays`' dict (every field of :data:`ARRAY_FIELDS`) and the
        scalar fields (the dense ``m2l`` among them, or not); ValueError for any other set of
        arrays."""
        fields = set(arrays) - {"m2l"}
        missing, extra = set(ARRAY_FIELDS) - fields, fields - set(ARRAY_FIELDS)
        if missing or extra:
            raise ValueError(f"the arrays do not match the operators' fields: missing "
                             f"{sorted(missing)}, not fields {sorted(extra)}")
        plain = {name: arrays[name] for name in PLAIN_FIELDS}
        compressed = {name: arrays[name] for name in COMPRESSED_M2L_FIELDS}
        return cls(**scalars, **plain, compressed_m2l=compressed, m2l=arrays.get("m2l"))

    def matrix(self, name: str) -> np.ndarray:
        """The matrix (or stack) of field ``name`` of :data:`ARRAY_FIELDS`."""
        if name in self.compressed_m2l:
            return self.compressed_m2l[name]
        if name == "m2l" and self.m2l is not None:
            return self.m2l
        if name not in PLAIN_FIELDS:
            raise ValueError(f"unknown operator matrix {name!r}")
        return getattr(self, name)

    def arrays(self) -> dict[str, np.ndarray]:
        """The matrices the FMM applies (:data:`ARRAY_FIELDS`), by field name."""
        return {name: self.matrix(name) for name in ARRAY_FIELDS}

    @property
    def dtype(self) -> np.dtype:
        """float64, or complex128 for a complex kernel's operators."""
        return self.uc2e_first.dtype

    @property
    def expansion(self) -> Expansion:
        """The expansion (order, ``n_e``, surfaces) these matrices are for."""
        return Expansion(self.order)

    def ranks(self) -> dict[str, int]:
        """The numbers of singular values kept: ``uc2e``, ``dc2e`` and, per transfer-vector
        class, the compressed M2L (``m2l_<class>``, e.g. ``m2l_near_xp``)."""
        return {"uc2e": self.uc2e_first.shape[0], "dc2e": self.dc2e_first.shape[0]} | {
            f"m2l_{name}": self.compressed_m2l[f"m2l_{name}_compress"].shape[0]
            for name in M2L_CLASSES}


    def m2l_rank(self) -> int:
        """The largest rank of the compressed M2L's classes."""
        return max(self.ranks()[f"m2l_{name}"] for name in M2L_CLASSES)

    def far_field_flops(self) -> tuple[float, float]:
        """``(per V entry, per box)``: the flops of the far field as the FMM applies these
        matrices, for the model that chooses ``n_crit`` (:mod:`fmmloopy.tree.cost`). A V entry
        is one compressed core (``2 k^2``), weighted by the classes of an interior box's V list
        (:func:`~fmmloopy.maths.geometry.interior_v_entries`); a box has its two
        check-to-equivalent maps (two factors each), M2M, L2L and, per class, a compression
        and an expansion (``2 k n_e`` each)."""
        ranks, n_e = self.ranks(), self.n_e
        counts = {name: interior_v_entries(name) for name in M2L_CLASSES}
        per_entry = sum(2.0 * ranks[f"m2l_{name}"] ** 2 * count / sum(counts.values())
                        for name, count in counts.items())
        per_box = (4.0 * n_e * (ranks["uc2e"] + ranks["dc2e"]) + 4.0 * n_e ** 2
                   + sum(4.0 * n_e * ranks[f"m2l_{name}"] for name in M2L_CLASSES))
        return per_entry, per_box


#: The matrices the FMM applies that are fields of their own, and those of the compressed M2L
#: (the dense ``m2l``, which it does not apply, is neither).
PLAIN_FIELDS: tuple[str, ...] = (
    "uc2e_first", "uc2e_second", "dc2e_first", "dc2e_second", "m2m", "l2l")
COMPRESSED_M2L_FIELDS: tuple[str, ...] = tuple(
    f"m2l_{name}_{part}" for name in M2L_CLASSES for part in ("compress", "core", "expand"))
#: Every matrix the FMM applies, by field name (:meth:`KifmmOperators.matrix`).
ARRAY_FIELDS: tuple[str, ...] = PLAIN_FIELDS + COMPRESSED_M2L_FIELDS


def pad_ranks(operators: KifmmOperators, ranks: dict[str, int]) -> KifmmOperators:
    """``operators`` with ranks raised to ``ranks`` (each at least the operators' own): the
    factors and cores padded with zero rows and columns, which add nothing to any product, so
    that the sets of several levels share their shapes (and the FMM's buffers)."""
    own = operators.ranks()
    if any(ranks[name] < rank for name, rank in own.items()):
        raise ValueError(f"ranks {ranks} are below the operators' own {own}")
    shapes = matrix_shapes(operators.n_coeffs, ranks)
    arrays = {}
    for name, array in operators.arrays().items():
        padded = np.zeros(shapes[name], dtype=array.dtype)
        padded[tuple(slice(0, size) for size in array.shape)] = array
        arrays[name] = padded
    scalars = {field: getattr(operators, field) for field in (
        "kernel_name", "homogeneity", "order", "n_e", "rcond", "half_width", "components")}
    return KifmmOperators.from_arrays(arrays, **scalars)


def full_ranks(n_e: int) -> dict[str, int]:
    """The ranks' upper bound: every singular value kept (:meth:`KifmmOperators.ranks`)."""
    return {"uc2e": n_e, "dc2e": n_e} | {f"m2l_{name}": n_e for name in M2L_CLASSES}


def _leading_size(array: np.ndarray) -> int:
    """Length of the first axis, -1 for a scalar."""
    shape = np.shape(array)
    return shape[0] if shape else -1


def matrix_shapes(n_e: int, ranks: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The shape of each matrix for surfaces of ``n_e`` points and ``ranks`` (as
    :meth:`KifmmOperators.ranks` gives them; the memory estimate counts these too)."""
    k_u, k_d = ranks["uc2e"], ranks["dc2e"]
    shapes = {
        "uc2e_first": (k_u, n_e), "uc2e_second": (n_e, k_u),
        "dc2e_first": (k_d, n_e), "dc2e_second": (n_e, k_d),
        "m2m": (8, n_e, n_e), "l2l": (8, n_e, n_e),
    }
    for name in M2L_CLASSES:
        k, vectors = ranks[f"m2l_{name}"], len(transfer_class(name))
        shapes |= {f"m2l_{name}_compress": (k, n_e), f"m2l_{name}_core": (vectors, k, k),
                   f"m2l_{name}_expand": (n_e, k)}
    return shapes


def kernel_matrix(kernel: GreenKernel, targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(nt, ns) float64 (complex128 for a complex kernel): ``K(targets[:, i] - sources[:, j])``
    for points of shape (3, n); ``(m nt, k ns)`` for a tensor kernel of ``m x k`` values,
    component-major (entry ``(a nt + i, b ns + j)`` is ``K_ab(targets[:, i] - sources[:, j])``)."""
    offsets = np.asarray(targets).T[:, None, :] - np.asarray(sources).T[None, :, :]
    values = kernel.evaluate(offsets)
    if values.ndim == 2:
        return values
    nt, ns, m, k = values.shape
    return values.transpose(2, 0, 3, 1).reshape(m * nt, k * ns)


def check_to_equivalent(kernel: GreenKernel, check_points: np.ndarray,
                        equivalent_points: np.ndarray, rcond: float, half_width: float = 1.0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The factors ``(U_k^H, V_k S_k^-1)`` of the truncated pseudo-inverse of K(check <- equiv)
    (points in units of ``half_width``).

    With more check than equivalent points this is the least-squares fit.
    """
    u, s, vt = np.linalg.svd(
        kernel_matrix(kernel, half_width * check_points, half_width * equivalent_points),
        full_matrices=False)
    keep = s > rcond * s[0]
    first = np.ascontiguousarray(u[:, keep].conj().T)
    second = np.ascontiguousarray(vt[keep].conj().T / s[keep])
    return first, second


def _apply_factors(factors: tuple[np.ndarray, np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """``second @ (first @ matrix)``: a check-to-equivalent map applied factor by factor."""
    first, second = factors
    return second @ (first @ matrix)


def _reflected(compressed: dict[str, np.ndarray], mirrored: str, name: str, axis: int,
               order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compressed M2L of class ``name`` from that of class ``mirrored`` (``compressed``
    holds its parts), its mirror image through the plane normal to ``axis``: the reflection
    ``g`` maps each vector ``t`` of ``name`` to one of ``mirrored`` and ``M(t)`` is ``M(g t)``
    with rows and columns permuted by the surface's permutation ``q`` of ``g``
    (:mod:`fmmloopy.maths.cube_symmetry`), so the bases are permuted and the cores are the
    mirrored vectors' (the classes' directions are the sign of one axis: a reflection keeps
    the band and the axis)."""
    mirror = reflection(axis)
    permutation = surface_permutation(order, mirror)
    vectors = transfer_vectors()
    position = {tuple(vectors[index].tolist()): number
                for number, index in enumerate(transfer_class(mirrored))}
    images = [position[tuple((mirror @ vectors[index]).tolist())]
              for index in transfer_class(name)]
    compress = np.ascontiguousarray(compressed[f"m2l_{mirrored}_compress"][:, permutation])
    core = np.ascontiguousarray(compressed[f"m2l_{mirrored}_core"][images])
    expand = np.ascontiguousarray(compressed[f"m2l_{mirrored}_expand"][permutation])
    return compress, core, expand


def compute_operators(kernel: GreenKernel | str, order: int, rcond: float | None = None,
                      half_width: float = 1.0, dense_m2l: bool = False,
                      rank_multiple: int = 1) -> KifmmOperators:
    """Compute the KIFMM matrices for a box of ``half_width`` (no caching); with ``dense_m2l``
    also the dense M2L of every transfer vector, which the FMM does not apply (the
    compressed classes come from one matrix per orbit of the cube's symmetries without it:
    :mod:`fmmloopy.maths.translations`). ``rank_multiple``: the compressed M2L's ranks
    rounded up to a multiple of it (:func:`~fmmloopy.maths.m2l_compression.m2l_bases`; the
    FMM's, a device fact: :data:`fmmloopy.tuning.device_facts.M2L_RANK_MULTIPLE`)."""
    kernel = get_kernel(kernel)
    rcond = DEFAULT_RCOND if rcond is None else float(rcond)
    half_width = float(half_width)
    if not (math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a positive finite number, not {half_width!r}")

    def matrix(targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """The kernel between points given in units of the half-width."""
        return kernel_matrix(kernel, half_width * targets, half_width * sources)

    def fit(check: np.ndarray, equivalent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return check_to_equivalent(kernel, check, equivalent, rcond, half_width)

    kernel.check_square()
    expansion = Expansion(order)
    n_e = expansion.n_e
    components = kernel.density_components
    n_coeffs = components * n_e
    upward_equivalent = expansion.surface("upward_equivalent")
    upward_check = expansion.surface("upward_check")
    downward_equivalent = expansion.surface("downward_equivalent")
    downward_check = expansion.surface("downward_check")

    uc2e = fit(upward_check, upward_equivalent)
    dc2e = fit(downward_check, downward_equivalent)
    # The child's DC2E at half-width 1/2, computed directly (no homogeneity needed).
    child_dc2e = fit(0.5 * downward_check, 0.5 * downward_equivalent)

    # The translations' check surfaces and fits: least squares on the fine surface where the
    # square fits keep every singular value, else the square ones (module docstring).
    least_squares = all(first.shape[0] == n_coeffs for first, _ in (uc2e, dc2e, child_dc2e))
    if least_squares:
        fine = Expansion(fine_order(order))
        translation_up_check = fine.surface("upward_check")
        translation_down_check = fine.surface("downward_check")
        m2m_fit = fit(translation_up_check, upward_equivalent)
        l2l_fit = fit(0.5 * translation_down_check, 0.5 * downward_equivalent)
        m2l_fit = fit(translation_down_check, downward_equivalent)
        # check potential <- local: dc2e inverts it exactly (full rank), so dc2e(m2l M) is the
        # least-squares local.
        check_of_local = matrix(downward_check, downward_equivalent)
    else:
        translation_up_check, translation_down_check = upward_check, downward_check
        m2m_fit, l2l_fit = uc2e, child_dc2e

    dtype = kernel.value_dtype()
    # A kernel the cube's symmetries leave unchanged has translations that are each other's
    # with rows and columns permuted: one octant's M2M and L2L, 16 of the 316 M2L.
    # (A tensor kernel's components would turn with the cube: not used.)
    symmetric = not kernel.is_tensor and is_cube_invariant(
        lambda offsets: kernel.evaluate(half_width * offsets))

    def m2m_of(centre: np.ndarray) -> np.ndarray:
        return _apply_factors(m2m_fit, matrix(translation_up_check,
                                              centre[:, None] + 0.5 * upward_equivalent))

    def l2l_of(centre: np.ndarray) -> np.ndarray:
        return _apply_factors(l2l_fit, matrix(centre[:, None] + 0.5 * translation_down_check,
                                              downward_equivalent))

    def m2l_of(offset: np.ndarray) -> np.ndarray:
        check = matrix(translation_down_check, 2.0 * offset[:, None] + upward_equivalent)
        return check_of_local @ _apply_factors(m2l_fit, check) if least_squares else check

    centres = child_centres().T
    octants = np.rint(2 * centres).astype(np.int64)
    m2m = Translations(m2m_of, centres, octants, order, symmetric).dense()
    l2l = Translations(l2l_of, centres, octants, order, symmetric).dense()
    vectors = transfer_vectors()
    m2l = Translations(m2l_of, vectors.astype(np.float64), vectors, order, symmetric)

    # The classes' singular vectors; a class that mirrors another (a kernel the symmetries
    # leave unchanged) is derived from it below.
    def mirrored(name: str) -> tuple[str, int] | None:
        band, direction = M2L_CLASSES[name]
        if symmetric and direction.endswith("n"):
            return f"{band}_{direction[0]}p", "xyz".index(direction[0])
        return None
    # Where the M2L matrices are the kernel's between one surface and itself moved (the square
    # fits: downward check = upward equivalent) and the kernel is real and even (cube-invariant),
    # M(-t) = M(t)^T: a class's matrices side by side are its opposite class's stacked, which is
    # its own stacked under a reflection, so one factorisation per class gives both sides.
    transposes = (symmetric and not least_squares and np.dtype(dtype).kind == "f"
                  and np.array_equal(downward_check, upward_equivalent))

    def svd_of(name: str) -> ClassSvd:
        """The class's singular values and vectors: by the symmetries that map the class onto
        itself where the kernel is cube-invariant (:mod:`fmmloopy.maths.symmetric_stacks`),
        else from the QR factors of its stacks."""
        members = transfer_class(name)
        if not symmetric:
            return stacks_svd(m2l.stacked(members),
                              m2l.stacked(members, conjugate_transpose=True))
        right_values, right_h = symmetric_stack_svd(m2l, members, vectors[members], order)
        if transposes:
            axis = "xyz".index(M2L_CLASSES[name][1][0])
            left = right_h.T[surface_permutation(order, reflection(axis))]
            return ClassSvd(left, right_values, right_values, right_h)
        left_values, left_h = symmetric_stack_svd(m2l, members, vectors[members], order,
                                                  conjugate_transpose=True)
        return ClassSvd(left_h.conj().T, left_values, right_values, right_h)
    svds = {name: svd_of(name) for name in M2L_CLASSES if mirrored(name) is None}
    # One cutoff for every class, relative to the largest singular value of all the M2L
    # matrices side by side: the same absolute accuracy for near and far pairs. Their Gram
    # matrix is the sum of the classes' (``L S^2 L^H`` from each class's left singular
    # vectors and values; a mirrored class's is its mirror's with rows and columns
    # permuted); squaring costs the largest singular value no accuracy.
    gram = np.zeros((n_coeffs, n_coeffs), dtype)
    for name in M2L_CLASSES:
        twin = mirrored(name)
        svd = svds[name if twin is None else twin[0]]
        part = (svd.left * svd.left_values ** 2) @ svd.left.conj().T
        if twin is not None:
            permutation = surface_permutation(order, reflection(twin[1]))
            part = part[np.ix_(permutation, permutation)]
        gram += part
    largest = float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))
    compressed = {}
    for name in M2L_CLASSES:
        twin = mirrored(name)
        if twin is not None:  # the mirror image of the +axis class
            parts = _reflected(compressed, twin[0], name, twin[1], order)
        else:
            compress, expand = m2l_bases(svds[name], m2l_threshold(order) * largest,
                                         rank_multiple)
            parts = compress, m2l.cores(transfer_class(name), expand, compress), expand
        compressed |= {f"m2l_{name}_{part}": array
                       for part, array in zip(("compress", "core", "expand"), parts, strict=True)}
    return KifmmOperators(
        kernel_name=kernel.name, homogeneity=kernel.homogeneity, order=int(order), n_e=n_e,
        rcond=rcond, components=components, uc2e_first=uc2e[0], uc2e_second=uc2e[1],
        dc2e_first=dc2e[0], dc2e_second=dc2e[1], m2m=m2m, l2l=l2l, compressed_m2l=compressed,
        half_width=half_width, m2l=m2l.dense() if dense_m2l else None)
