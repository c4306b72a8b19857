"""Disk cache of generated kernels: a second process skips loopy and the recipe altogether.

What is stored, per (operator, recipe, sizes, dtype, Green's function, device), is what running a
transformed kernel needs (:class:`GeneratedKernel`): the OpenCL source, its build options,
loopy's host-side launcher (a pickled Python function) and the argument names. A warm start then
costs one small file read and one OpenCL build from PyOpenCL's and PoCL's binary caches
(~25 ms a kernel here) instead of building the math-level kernel, applying the recipe, and
loopy's cache look-ups (~0.1-0.2 s a kernel).

The key (:func:`kernel_key`) holds everything the generated code depends on:

- the operator, its sizes, dtype, the Green's function's fingerprint and the recipe's list layout;
- the recipe's name and function and a sha256 of the file that defines it and of the user files
  it draws on (:func:`_recipe_sources_digest`);
- a sha256 of every module of ``fmmloopy`` and ``transforms`` (templates, transform tools);
- the versions of Python, loopy, pyopencl, pymbolic, islpy and numpy;
- the device: platform, name, vendor, versions and the properties a recipe may read
  (:func:`device_fingerprint`; not its memory sizes, which PoCL sets from the free memory).

The recipe's sources are its own file and the user files that file draws on (modules, functions
or classes it names, followed transitively; installed packages are keyed by version instead), so
editing a helper in another file of one's own also regenerates the kernel. What this cannot see
(code reached only through ``importlib`` at call time, data files a recipe reads) needs
``FMMLOOPY_KERNEL_CACHE=off``. Recipes without a source file (defined in an interactive session)
are never stored.

Files live in ``<cache_dir>/kernels`` (:func:`fmmloopy.operator_cache.cache_dir`), are written
atomically and are checked on load: a file that cannot be read or whose stored key differs is
reported with :class:`KernelCacheWarning` and generated again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import pickle
import platform
import site
import sys
import sysconfig
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyopencl as cl

from fmmloopy.operator_cache import (
    cache_dir,
    kernel_fingerprint,
    key_string,
    write_atomically,
    write_or_warn,
)

#: Bump whenever :class:`GeneratedKernel` or the meaning of a key changes.
FORMAT_VERSION = 2

#: Environment variable: ``off`` (or ``0``, ``no``, ``false``) disables the kernel cache.
KERNEL_CACHE_ENV = "FMMLOOPY_KERNEL_CACHE"

#: This project's packages: every source file of theirs is in every key.
_PACKAGED = ("fmmloopy", "transforms")
_PACKAGES = ("loopy", "pyopencl", "pymbolic", "islpy", "numpy")
_DEVICE_PROPERTIES = (
    "name", "vendor", "version", "driver_version", "type", "max_compute_units",
    "max_work_group_size", "max_work_item_sizes", "local_mem_size",
    "preferred_vector_width_double", "preferred_vector_width_float",
    "native_vector_width_double", "address_bits", "extensions")
# Not global_mem_size or max_mem_alloc_size: PoCL derives them from the memory free when it
# starts, which would change the key from one process to the next.
_warned_unwritable: set[str] = set()


class KernelCacheWarning(UserWarning):
    """A kernel cache file was rejected (and generated again), or could not be written."""


@dataclass(frozen=True)
class GeneratedKernel:
    """What running one transformed kernel needs, without loopy: code, launcher, argument names."""

    device_code: str
    build_options: tuple[str, ...]
    #: loopy's generated host code: ``invoker(cl_kernels, queue, allocator, wait_for,
    #: out_host, **arguments) -> (event, outputs)``.
    invoker: Any
    argument_names: tuple[str, ...]
    input_array_names: frozenset[str]
    written_names: tuple[str, ...]
    #: Arrays whose shape the recipe split: name -> (math-level shape, kernel shape).
    reshaped: dict[str, tuple[tuple, tuple]]


def enabled() -> bool:
    """False when ``$FMMLOOPY_KERNEL_CACHE`` says ``off``/``0``/``no``/``false``."""
    return os.environ.get(KERNEL_CACHE_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def device_fingerprint(device: cl.Device) -> dict[str, str]:
    """The platform and the device properties a recipe may base a decision on, as text."""
    fingerprint = {"platform": f"{device.platform.name} {device.platform.version}"}
    for name in _DEVICE_PROPERTIES:
        try:
            fingerprint[name] = str(getattr(device, name))
        except cl.Error:  # a property this device does not report
            fingerprint[name] = "?"
    return fingerprint


@functools.cache
def _package_sources_digest() -> str:
    """sha256 of every ``.py`` file of ``fmmloopy`` and ``transforms`` (names and bytes)."""
    digest = hashlib.sha256()
    for package in map(importlib.import_module, _PACKAGED):
        root = Path(package.__file__).parent
        for path in sorted(root.glob("*.py")):
            digest.update(f"{package.__name__}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "?"
    return versions


@functools.cache
def _not_user_code() -> tuple[str, ...]:
    """Folders whose files are not a recipe author's own: the standard library, site-packages,
    and this project's packages (all of whose sources are in every key already)."""
    roots = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    roots.update(str(Path(importlib.import_module(name).__file__).parent) for name in _PACKAGED)
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots)


