"""Files of the disk caches: where they live, how they are written, and one writer per entry.

Both caches (precomputed operators, :mod:`fmmloopy.execution.operator_cache`; generated kernels,
:mod:`fmmloopy.execution.kernel_cache`) keep their files in :func:`cache_dir`. A file is written
to a temporary file in the same directory and moved into place with ``os.replace``
(:func:`write_atomically`), so a reader sees either the old file or the whole new one. A
temporary file is named ``<entry>.<host>-<pid>.<random>.tmp``; one left by a writer that died is
removed by the next write in its directory (:func:`remove_stale_temporaries`). An entry is built
under its lock (:func:`entry_lock`): one thread of one process builds it, the others wait.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fmmloopy.base.cache_location import CACHE_ENV, cache_dir  # noqa: F401 (re-exported)
from fmmloopy.base.cache_location import host_name as _host
from fmmloopy.base.cache_location import process_exists as _process_exists

try:
    import fcntl
except ImportError:  # not POSIX: threads are still serialised, processes are not
    fcntl = None


class KernelCacheWarning(UserWarning):
    """A kernel cache file was rejected (and generated again), or could not be written."""


_warned_messages: set[str] = set()


def warn_once(message: str) -> None:
    """A :class:`KernelCacheWarning` with ``message``, once per process."""
    if message not in _warned_messages:
        _warned_messages.add(message)
        warnings.warn(f"fmmloopy kernel cache: {message}", KernelCacheWarning, stacklevel=3)


def key_string(key: dict[str, Any]) -> str:
    """Canonical JSON text of a key."""
    return json.dumps(key, sort_keys=True)


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


#: The packages whose modules :func:`modules_digest` follows (the shipped recipes are installed
#: as ``fmmloopy.transforms`` from a folder of their own).
_PROJECT_PACKAGES = ("fmmloopy.transforms", "fmmloopy")


def _package_folder(package: str) -> Path:
    """The folder of one of :data:`_PROJECT_PACKAGES`."""
    return Path(importlib.import_module(package).__file__).parent


def _module_file(name: str) -> Path | None:
    """The source file of this project's module ``name`` (found from the package folders, not
    imported), None for anything else (a name imported from a module, another package)."""
    for package in _PROJECT_PACKAGES:
        if name != package and not name.startswith(package + "."):
            continue
        path = _package_folder(package)
        if name != package:
            path = path.joinpath(*name[len(package) + 1:].split("."))
            if path.with_suffix(".py").is_file():
                return path.with_suffix(".py")
        init = path / "__init__.py"
        return init if init.is_file() else None
    return None


def _imported_modules(path: Path) -> set[str]:
    """This project's modules that the file ``path`` imports (anywhere in it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if _module_file(name) is not None}


def modules_closure(*modules: str) -> dict[str, Path]:
    """The named modules of this project and every module of it they import, directly or
    through others (read from the import statements, nothing imported): name -> file."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(sorted(_imported_modules(path)))
    return dict(sorted(seen.items()))


@functools.cache
def modules_digest(*modules: str, alone: tuple[str, ...] = ()) -> str:
    """sha256 of the files of :func:`modules_closure` of ``modules`` and of the modules
    ``alone`` (their imports not followed), each module's name and bytes: what a cache entry
    made by that code is keyed by, so that an edit elsewhere in the package leaves the entry
    valid."""
    files = modules_closure(*modules) | {name: _module_file(name) for name in alone}
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(f"{name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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
