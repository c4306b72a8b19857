"""Morton keys of the octree: three interleaved bits per level, x the highest.

A box of level ``l`` with integer coordinates ``(i, j, k)`` has the Morton key of those
coordinates with a leading 1 bit at bit ``3 l`` (:func:`placeholder`), so that (level, key) is one
sortable uint64 and boxes sort level by level, in Morton order inside a level.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.maths.geometry import MORTON_SPREAD_STEPS

_U64 = np.uint64


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 21 bits of ``v`` (uint64)."""
    v = v & _U64(0x1FFFFF)
    for shift, mask in MORTON_SPREAD_STEPS:
        v = (v | (v << _U64(shift))) & _U64(mask)
    return v


def _compact_bits(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread_bits`: gather every third bit of ``v`` (uint64)."""
    v = v & _U64(0x1249249249249249)
    v = (v ^ (v >> _U64(2))) & _U64(0x10C30C30C30C30C3)
    v = (v ^ (v >> _U64(4))) & _U64(0x100F00F00F00F00F)
    v = (v ^ (v >> _U64(8))) & _U64(0x1F0000FF0000FF)
    v = (v ^ (v >> _U64(16))) & _U64(0x1F00000000FFFF)
    v = (v ^ (v >> _U64(32))) & _U64(0x1FFFFF)
    return v


def morton_encode(coords: np.ndarray) -> np.ndarray:
    """Morton keys (uint64) of integer coordinates ``(n, 3)`` < 2**21; x gives the high bit."""
    c = np.asarray(coords).astype(_U64)
    return (
        (_spread_bits(c[:, 0]) << _U64(2)) | (_spread_bits(c[:, 1]) << _U64(1))
    ) | _spread_bits(c[:, 2])


def morton_decode(keys: np.ndarray) -> np.ndarray:
    """Integer coordinates ``(n, 3)`` int64 of Morton keys (inverse of :func:`morton_encode`)."""
    k = np.asarray(keys, dtype=_U64)
    out = np.empty((k.shape[0], 3), dtype=np.int64)
    out[:, 0] = _compact_bits(k >> _U64(2))
    out[:, 1] = _compact_bits(k >> _U64(1))
    out[:, 2] = _compact_bits(k)
    return out


def placeholder(levels: np.ndarray) -> np.ndarray:
    """The leading bit ``1 << 3 l`` that makes (level, Morton key) one sortable uint64."""
    return _U64(1) << (_U64(3) * levels.astype(_U64))


def _axis_bits(axis: int, level: int) -> np.uint64:
    """The bits of axis ``axis`` (0: x) in a Morton key of ``level`` (without placeholder)."""
    bits = 0
    for place in range(level):
        bits |= 1 << (3 * place + 2 - axis)
    return _U64(bits)


def neighbour_keys(keys: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 26)`` Morton keys (no placeholder) of the 26 cells of ``level`` around each cell
    ``keys`` (same level, no placeholder), offsets in the order of ``(dx, dy, dz)`` over
    ``-1..1`` without ``(0, 0, 0)``, and an ``(n, 26)`` mask of those inside the cube.

    Computed on the interleaved bits (one axis's bits at a time, the others' gaps filled so a
    carry runs through them), without decoding the keys: about ten operations per neighbour
    instead of a decode and an encode."""
    keys = np.asarray(keys, dtype=_U64)
    every = _U64((1 << (3 * level)) - 1)
    shifted, inside = [], []
    for axis in range(3):
        bits = _axis_bits(axis, level)
        step = _U64(1 << (2 - axis))
        own = keys & bits
        shifted.append(((own - step) & bits, own, ((keys | (every ^ bits)) + step) & bits))
        inside.append((own != 0, np.ones(len(keys), dtype=bool), own != bits))
    out = np.empty((len(keys), 26), dtype=_U64)
    valid = np.empty((len(keys), 26), dtype=bool)
    column = 0
    for dx in range(3):
        for dy in range(3):
            for dz in range(3):
                if dx == dy == dz == 1:
                    continue
                out[:, column] = shifted[0][dx] | shifted[1][dy] | shifted[2][dz]
                valid[:, column] = inside[0][dx] & inside[1][dy] & inside[2][dz]
                column += 1
    return out, valid
