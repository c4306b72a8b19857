"""Disk cache of the generated kernels of the shipped recipes: data, verified before use.

A second process skips the math-level kernel, the recipe and loopy for the kernels of the shipped
recipes: it reads what running one kernel needs
(:class:`~fmmloopy.execution.generated_kernel.GeneratedKernel`), all of it *data*: the OpenCL
source, its build options, the device kernel's name, its arguments in order (name, scalar or array,
dtype, shape as an expression in the scalar arguments), the launch grid as expressions in the scalar
arguments, the names of the outputs, and the arrays whose shape a recipe split
(:mod:`fmmloopy.execution.generation` describes it). :class:`fmmloopy.execution.launcher.Launcher`
runs it and checks every argument first; nothing read from a cache file is executed as Python, and
expressions are parsed with pymbolic's parser and evaluated over integers only. Describing a kernel
as data takes loopy's internals (:mod:`fmmloopy.tuning.loopy_internals`); when they moved, kernels
are generated through loopy's executor and not stored (one warning).

Which kernels are stored. Only those of the shipped recipes, unmodified
(:func:`fmmloopy.tuning.shipped.is_shipped`): their sources are files of this package, in the
key. A user's recipe is applied anew in every process -- whatever its file, the
helpers it imports, the environment variables or data files it reads say *now* is what runs --
and loopy's own caches, keyed by the transformed kernel itself, are what may skip its code
generation when nothing changed (in this process and in later ones: the templates give every kernel
a hash that does not depend on the process, docs/performance.md, "Kernel cache: public API vs
internals"). So no recipe outside the package can be served a stale kernel.

The key (:func:`kernel_key`) holds the operator, its sizes, dtype, the Green's function's
fingerprint, the recipe (name, device class, targets, function, layout), a sha256 of the modules
that generate kernels and of every module of the package they import
(:func:`generator_digest`: an edit of the driver, the tree or the API keeps the stored kernels;
one of a template, a recipe or a building block of recipes does not), the versions of Python,
loopy, pyopencl, pymbolic,
islpy and numpy, and the device (platform, name, vendor, versions, the properties a recipe may
read; not its memory sizes, which PoCL sets from the free memory at start-up).

A file (``<cache_dir>/kernels/<operator>-<recipe>-<hash of the key>.json``) holds JSON: the key,
the kernel and a sha256 of both. On load the file must parse, its key must equal the expected
one, the digest must match and every field must have its type; anything else is reported with
:class:`KernelCacheWarning`, the file is deleted and the kernel generated again. The digest
guards against corruption, not against someone who can write the directory: files are read only
from a directory owned by the user and writable by nobody else (created with mode 0700), and
only if the file is owned by the user and writable by nobody else, as ssh and pip insist; a
directory that fails this is neither read nor written (one warning). ``FMMLOOPY_KERNEL_CACHE=off``
switches the cache off, and the built programs' binaries with it
(:mod:`fmmloopy.execution.program_cache`); ``FMMLOOPY_KERNEL_CACHE=programs`` keeps the binaries
only; ``fmmloopy cache list`` and ``fmmloopy cache clear`` show and empty both.

Why one module of some 340 lines (a fifth of it this docstring): the key, the checks on reading a
file (ownership, permissions, digest, fields) and the listing and clearing all follow one file
layout and one set of trust rules; split apart, each part would have to restate them. The data
format, its generation from loopy and its launch are modules of their own.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import stat
import warnings
from pathlib import Path
from typing import Any

import pyopencl as cl

from fmmloopy.base.compiler_probe import COMPILE_ENVIRONMENT
from fmmloopy.base.devices import vector_doubles
from fmmloopy.execution.cache_files import (  # noqa: F401 (KernelCacheWarning, warn_once)
    CACHE_ENV,
    KernelCacheWarning,
    cache_dir,
    key_string,
    modules_digest,
    warn_once,
    write_atomically,
    write_or_warn,
)
from fmmloopy.execution.generated_kernel import GeneratedKernel
from fmmloopy.execution.operator_cache import kernel_fingerprint
from fmmloopy.tuning.shipped import SHIPPED_SHA256, is_shipped

#: Bump whenever :class:`~fmmloopy.execution.generated_kernel.GeneratedKernel` or the meaning of
#: a key changes. 3: JSON, data only. 4: keyed by the generating modules, not the package.
FORMAT_VERSION = 4

#: Environment variable: ``off`` (or ``0``, ``no``, ``false``) disables the kernel cache.
KERNEL_CACHE_ENV = "FMMLOOPY_KERNEL_CACHE"

_PACKAGES = ("loopy", "pyopencl", "pymbolic", "islpy", "numpy")
_DEVICE_PROPERTIES = (
    "name", "vendor", "version", "driver_version", "type", "max_compute_units",
    "max_work_group_size", "max_work_item_sizes", "local_mem_size",
    "preferred_vector_width_double", "preferred_vector_width_float",
    "native_vector_width_double", "address_bits", "extensions")
# Not global_mem_size or max_mem_alloc_size: PoCL derives them from the memory free when it
# starts, which would change the key from one process to the next.
_warned_unwritable: set[str] = set()
_warned_unsafe: set[str] = set()

#: Suffix of a kernel cache file.
SUFFIX = ".json"




#: ``$FMMLOOPY_KERNEL_CACHE`` values that switch off generated kernels and built programs alike.
_OFF = ("off", "0", "no", "false")
#: The value that keeps built programs only (:mod:`fmmloopy.execution.program_cache`): every
#: kernel generated anew, a source built before loaded as the device's binary.
PROGRAMS_ONLY = "programs"
#: The value that never reads a generated kernel but stores those it generates, and keeps built
#: programs (the check's workers: they apply every recipe anew, and what they generate for a
#: shipped recipe spares a later process generating it again).
STORE_ONLY = "store"


def _mode() -> str:
    return os.environ.get(KERNEL_CACHE_ENV, "").strip().lower()


def enabled() -> bool:
    """Whether generated kernels are read from the cache: False when ``$FMMLOOPY_KERNEL_CACHE``
    says ``off``/``0``/``no``/``false``, ``programs`` or ``store``."""
    return _mode() not in (*_OFF, PROGRAMS_ONLY, STORE_ONLY)


def storing() -> bool:
    """Whether generated kernels are stored: :func:`enabled`, or ``store``."""
    return enabled() or _mode() == STORE_ONLY


def programs_enabled() -> bool:
    """Whether built programs are read and stored: unless ``$FMMLOOPY_KERNEL_CACHE`` says
    ``off``/``0``/``no``/``false``."""
    return _mode() not in _OFF


def device_fingerprint(device: cl.Device) -> dict[str, str]:
    """The platform and the device properties a recipe may base a decision on, as text."""
    fingerprint = {"platform": f"{device.platform.name} {device.platform.version}"}
    for name in _DEVICE_PROPERTIES:
        try:
            fingerprint[name] = str(getattr(device, name))
        except cl.Error:  # a property this device does not report
            fingerprint[name] = "?"
    # What the recipes take the vectors to be (an override of the device's own, to run another
    # class's paths, changes the kernels they make).
    fingerprint["vector_doubles_for_recipes"] = str(vector_doubles(device))
    # What the runtime is told to compile for (Intel's target instruction set: one machine
    # builds what AVX2 or SSE4.2 machines will; a binary of one target never serves another).
    for name in COMPILE_ENVIRONMENT:
        if os.environ.get(name) is not None:
            fingerprint[f"environment {name}"] = os.environ[name]
    return fingerprint


#: What generates the operators' kernels, with every module of the package they import: the
#: math-level kernels (templates, Green's functions), the recipes (the shipped ones are loaded
#: by name) and their building blocks, the race analysis that silences benign races, the
#: description of the generated code; :data:`OPERATOR_GENERATORS_ALONE` without their imports.
OPERATOR_GENERATORS = ("fmmloopy.maths.operators", "fmmloopy.tuning.races",
                       "fmmloopy.tuning.recipe", "fmmloopy.execution.generation",
                       *SHIPPED_SHA256)
#: The module that applies a recipe to a math-level kernel (its imports: the launcher, the
#: tuning records, ... do not change the code).
OPERATOR_GENERATORS_ALONE = ("fmmloopy.execution.compiled",)
#: What generates the set-up's kernels.
SETUP_GENERATORS = ("fmmloopy.maths.setup_kernels", "fmmloopy.execution.generation")
SETUP_GENERATORS_ALONE = ("fmmloopy.execution.device_setup",)


def generator_digest(modules: tuple[str, ...] = OPERATOR_GENERATORS,
                     alone: tuple[str, ...] = OPERATOR_GENERATORS_ALONE) -> str:
    """sha256 of the modules that generate a kernel
    (:func:`~fmmloopy.execution.cache_files.modules_digest`): an edit anywhere else in the
    package (the driver, the tree, the API) keeps the stored kernels."""
    return modules_digest(*modules, alone=alone)


@functools.cache
def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "?"
    return versions


def kernel_key(operator: str, recipe: Any, device: cl.Device, green: Any, dtype: Any,
               sizes: dict[str, int], settings: dict[str, Any] | None = None,
               layout: Any = None, rsqrt_error: float | None = None,
               ) -> dict[str, Any] | None:
    """The key of one generated kernel (JSON-serialisable), or None when it is not stored: the
    recipe is not one of the shipped ones, unmodified. ``settings``: the values of the
    recipe's parameters (default: its defaults on ``device``); ``layout``: the list layout the
    kernel walks (default: the recipe's for these settings); ``rsqrt_error``: the error its
    ``1/sqrt`` may carry (:mod:`fmmloopy.maths.pair_precision`; in the key only when given)."""
    if not is_shipped(recipe):
        return None
    settings = recipe.settings_for(device, settings)
    layout = recipe.layout_for(device, settings) if layout is None else layout
    pair_precision = {} if rsqrt_error is None else {"rsqrt_error": repr(float(rsqrt_error))}
    return pair_precision | {
        "format_version": FORMAT_VERSION,
        "operator": operator,
        "sizes": {name: int(value) for name, value in sorted(sizes.items())},
        "dtype": str(dtype),
        "kernel": green.label,
        "kernel_fingerprint": kernel_fingerprint(green),
        "recipe": [recipe.name, recipe.device, list(recipe.targets),
                   getattr(recipe.function, "__qualname__", "?"),
                   repr(layout)],
        "settings": {name: repr(value) for name, value in settings.items()},
        "generators": generator_digest(),
        "versions": _versions(),
        "device": device_fingerprint(device),
    }


def setup_kernel_key(name: str, device: cl.Device) -> dict[str, Any]:
    """The key of one of the set-up's kernels (:mod:`fmmloopy.execution.device_setup`): its
    name, the modules that generate it (its math-level kernel and its mapping to the device
    are among them), the versions and the device. Stored under the operator ``setup-<name>``
    and the recipe ``setup``."""
    return {
        "format_version": FORMAT_VERSION,
        "operator": f"setup-{name}",
        "recipe": ["setup"],
        "generators": generator_digest(SETUP_GENERATORS, SETUP_GENERATORS_ALONE),
        "versions": _versions(),
        "device": device_fingerprint(device),
    }


def kernels_dir() -> Path:
    """Where kernel cache files live."""
    return cache_dir() / "kernels"


def kernel_path(key: dict[str, Any]) -> Path:
    """The file of ``key``: operator and recipe name, then a hash of the whole key."""
    digest = hashlib.sha256(key_string(key).encode()).hexdigest()[:24]
    return kernels_dir() / f"{key['operator']}-{key['recipe'][0]}-{digest}{SUFFIX}"


# {{{ who may have written the directory

def unsafe(path: Path) -> str | None:
    """Why ``path`` (an existing file or directory) must not be trusted, or None: it must be
    owned by this user and not writable by group or others."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{path} is owned by user id {info.st_uid}, not by this user ({os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.filemode(info.st_mode)})"
    return None


def _trusted_directory(create: bool) -> Path | None:
    """The kernels directory if it may be used (:func:`trusted_directory`)."""
    return trusted_directory(kernels_dir(), create, "kernels are generated in this process")


def trusted_directory(directory: Path, create: bool, instead: str) -> Path | None:
    """``directory`` (a folder of the cache directory) if it may be used (created private when
    ``create``), else None (absent, or unsafe: warned once, saying what is done ``instead``)."""
    if create:
        try:
            directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return directory  # not writable: the write reports it
    if not directory.exists():
        return None
    for folder in (directory.parent, directory):
        reason = unsafe(folder)
        if reason is not None:
            if str(directory) not in _warned_unsafe:
                _warned_unsafe.add(str(directory))
                warnings.warn(
                    f"fmmloopy kernel cache: not using {directory}: {reason}; {instead} "
                    "instead (make the directory yours and private, chmod 700, or point "
                    f"${CACHE_ENV} elsewhere)", KernelCacheWarning, stacklevel=5)
            return None
    return directory

# }}}


def _digest(key: dict[str, Any], kernel: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"key": key, "kernel": kernel}, sort_keys=True)
                          .encode()).hexdigest()


