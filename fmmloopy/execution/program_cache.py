"""Built OpenCL programs: each source built once per process, and kept across processes as the
device's own binary (``<cache_dir>/programs``).

PoCL compiles a kernel's OpenCL source in a fraction of a second. A later process that builds
the same source finds it in PoCL's own cache, which still costs tens of milliseconds a program;
a program created from the binary PoCL returned for it builds in about a millisecond
(docs/performance.md, "Start-up: disk caches"; docs/history.md, 2026-11-25, "The built
programs' cache, as first measured"). So :func:`built_program` builds a source once per context
and keeps it for the process, and stores the binary for later processes once the source is
built a second time.

Why not at once: asking PoCL for a binary costs a compile of its own (the kernel for any
work-group size), far more than each later process that loads it saves (docs/history.md,
the same section). A source built once (a checked or tuned candidate, a one-off size) would pay
and never gain: the first build from source leaves a mark (``<key>.seen``, empty), the second
one, in another process, stores the binary.

What a binary is reused for: the exact source text, build options, device (the platform and
the properties of :func:`~fmmloopy.execution.kernel_cache.device_fingerprint`, driver version
included) and pyopencl version it was built for, all in the key; nothing else is cached, so a
recipe is still applied and its code generated in every process wherever the kernel cache says
so (the check's workers, ``FMMLOOPY_KERNEL_CACHE=store``, reuse only the binaries of
identical sources, as PoCL's own cache would). ``FMMLOOPY_KERNEL_CACHE=off`` turns this off too.

Trust: the kernel cache's rules. The directory and each file must be owned by this user and
writable by nobody else; a file holds one line of JSON (format, key, size and sha256 of the
binary) and the binary. A file that fails any check, or whose binary the driver refuses, is
deleted with a :class:`~fmmloopy.execution.kernel_cache.KernelCacheWarning` and the source is
built instead. A binary is device code, as the compiled objects in PoCL's own cache are (which
PoCL loads without a digest).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyopencl as cl

from fmmloopy.execution.cache_files import cache_dir, key_string, write_atomically, write_or_warn
from fmmloopy.execution.kernel_cache import (
    KernelCacheWarning,
    device_fingerprint,
    programs_enabled,
    read_trusted,
    reject,
    trusted_directory,
)

#: Bump when the file layout or the key's meaning changes.
FORMAT_VERSION = 1
#: Suffix of a program file.
SUFFIX = ".bin"
#: Suffix of the mark of a source built once from its source (module docstring).
SEEN_SUFFIX = ".seen"

#: How each program of this process was obtained: ``source`` (built by the driver), ``binary``
#: (from a program file), ``memory`` (built before in this process).
ORIGINS: Counter[str] = Counter()

_BUILT: dict[tuple[int, str], cl.Program] = {}
_LOCK = threading.Lock()
_warned_unwritable: set[str] = set()


def programs_dir() -> Path:
    """Where program files live."""
    return cache_dir() / "programs"


def program_key(device: cl.Device, source: str, options: Sequence[str]) -> str:
    """sha256 of what a binary was built from: the source, the options, the device, the
    versions of pyopencl and of this file layout."""
    key = {"format_version": FORMAT_VERSION, "pyopencl": cl.VERSION_TEXT,
           "source": hashlib.sha256(source.encode()).hexdigest(), "options": list(options),
           "device": device_fingerprint(device)}
    return hashlib.sha256(key_string(key).encode()).hexdigest()


def built_program(context: cl.Context, source: str, options: Sequence[str] = ()) -> cl.Program:
    """``source`` built with ``options`` in ``context``: the program built before in this
    process, else from its stored binary, else from the source (its binary stored if the
    source was built from source before: its mark, or a rejected binary)."""
    options = tuple(options)
    single = len(context.devices) == 1
    key = program_key(context.devices[0], source, options) if single else None
    memo = (context.int_ptr, key or hashlib.sha256(repr((source, options)).encode()).hexdigest())
    with _LOCK:
        program = _BUILT.get(memo)
    if program is not None:
        ORIGINS["memory"] += 1
        return program
    program, rejected = _load(context, key, options) if single else (None, False)
    if program is None:
        # Not PyOpenCL's own binary cache: its key leaves out what the runtime is told to
        # target ($CL_CONFIG_CPU_TARGET_ARCH), and this module keeps the binaries itself.
        program = cl.Program(context, source).build(options=list(options), cache_dir=False)
        ORIGINS["source"] += 1
        if single:
            _store(key, program, reused=rejected)
    else:
        ORIGINS["binary"] += 1
    with _LOCK:  # the program keeps its context alive, so the context's address stays its own
        return _BUILT.setdefault(memo, program)


def forget_programs() -> None:
    """Drop this process's built programs (the next build reads the files again)."""
    with _LOCK:
        _BUILT.clear()


