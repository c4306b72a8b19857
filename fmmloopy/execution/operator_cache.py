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

A missing or rejected entry is built under its lock (:func:`entry_lock`): one thread of one
process builds it, the others wait and then load it. A temporary file is named
``<entry>.<host>-<pid>.<random>.tmp``; one left by a writer that died is removed by the next
:func:`load_or_build` or write in its directory (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: threads are still serialised, processes are not
    fcntl = None

from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.surfaces import (
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
    "entry_lock",
    "key_string",
    "load_arrays",
    "load_or_build",
    "operator_key",
    "remove_stale_temporaries",
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


# {{{ temporary files of writers that died

#: A temporary file not modified for this long is removed. A writer creates its temporary only
#: once the arrays are built and writes it in one go (``np.savez``, fsync, rename): seconds, each
#: write updating the modification time; untouched for an hour, its writer is gone.
STALE_TEMPORARY_AGE = 3600.0
#: A temporary file whose name records this host and a process that no longer exists is removed
#: once it is this old (the grace covers another PID namespace with the same host name).
DEAD_WRITER_GRACE = 60.0

# ``<entry>.<host>-<pid>.<random>.tmp`` (``<entry>.<random>.tmp`` before writer tags); only the
# entries of the two caches, ``.npz`` and ``.json``.
_TEMPORARY = re.compile(
    r"(?P<entry>.+\.(?:npz|json))\.(?:(?P<host>[A-Za-z0-9_-]*)-(?P<pid>[0-9]+)\.)?"
    r"[a-z0-9_]+\.tmp")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def _process_exists(pid: int) -> bool:
    """False only if this host certainly has no process ``pid`` (POSIX ``kill(pid, 0)``)."""
    if os.name != "posix" or pid <= 0:  # on Windows os.kill would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, as another user's
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files in ``directory`` (the cache's own naming pattern only) left by
    writers that died: untouched for :data:`STALE_TEMPORARY_AGE`, or written on this host by a
    process that no longer exists and older than :data:`DEAD_WRITER_GRACE`. The removed paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now, host = time.time(), _host()
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None:
            continue
        path = directory / name
        try:
            age = now - path.lstat().st_mtime
            stale = age > STALE_TEMPORARY_AGE or (
                match["pid"] is not None and match["host"] == host and age > DEAD_WRITER_GRACE
                and not _process_exists(int(match["pid"])))
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already (another process cleaned up), or not ours to delete
            continue
    return removed

# }}}


def write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Create ``path`` with ``write(stream)``: a temporary file in its directory, then
    ``os.replace``, so a reader sees either the old file or the whole new one. Stale temporary
    files in the directory are removed first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private to this user
    remove_stale_temporaries(path.parent)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".tmp",
                                     prefix=f"{path.name}.{_host()}-{os.getpid()}.")
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


# {{{ one builder per entry

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_held_files: list[list[int]] = []  # [descriptor] of each lock file this process holds


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's locks: fresh thread locks, and the inherited
    lock files closed (else the lock would outlive the parent's release)."""
    global _thread_locks, _thread_locks_guard
    _thread_locks, _thread_locks_guard = {}, threading.Lock()
    for held in _held_files:
        with contextlib.suppress(OSError):
            os.close(held[0])
        held[0] = -1
    _held_files.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _lock_file(lock_path: Path) -> int | None:
    """A descriptor of ``lock_path`` holding an exclusive ``flock``, or None where there is no
    fcntl, the directory cannot be written or the file system refuses locks."""
    if fcntl is None:
        return None
    try:
        lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(lock_path)
            if os.path.samestat(os.fstat(fd), current):
                return fd
        except FileNotFoundError:
            pass
        except OSError:  # locks refused (some network file systems): none, and no litter
            os.close(fd)
            with contextlib.suppress(OSError):
                lock_path.unlink()
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its previous holder deleted the file on release: lock the new one


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold the lock of the cache entry ``path``: a ``threading.Lock`` per entry among this
    process's threads, then an exclusive ``flock`` on ``<entry>.lock`` among processes (none
    where that is refused). The holder deletes the lock file on release; a killed holder's
    ``flock`` is released by the system. Not re-entrant."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(str(path), threading.Lock())
    with thread_lock:
        lock_path = path.with_name(path.name + ".lock")
        held = [_lock_file(lock_path)]
        if held[0] is None:
            yield
            return
        _held_files.append(held)
        try:
            yield
        finally:
            if held[0] >= 0:  # not closed by a fork
                with contextlib.suppress(OSError):
                    lock_path.unlink()  # waiters on this file see it gone and lock the next
                os.close(held[0])
                _held_files.remove(held)

# }}}


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
