"""Generated kernels shipped with fmmloopy, so that a first run on a CPU skips loopy.

A kernel's generated code depends on the device only through what its recipe reads of it. The
shipped ``cpu`` recipes read one property, the doubles per vector
(:func:`~fmmloopy.base.devices.vector_doubles`: 4 on AVX2, 8 on AVX-512); the set-up's kernels
(:mod:`fmmloopy.execution.device_setup`) read none. Their code is generated for each such
device class (:func:`device_class`) before a release and shipped as data,
``shipped_kernels.json.xz`` beside this module: the kernels of the Laplace FMM (potentials and
gradients of charges and dipoles) in float64 and float32 for both vector widths, and the
set-up's kernels. Every size (surfaces, ranks) is a launch argument, so one kernel per operator
serves every order. ``python -m fmmloopy.cli.ship_kernels`` writes the file
(:mod:`fmmloopy.cli.ship_kernels`).

An entry is found by the key of the disk kernel cache
(:func:`~fmmloopy.execution.kernel_cache.kernel_key`) with the device's fingerprint replaced by
its class and the versions by those of the code generators (loopy, pymbolic, islpy)
(:func:`shipped_key`). The key holds the digest of the modules that generate kernels
(:func:`~fmmloopy.execution.kernel_cache.generator_digest`: templates, Green's functions,
recipes and their building blocks), so an entry is used only while they are byte for byte
those that generated it. Each entry carries the sha256 of its key and kernel, checked before
use as in the disk cache; an entry that fails is refused with a
:class:`~fmmloopy.execution.kernel_cache.KernelCacheWarning` and the kernel is generated. What
runs is thus what the recipe generates, which ``fmmloopy check`` compares with the sequential
kernel; ``tests/test_shipped_kernels.py`` generates every shipped entry again and compares.
``FMMLOOPY_KERNEL_CACHE=off`` leaves the shipped kernels unused as well.
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import warnings
from pathlib import Path
from typing import Any

import pyopencl as cl

from fmmloopy.base.devices import device_classes, vector_doubles
from fmmloopy.execution.cache_files import key_string, write_atomically
from fmmloopy.execution.generated_kernel import GeneratedKernel
from fmmloopy.execution.kernel_cache import KernelCacheWarning, enabled

#: Bump when the file's layout changes.
FORMAT_VERSION = 1
#: The shipped file.
SHIPPED_PATH = Path(__file__).with_name("shipped_kernels.json.xz")
#: The packages whose versions the generated code depends on: they generate it.
GENERATORS = ("loopy", "pymbolic", "islpy")


#: The doubles per vector of the CPU classes shipped: the ``cpu`` recipes take one path below 8
#: (AVX2's 4; 1 on Intel's runtime, which vectorises across work-items) and another from 8
#: (AVX-512), and read nothing else of the device (``tests/test_shipped_kernels.py`` generates
#: a kernel at 1 and 16 and finds the code of 4 and 8).
VECTOR_CLASSES = (4, 8)


def vector_class(lanes: int) -> int:
    """The shipped class of a device whose recipes assume ``lanes`` doubles per vector: the
    widest of :data:`VECTOR_CLASSES` not above it, or the narrowest."""
    return max((c for c in VECTOR_CLASSES if c <= lanes), default=min(VECTOR_CLASSES))


def device_class(recipe_name: str, device: cl.Device) -> dict[str, str] | None:
    """What the kernels of recipe ``recipe_name`` depend on of ``device``: the class of its
    doubles per vector (:func:`vector_class`) for the ``cpu`` recipes on a CPU, nothing for the
    set-up's kernels (``setup``); None where no kernel is shipped (other recipes, other
    devices). Intel's CPU runtime is a class of its own (``cpu-intel``): the recipes build
    there with other options and another ``1/sqrt``."""
    if recipe_name == "setup":
        return {"class": "any"}
    if recipe_name == "cpu" and device.type & cl.device_type.CPU:
        runtime = "cpu-intel" if "cpu-intel" in device_classes(device) else "cpu"
        return {"class": runtime,
                "vector_doubles_for_recipes": str(vector_class(vector_doubles(device)))}
    return None


def shipped_key(key: dict[str, Any] | None, device: cl.Device) -> dict[str, Any] | None:
    """The key of the shipped entry for the disk kernel cache's ``key`` on ``device``, or None
    (no such kernel is shipped)."""
    if key is None:
        return None
    device_key = device_class(key["recipe"][0], device)
    if device_key is None:
        return None
    versions = {name: key["versions"].get(name, "?") for name in GENERATORS}
    return key | {"device": device_key, "versions": versions}


def entry(key: dict[str, Any], kernel: GeneratedKernel) -> dict[str, Any]:
    """One shipped entry: ``key`` (a :func:`shipped_key`), the kernel as data, their sha256."""
    data = kernel.as_data()
    return {"key": key, "kernel": data, "sha256": _digest(key, data)}


def write(entries: list[dict[str, Any]], path: Path = SHIPPED_PATH) -> None:
    """Write ``entries`` to ``path`` (xz-compressed JSON, the same bytes for the same
    entries), replacing it atomically."""
    entries = sorted(entries, key=lambda item: _entry_id(item["key"]))
    text = json.dumps({"format_version": FORMAT_VERSION, "entries": entries}, sort_keys=True)
    packed = lzma.compress(text.encode(), preset=9)
    write_atomically(path, lambda stream: stream.write(packed))
    path.chmod(0o644)  # package data, readable by all
    _entries.cache_clear()


def read(path: Path = SHIPPED_PATH) -> list[dict[str, Any]]:
    """The entries of ``path`` (ValueError for a file of another format)."""
    data = json.loads(lzma.decompress(path.read_bytes()).decode("utf-8"))
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not a shipped kernels file of format {FORMAT_VERSION}")
    return data["entries"]


def load(key: dict[str, Any] | None, device: cl.Device) -> GeneratedKernel | None:
    """The shipped kernel for the disk kernel cache's ``key`` on ``device``, or None: none
    shipped, the cache switched off, or the entry refused (a warning says why)."""
    wanted = shipped_key(key, device)
    if wanted is None or not enabled():
        return None
    found = _entries().get(_entry_id(wanted))
    if found is None:
        return None
    try:
        if found.get("key") != wanted:
            raise ValueError("its key differs from the expected one")
        if found.get("sha256") != _digest(found["key"], found["kernel"]):
            raise ValueError("its content digest does not match")
        return GeneratedKernel.from_data(found["kernel"])
    except Exception as error:  # an entry that cannot be trusted is not run
        warnings.warn(f"fmmloopy: refused the shipped kernel of {key['operator']!r} "
                      f"({type(error).__name__}: {error}); generating it",
                      KernelCacheWarning, stacklevel=3)
        return None


@functools.cache
def _entries() -> dict[str, dict[str, Any]]:
    """The shipped entries by the sha256 of their key (none where the file is missing; an
    unreadable one is warned about, and kernels are generated)."""
    try:
        return {_entry_id(item["key"]): item for item in read(SHIPPED_PATH)
                if isinstance(item, dict) and isinstance(item.get("key"), dict)}
    except FileNotFoundError:
        return {}
    except Exception as error:
        warnings.warn(f"fmmloopy: the shipped kernels in {SHIPPED_PATH} cannot be read "
                      f"({type(error).__name__}: {error}); kernels are generated",
                      KernelCacheWarning, stacklevel=4)
        return {}


def _digest(key: dict[str, Any], kernel: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"key": key, "kernel": kernel}, sort_keys=True)
                          .encode()).hexdigest()


def _entry_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(key_string(key).encode()).hexdigest()
