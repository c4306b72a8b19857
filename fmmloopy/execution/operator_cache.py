"""Disk cache of precomputed KIFMM operators: one ``.npz`` file per key, never trusted blindly.

Directory: :func:`fmmloopy.execution.cache_files.cache_dir`. A key (:func:`operator_key`) holds
the kernel's name and a fingerprint of its expression and homogeneity, the surface order and radii,
dtype, rcond, :data:`FORMAT_VERSION` and a sha256 of the math layer's sources (the precomputation
is made of them: an edited cutoff or surface cannot load operators computed before); the file
name is derived from it.

A file holds the arrays (``np.savez``, loaded with ``allow_pickle=False``) and a JSON metadata
entry: the key and a sha256 checksum of the arrays (names, dtypes, shapes, bytes). On load the
metadata must equal the expected key, the checksum must match and the caller's constructor must
accept the arrays (shapes); anything else -- unreadable, truncated, flipped bytes, another format
version, another kernel -- is reported with :class:`OperatorCacheWarning` and the file is rebuilt.
Files are written atomically and a missing or rejected entry is built under its lock, one
builder per entry, the others waiting and then loading it (:mod:`fmmloopy.execution.cache_files`).
If the directory is not writable the operators are computed and used without being stored (one
warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fmmloopy.execution.cache_files import (
    cache_dir,
    entry_lock,
    key_string,
    modules_digest,
    remove_stale_temporaries,
    write_atomically,
    write_or_warn,
)
from fmmloopy.maths.expansion import SURFACE_RADII
from fmmloopy.maths.green import GreenKernel
from fmmloopy.tuning.device_facts import M2L_RANK_MULTIPLE

__all__ = [
    "FORMAT_VERSION",
    "OperatorCacheWarning",
    "cache_file_status",
    "cache_path",
    "load_arrays",
    "load_or_build",
    "operator_key",
    "save_arrays",
    "store",
]

#: Bump whenever the meaning or layout of the stored arrays changes. 6: the dense M2L in a file
#: of its own (read only where asked for); 5: a set per box
#: half-width (kernels without homogeneity); 4: the compressed M2L in
#: 18 classes (band and direction); 3: the SVD-compressed M2L
#: added; 2: equiangular surface points and least-squares M2M/L2L/M2L (docs/kifmm.md);
#: 1: uniform points, square fits.
FORMAT_VERSION = 6

_METADATA = "__metadata__"
_T = TypeVar("_T")
_warned_unwritable: set[str] = set()


class OperatorCacheWarning(UserWarning):
    """A cache file was rejected (and rebuilt), or the cache directory is not writable."""


class CacheFileError(Exception):
    """A cache file that must not be trusted; the message says why."""


def kernel_fingerprint(kernel: GreenKernel) -> str:
    """sha256 of the kernel's name, expression, parameters, homogeneity and fields (what a
    pairwise sum with it takes and produces: a gradient's kernel is another kernel)."""
    text = (f"{kernel.name}\n{kernel.expression}\n{kernel.parameters!r}\n"
            f"{kernel.homogeneity!r}\n{kernel.outputs!r}\n{kernel.inputs!r}")
    return hashlib.sha256(text.encode()).hexdigest()


#: The modules that compute the stored operators (the KIFMM matrices, the periodic lattices'):
#: with every module of the package they import, what an entry is keyed by.
OPERATOR_MAKERS = ("fmmloopy.maths.precompute", "fmmloopy.maths.periodic")


def maths_sources_digest() -> str:
    """sha256 of the modules that compute the operators and of every module they import
    (:data:`OPERATOR_MAKERS`; an edit of the templates or the driver keeps the stored sets)."""
    return modules_digest(*OPERATOR_MAKERS)


def operator_key(kernel: GreenKernel, order: int, rcond: float,
                 half_width: float = 1.0) -> dict[str, Any]:
    """The fields that identify one set of operators (JSON-serialisable): the kernel and its
    parameters, the order, the cutoff and the box's half-width (a kernel without homogeneity
    has a set per level)."""
    return {
        "format_version": FORMAT_VERSION,
        "maths_sources": maths_sources_digest(),
        "kernel_name": kernel.name,
        "kernel_fingerprint": kernel_fingerprint(kernel),
        "order": int(order),
        "surface_radii": list(SURFACE_RADII.values()),
        "dtype": kernel.value_dtype().name,
        "rcond": float(rcond),
        "half_width": float(half_width).hex(),
        "rank_multiple": M2L_RANK_MULTIPLE,
    }


