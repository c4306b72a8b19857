"""Disk cache of precomputed KIFMM operators: one ``.npz`` file per key, never trusted blindly.

Directory: ``$FMMLOOPY_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fmmloopy``, else
``~/.cache/fmmloopy``. A key (:func:`operator_key`) holds the kernel's name and a fingerprint of
its expression and homogeneity, the surface order and radii, dtype, rcond and
:data:`FORMAT_VERSION`; the file name is derived from it.

A file holds the arrays (``np.savez``, loaded with ``allow_pickle=False``) and a JSON metadata
entry: the key and a sha256 checksum of the arrays (names, dtypes, shapes, bytes). On load the
metadata must equal the expected key, the checksum must match and the caller's constructor must
accept the arrays (shapes); anything else -- unreadable, truncated, flipped bytes, another format
version, another kernel -- is reported with :class:`OperatorCacheWarning` and the file is rebuilt.
Files are written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader sees either the old file or the whole new one. If the directory is
not writable the operators are computed and used without being stored (one warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from fmmloopy.kernels import GreenKernel
from fmmloopy.surfaces import (
    DOWNWARD_CHECK_RADIUS,
    DOWNWARD_EQUIVALENT_RADIUS,
    UPWARD_CHECK_RADIUS,
    UPWARD_EQUIVALENT_RADIUS,
)

__all__ = [
    "FORMAT_VERSION",
    "OperatorCacheWarning",
    "cache_dir",
    "cache_file_status",
    "cache_path",
    "key_string",
    "load_arrays",
    "load_or_build",
    "operator_key",
    "save_arrays",
    "write_atomically",
    "write_or_warn",
]

#: Bump whenever the meaning or layout of the stored arrays changes. 2: equiangular surface
#: points and least-squares M2M/L2L/M2L (docs/kifmm.md); 1: uniform points, square fits.
FORMAT_VERSION = 2

_METADATA = "__metadata__"
_T = TypeVar("_T")
_warned_unwritable: set[str] = set()


class OperatorCacheWarning(UserWarning):
    """A cache file was rejected (and rebuilt), or the cache directory is not writable."""


class CacheFileError(Exception):
    """A cache file that must not be trusted; the message says why."""


def kernel_fingerprint(kernel: GreenKernel) -> str:
    """sha256 of the kernel's name, expression and homogeneity."""
    text = f"{kernel.name}\n{kernel.expression}\n{kernel.homogeneity!r}"
    return hashlib.sha256(text.encode()).hexdigest()


def operator_key(kernel: GreenKernel, order: int, rcond: float) -> dict[str, Any]:
    """The fields that identify one set of operators (JSON-serialisable)."""
    return {
        "format_version": FORMAT_VERSION,
        "kernel_name": kernel.name,
        "kernel_fingerprint": kernel_fingerprint(kernel),
        "order": int(order),
        "surface_radii": [UPWARD_EQUIVALENT_RADIUS, UPWARD_CHECK_RADIUS,
                          DOWNWARD_EQUIVALENT_RADIUS, DOWNWARD_CHECK_RADIUS],
        "dtype": "float64",
        "rcond": float(rcond),
    }


def key_string(key: dict[str, Any]) -> str:
    """Canonical JSON text of a key."""
    return json.dumps(key, sort_keys=True)


#: Environment variable overriding the cache directory.
CACHE_ENV = "FMMLOOPY_CACHE_DIR"


def cache_dir() -> Path:
    """The per-user cache directory (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "fmmloopy"


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


def write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Create ``path`` with ``write(stream)``: a temporary file in its directory, then
    ``os.replace``, so a reader sees either the old file or the whole new one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private to this user
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and their metadata to ``path`` atomically."""
    metadata = {"key": key, "checksum": array_checksum(arrays)}
    write_atomically(path, lambda stream: np.savez(
        stream, **arrays, **{_METADATA: np.array(json.dumps(metadata))}))


def load_arrays(path: Path, key: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read and verify the arrays stored under ``key``; CacheFileError says why not."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored[_METADATA]))
            arrays = {name: stored[name] for name in stored.files if name != _METADATA}
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
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored[_METADATA]))
            arrays = {name: stored[name] for name in stored.files if name != _METADATA}
        return "ok" if array_checksum(arrays) == metadata.get("checksum") else "corrupt"
    except Exception:
        return "corrupt"


def load_or_build(key: dict[str, Any], build: Callable[[], dict[str, np.ndarray]],
                  make: Callable[[dict[str, np.ndarray]], _T]) -> _T:
    """``make(arrays)`` from the cache file of ``key``, or from ``build()`` (then stored).

    ``make`` must raise ValueError for arrays it cannot accept (wrong shapes); such a file is
    treated like a corrupt one.
    """
    path = cache_path(key)
    if path.exists():
        try:
            return make(load_arrays(path, key))
        except (CacheFileError, ValueError) as error:
            warnings.warn(f"fmmloopy operator cache: rejected {path}: {error}; rebuilding it",
                          OperatorCacheWarning, stacklevel=3)
    arrays = build()
    result = make(arrays)
    write_or_warn(path, lambda: save_arrays(path, key, arrays),
                  f"fmmloopy operator cache: cannot write to {path.parent}",
                  "operators are computed but not cached", OperatorCacheWarning,
                  _warned_unwritable)
    return result


def write_or_warn(path: Path, write: Callable[[], Any], what: str, consequence: str,
                  category: type[Warning], warned: set[str]) -> None:
    """``write()``; if it fails with OSError, warn ``what (error); consequence`` once per
    directory (``warned`` holds the directories already reported)."""
    try:
        write()
    except OSError as error:
        if str(path.parent) not in warned:
            warned.add(str(path.parent))
            warnings.warn(f"{what} ({error}); {consequence}", category, stacklevel=4)
