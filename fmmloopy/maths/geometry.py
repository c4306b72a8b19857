"""Integer geometry of the octree that the KIFMM operators are defined on.

Octants of a box (:data:`OCTANT_BITS`), the 27 neighbour slots of a box at its own level
(:data:`NEIGHBOUR_OFFSETS`) and the 316 M2L transfer vectors: the offsets
``(centre(source box) - centre(target box)) / box side`` in ``{-3..3}^3`` outside ``{-1..1}^3``
(:func:`transfer_vectors` maps index -> offset, :func:`transfer_vector_index` offset -> index).
The precomputed matrices are indexed by these; the tree and its lists use the same tables.
"""

from __future__ import annotations

import numpy as np

#: Box and point indices of the tree, its lists and the kernels' index arguments.
INDEX_DTYPE = np.dtype(np.int32)

# (dx, dy, dz) for the 27 neighbour slots, slot = 9 (dx+1) + 3 (dy+1) + (dz+1); slot 13 is self.
NEIGHBOUR_OFFSETS = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)], dtype=np.int64
)
#: (bx, by, bz) for the 8 octants, octant = 4 bx + 2 by + bz.
OCTANT_BITS = np.array([((o >> 2) & 1, (o >> 1) & 1, o & 1) for o in range(8)], dtype=np.int64)

#: Number of M2L transfer vectors: 7**3 - 3**3.
NTRANSFER_VECTORS = 316

_ALL_OFFSETS = np.array(
    [(i, j, k) for i in range(-3, 4) for j in range(-3, 4) for k in range(-3, 4)], dtype=np.int64
)
_TRANSFER = _ALL_OFFSETS[np.abs(_ALL_OFFSETS).max(axis=1) >= 2]
# code (i+3)*49 + (j+3)*7 + (k+3) -> transfer index, -1 for the 27 adjacent offsets.
_CODE_TO_INDEX = np.full(343, -1, dtype=np.int64)
_CODE_TO_INDEX[np.flatnonzero(np.abs(_ALL_OFFSETS).max(axis=1) >= 2)] = np.arange(
    NTRANSFER_VECTORS)


def transfer_vectors() -> np.ndarray:
    """(316, 3) int64: the offset of each transfer-vector index, lexicographic in (x, y, z)."""
    return _TRANSFER.copy()


#: Bands of transfer vectors by squared length ``|t|^2`` (in box sides), each a range: ``near``
#: (4-6: the 54 vectors like (2, 0, 0), (2, 1, 0), (2, 1, 1)), ``middle`` (8-12: 98) and ``far``
#: (13-27: 164). The closer the source box, the more its M2L matrix needs of the expansion.
M2L_BANDS = {"near": (4, 6), "middle": (8, 12), "far": (13, 27)}

#: Directions of transfer vectors: the axis of the largest ``|component|`` (the first such axis
#: where two or three tie) and its sign, ``xp`` for +x, ``xn`` for -x, ...
M2L_DIRECTIONS = ("xp", "xn", "yp", "yn", "zp", "zn")

#: Classes of transfer vectors, ``<band>_<direction>`` (:data:`M2L_BANDS`,
#: :data:`M2L_DIRECTIONS`): 18 classes of 9 to 40 vectors. The matrices of one class share
#: their ranges far more than those of a whole band (the sources all lie on one side of the
#: target), so the compressed M2L keeps one basis per class: order 6 ranks 56 (near), 32-48
#: (middle) and 32 (far) of 152, against 128/88/64 with one basis per band
#: (:func:`fmmloopy.maths.m2l_compression.m2l_bases`, docs/kifmm.md).
M2L_CLASSES = {f"{band}_{direction}": (band, direction)
               for band in M2L_BANDS for direction in M2L_DIRECTIONS}


def transfer_directions(vectors: np.ndarray) -> np.ndarray:
    """(n,) int64: the index in :data:`M2L_DIRECTIONS` of each integer vector ``(n, 3)``."""
    vectors = np.asarray(vectors)
    axis = np.argmax(np.abs(vectors), axis=1)  # the first of the largest components
    negative = np.take_along_axis(vectors, axis[:, None], axis=1)[:, 0] < 0
    return 2 * axis + negative


_DIRECTIONS = transfer_directions(_TRANSFER)


def transfer_class(name: str) -> np.ndarray:
    """(n,) int64, increasing: the transfer-vector indices of class ``name``
    (:data:`M2L_CLASSES`); a class's own matrix index of a vector is its position here."""
    try:
        band, direction = M2L_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown transfer-vector class {name!r}; classes: "
                         f"{sorted(M2L_CLASSES)}") from None
    shortest, longest = M2L_BANDS[band]
    squared = (_TRANSFER ** 2).sum(axis=1)
    in_band = (squared >= shortest) & (squared <= longest)
    return np.flatnonzero(in_band & (_DIRECTIONS == M2L_DIRECTIONS.index(direction)))


def interior_v_entries(name: str) -> float:
    """The V entries of class ``name`` of an interior box of a uniform tree, averaged over its
    octant: 189 in all classes (the children of the parent's 27 colleagues, a 6 x 6 x 6 block,
    less the box's 27 neighbours). A vector with a component of +-3 is in the block for half the
    octants along that axis."""
    vectors = _TRANSFER[transfer_class(name)]
    return float(np.prod(np.where(np.abs(vectors) == 3, 0.5, 1.0), axis=1).sum())


def transfer_vector_index(offsets: np.ndarray) -> np.ndarray:
    """Transfer-vector indices of integer offsets ``(..., 3)``; ValueError if one is not in V."""
    off = np.asarray(offsets)
    if off.shape[-1:] != (3,):
        raise ValueError(f"offsets must have shape (..., 3), got {off.shape}")
    off = off.astype(np.int64)
    inside = np.all(np.abs(off) <= 3, axis=-1)
    code = np.where(inside, ((off[..., 0] + 3) * 7 + off[..., 1] + 3) * 7 + off[..., 2] + 3, 0)
    idx = np.where(inside, _CODE_TO_INDEX[code], -1)
    if np.any(idx < 0):
        raise ValueError("offsets must lie in {-3..3}^3 with some |component| >= 2")
    return idx


def parent_colleague_children() -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, far)``: for a box of octant ``o``, the child of octant ``c`` of its parent's
    colleague in slot ``s`` (:data:`NEIGHBOUR_OFFSETS`) lies ``offsets[o, s, c]`` (box sides,
    ``(8, 27, 8, 3)``) away; ``far[o, s, c]``: not adjacent, so in the box's V list (its
    transfer vector is that offset). The tree's V list and the set-up kernels both read it."""
    offsets = (2 * NEIGHBOUR_OFFSETS[None, :, None, :] + OCTANT_BITS[None, None, :, :]
               - OCTANT_BITS[:, None, None, :])
    return offsets, np.abs(offsets).max(axis=-1) >= 2


#: The steps that spread the 21 bits of a coordinate two apart (a Morton key's axis): shift
#: left, OR, then keep the bits of the mask (``fmmloopy.tree.morton`` and the device keys).
MORTON_SPREAD_STEPS = ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                       (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249))


def child_centres() -> np.ndarray:
    """(3, 8): centre of the child of each octant of the box of half-width 1 centred at 0."""
    return np.ascontiguousarray((OCTANT_BITS - 0.5).T.astype(np.float64))