def _user_module(value: Any) -> tuple[str, dict] | None:
    """The ``.py`` file and namespace of the user module that ``value`` is or comes from.

    None for installed code, this project's packages and anything without a file.
    """
    if isinstance(value, types.ModuleType):
        module = value
    else:
        try:
            name = getattr(value, "__module__", None)
        except Exception:  # an object whose attribute look-up raises is no module
            return None
        module = sys.modules.get(name) if isinstance(name, str) else None
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py") or not os.path.isfile(path):
        return None
    path = os.path.realpath(path)
    if path.startswith(_not_user_code()):
        return None
    return path, vars(module)


def _recipe_sources_digest(function: Any) -> str | None:
    """sha256 of the recipe's file and of the user files it draws on, or None without a file.

    Starting from the file that defines ``function``, the modules (and functions, classes) that
    file's namespace names are followed, transitively, as long as they are the user's own files
    (not installed packages, not ``fmmloopy``/``transforms``): a helper edited in another file
    changes the key as an edit of the recipe's own file does.
    """
    try:
        path = inspect.getsourcefile(function)
    except TypeError:
        return None
    if path is None or not os.path.isfile(path):
        return None
    pending = [(os.path.realpath(path), getattr(function, "__globals__", {}))]
    visited: set[str] = set()
    while pending:
        path, namespace = pending.pop()
        if path in visited:
            continue
        visited.add(path)
        for value in list(namespace.values()):
            found = _user_module(value)
            if found is not None and found[0] not in visited:
                pending.append(found)
    digest = hashlib.sha256()
    for path in sorted(visited):
        digest.update(f"{path}\n".encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def kernel_key(operator: str, recipe: Any, device: cl.Device, green: Any, dtype: Any,
               sizes: dict[str, int]) -> dict[str, Any] | None:
    """The key of one generated kernel (JSON-serialisable), or None when it must not be stored."""
    recipe_sources = _recipe_sources_digest(recipe.function)
    if recipe_sources is None:
        return None
    return {
        "format_version": FORMAT_VERSION,
        "operator": operator,
        "sizes": {name: int(value) for name, value in sorted(sizes.items())},
        "dtype": str(dtype),
        "kernel": green.name,
        "kernel_fingerprint": kernel_fingerprint(green),
        "recipe": [recipe.name, recipe.device, list(recipe.targets),
                   getattr(recipe.function, "__qualname__", "?"), repr(recipe.layout)],
        "recipe_sources": recipe_sources,
        "package_sources": _package_sources_digest(),
        "versions": _versions(),
        "device": device_fingerprint(device),
    }


def kernel_path(key: dict[str, Any]) -> Path:
    """The file of ``key``: operator and recipe name, then a hash of the whole key."""
    digest = hashlib.sha256(key_string(key).encode()).hexdigest()[:24]
    return cache_dir() / "kernels" / f"{key['operator']}-{key['recipe'][0]}-{digest}.pickle"


def load(key: dict[str, Any] | None) -> GeneratedKernel | None:
    """The kernel stored under ``key``, or None (missing, disabled, or rejected with a warning)."""
    if key is None or not enabled():
        return None
    path = kernel_path(key)
    try:
        stored = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        warnings.warn(f"fmmloopy kernel cache: cannot read {path} ({error}); generating the "
                      "kernel again", KernelCacheWarning, stacklevel=3)
        return None
    try:
        entry = pickle.loads(stored)
        if not isinstance(entry, dict) or entry.get("key") != key:
            raise ValueError("the stored key differs from the expected one")
        kernel = entry["kernel"]
        if not isinstance(kernel, GeneratedKernel):
            raise ValueError(f"the stored object is a {type(kernel).__name__}")
    except Exception as error:  # any failure to read means the file cannot be trusted
        warnings.warn(f"fmmloopy kernel cache: rejected {path} ({type(error).__name__}: "
                      f"{error}); generating the kernel again", KernelCacheWarning, stacklevel=3)
        return None
    return kernel


def store(key: dict[str, Any] | None, kernel: GeneratedKernel) -> None:
    """Write ``kernel`` under ``key`` (atomically); an unwritable directory warns once."""
    if key is None or not enabled():
        return
    path = kernel_path(key)
    data = pickle.dumps({"key": key, "kernel": kernel}, protocol=pickle.HIGHEST_PROTOCOL)
    write_or_warn(path, lambda: write_atomically(path, lambda stream: stream.write(data)),
                  f"fmmloopy kernel cache: cannot write to {path.parent}",
                  "kernels are generated but not cached", KernelCacheWarning,
                  _warned_unwritable)