def _directory(create: bool) -> Path | None:
    if not programs_enabled():
        return None
    return trusted_directory(programs_dir(), create, "programs are built from their source")


def _header(key: str, binary: bytes) -> dict:
    return {"format_version": FORMAT_VERSION, "key": key, "size": len(binary),
            "sha256": hashlib.sha256(binary).hexdigest()}


def _parse(stored: bytes) -> tuple[dict, bytes]:
    """The header and binary of a program file, or ValueError saying what is wrong."""
    line, newline, binary = stored.partition(b"\n")
    if not newline:
        raise ValueError("no header line")
    header = json.loads(line.decode("utf-8"))
    if not isinstance(header, dict) or set(header) != {"format_version", "key", "size",
                                                      "sha256"}:
        raise ValueError("not a program file")
    if header != _header(header["key"], binary):
        raise ValueError("the binary's size or digest does not match its header")
    return header, binary


#: What is done instead of loading a rejected or unreadable program file.
_BUILD_SOURCE = "building the program from its source"


def _load(context: cl.Context, key: str, options: tuple[str, ...]
          ) -> tuple[cl.Program | None, bool]:
    """The program built from its stored binary, or None; and whether a file was there and
    rejected (the source was built before: its binary is stored again at once)."""
    if _directory(create=False) is None:
        return None, False
    path = programs_dir() / f"{key}{SUFFIX}"
    if not path.exists():
        return None, False
    stored = read_trusted(path, _BUILD_SOURCE)
    if stored is None:
        return None, True
    try:
        header, binary = _parse(stored)
        if header["key"] != key:
            raise ValueError("the stored key differs from the expected one")
        return cl.Program(context, list(context.devices), [binary]).build(
            options=list(options)), False
    except Exception as error:  # a file that cannot be read or built is not trusted
        reject(path, f"{type(error).__name__}: {error}", _BUILD_SOURCE)
        return None, True


def _store(key: str, program: cl.Program, reused: bool) -> None:
    """Store ``program``'s binary if its source was built before (``reused``, or its mark is
    there); else leave the mark."""
    if _directory(create=True) is None:
        return
    mark = programs_dir() / f"{key}{SEEN_SUFFIX}"
    if not (reused or mark.exists()):
        _write(mark, lambda: mark.touch(mode=0o600))
        return
    try:
        binary = bytes(program.get_info(cl.program_info.BINARIES)[0])
    except cl.Error:
        return  # a driver that gives no binary: nothing to store
    if not binary:
        return
    path = programs_dir() / f"{key}{SUFFIX}"
    text = json.dumps(_header(key, binary), sort_keys=True).encode() + b"\n" + binary

    def write_binary_drop_mark():
        write_atomically(path, lambda stream: stream.write(text))
        mark.unlink(missing_ok=True)
    _write(path, write_binary_drop_mark)


def _write(path: Path, write) -> None:
    """``write()`` a file of the programs' directory, warning once if it cannot."""
    write_or_warn(path, write, f"fmmloopy kernel cache: cannot write to {path.parent}",
                  "programs are built but not cached", KernelCacheWarning, _warned_unwritable)


def program_file_status(path: Path) -> str:
    """``ok``, ``built once`` for a mark, or why :func:`built_program` would reject the
    program file ``path``."""
    if path.name.endswith(SEEN_SUFFIX):
        return "built once" if path.stat().st_size == 0 else "corrupt"
    try:
        header, _ = _parse(path.read_bytes())
    except Exception:
        return "corrupt"
    if path.name != f"{header['key']}{SUFFIX}":
        return "corrupt"
    return "ok"