#: What is done instead of using a rejected or unreadable kernel file.
_REGENERATE = "generating the kernel again"


def reject(path: Path, why: str, instead: str = _REGENERATE) -> None:
    """Warn that ``path`` was rejected (saying what is done ``instead``) and delete it."""
    warnings.warn(f"fmmloopy kernel cache: rejected {path} ({why}); deleted, {instead}",
                  KernelCacheWarning, stacklevel=4)
    try:
        path.unlink()
    except OSError:
        pass


def read_trusted(path: Path, instead: str = _REGENERATE) -> bytes | None:
    """The bytes of the cache file ``path``, or None: missing, unsafe (rejected: :func:`reject`)
    or unreadable (warned, saying what is done ``instead``)."""
    try:
        reason = unsafe(path)
        if reason is not None:
            reject(path, reason, instead)
            return None
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        warnings.warn(f"fmmloopy kernel cache: cannot read {path} ({error}); {instead}",
                      KernelCacheWarning, stacklevel=4)
        return None


def load(key: dict[str, Any] | None) -> GeneratedKernel | None:
    """The kernel stored under ``key``, or None (missing, disabled, or rejected with a warning)."""
    if key is None or not enabled() or _trusted_directory(create=False) is None:
        return None
    path = kernel_path(key)
    stored = read_trusted(path)
    if stored is None:
        return None
    try:
        entry = json.loads(stored.decode("utf-8"))
        if not isinstance(entry, dict) or set(entry) != {"key", "kernel", "sha256"}:
            raise ValueError("not a kernel cache entry")
        if entry["key"] != key:
            raise ValueError("the stored key differs from the expected one")
        if entry["sha256"] != _digest(entry["key"], entry["kernel"]):
            raise ValueError("the content digest does not match")
        return GeneratedKernel.from_data(entry["kernel"])
    except Exception as error:  # any failure to read means the file cannot be trusted
        reject(path, f"{type(error).__name__}: {error}")
        return None