def cache_path(key: dict[str, Any]) -> Path:
    """The file of ``key`` in :func:`cache_dir`: readable prefix plus a hash of the whole key."""
    digest = hashlib.sha256(key_string(key).encode()).hexdigest()[:16]
    name = f"kifmm-{key['kernel_name']}-order{key['order']}-v{key['format_version']}-{digest}.npz"
    return cache_dir() / name


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, dtypes, shapes and C-order bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.data)
    return digest.hexdigest()


def save_arrays(path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and their metadata to ``path`` atomically."""
    metadata = {"key": key, "checksum": array_checksum(arrays)}
    write_atomically(path, lambda stream: np.savez(
        stream, **arrays, **{_METADATA: np.array(json.dumps(metadata))}))


def _read(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The metadata and arrays of ``path``. The file is opened here, not by ``np.load``, which
    leaves its own file open when the zip is corrupt."""
    with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as stored:
        metadata = json.loads(str(stored[_METADATA]))
        return metadata, {name: stored[name] for name in stored.files if name != _METADATA}


def load_arrays(path: Path, key: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read and verify the arrays stored under ``key``; CacheFileError says why not."""
    try:
        metadata, arrays = _read(path)
    except Exception as error:  # any failure to read means the file cannot be trusted
        raise CacheFileError(f"unreadable ({type(error).__name__}: {error})") from error
    stored_key = metadata.get("key") if isinstance(metadata, dict) else None
    if stored_key != key:
        raise CacheFileError(f"metadata {stored_key!r} does not match the expected key {key!r}")
    if array_checksum(arrays) != metadata.get("checksum"):
        raise CacheFileError("checksum of the arrays does not match")
    return arrays


def cache_file_status(path: Path) -> str:
    """``ok`` if the operator file ``path`` reads and its checksum matches its arrays, else
    ``corrupt`` (for ``fmmloopy cache list``)."""
    try:
        metadata, arrays = _read(path)
        return "ok" if array_checksum(arrays) == metadata.get("checksum") else "corrupt"
    except Exception:
        return "corrupt"


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """Device, inode, size and modification time of ``path``, or None if it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


_MISSING = object()


def _load(path: Path, key: dict[str, Any], make: Callable[[dict[str, np.ndarray]], _T],
          rejected: tuple | None) -> tuple[Any, tuple | None]:
    """``(make(arrays), rejected)`` from ``path``, or ``(_MISSING, identity of the rejected
    file)``; a file that is missing, or is the one ``rejected`` before, is not read."""
    found = _identity(path)
    if found is None or found == rejected:
        return _MISSING, rejected
    try:
        return make(load_arrays(path, key)), rejected
    except (CacheFileError, ValueError) as error:
        warnings.warn(f"fmmloopy operator cache: rejected {path}: {error}; rebuilding it",
                      OperatorCacheWarning, stacklevel=4)
        return _MISSING, found


def load_or_build(key: dict[str, Any], build: Callable[[], dict[str, np.ndarray]],
                  make: Callable[[dict[str, np.ndarray]], _T]) -> _T:
    """``make(arrays)`` from the cache file of ``key``, or from ``build()`` (then stored).

    ``make`` must raise ValueError for arrays it cannot accept (wrong shapes); such a file is
    treated like a corrupt one. A missing or rejected file is built under :func:`entry_lock`;
    one that another process wrote meanwhile is loaded instead.
    """
    path = cache_path(key)
    remove_stale_temporaries(path.parent)
    result, rejected = _load(path, key, make, None)
    if result is not _MISSING:
        return result
    with entry_lock(path):
        result, _ = _load(path, key, make, rejected)
        if result is not _MISSING:
            return result
        arrays = build()
        result = make(arrays)
        _write(path, key, arrays)
        return result


def store(key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as the cache file of ``key`` (replacing one there); where the cache
    directory cannot be written, warn once and go on."""
    path = cache_path(key)
    with entry_lock(path):
        _write(path, key, arrays)


def _write(path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """:func:`save_arrays`, or where the directory cannot be written, a warning (once)."""
    write_or_warn(path, lambda: save_arrays(path, key, arrays),
                  f"fmmloopy operator cache: cannot write to {path.parent}",
                  "operators are computed but not cached", OperatorCacheWarning,
                  _warned_unwritable)