def store(key: dict[str, Any] | None, kernel: GeneratedKernel) -> None:
    """Write ``kernel`` under ``key`` (atomically, privately; also where generated kernels are
    only stored, :data:`STORE_ONLY`); an unwritable directory warns once, an unsafe one is left
    alone."""
    if key is None or not storing() or _trusted_directory(create=True) is None:
        return
    path = kernel_path(key)
    data = kernel.as_data()
    text = json.dumps({"key": key, "kernel": data, "sha256": _digest(key, data)},
                      sort_keys=True).encode()
    write_or_warn(path, lambda: write_atomically(path, lambda stream: stream.write(text)),
                  f"fmmloopy kernel cache: cannot write to {path.parent}",
                  "kernels are generated but not cached", KernelCacheWarning,
                  _warned_unwritable)


def kernel_file_status(path: Path) -> str:
    """``"ok"``, or why the kernel cache's file ``path`` would be rejected."""
    try:
        entry = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(entry, dict) or set(entry) != {"key", "kernel", "sha256"}:
            return "foreign"
        if entry["sha256"] != _digest(entry["key"], entry["kernel"]):
            return "corrupt"
        if not isinstance(entry["key"], dict) or (
                entry["key"].get("format_version") != FORMAT_VERSION):
            return "old format"
        GeneratedKernel.from_data(entry["kernel"])
    except Exception:
        return "corrupt"
    return "ok"
