"""OpenCL device selection and device classes (``cpu-pocl`` -> ``cpu`` -> ``any``)."""

from __future__ import annotations

import logging
import os
import reprlib

import numpy as np
import pyopencl as cl

#: Environment variable naming the device: ``cpu``, ``gpu`` or a substring of the device name.
DEVICE_ENV = "FMMLOOPY_DEVICE"

_VENDORS = (("nvidia", "nvidia"), ("advanced micro devices", "amd"), ("amd", "amd"),
            ("intel", "intel"), ("apple", "apple"))


def device_classes(device: cl.Device) -> list[str]:
    """Classes of ``device`` from the most specific to ``any``, e.g. ``["cpu-pocl", "cpu", "any"]``.

    The first part is the device type (``cpu``, ``gpu`` or ``accelerator``); refinements name the
    platform (``pocl``) and the vendor (``nvidia``, ``amd``, ``intel``, ``apple``).
    """
    if device.type & cl.device_type.GPU:
        kind = "gpu"
    elif device.type & cl.device_type.CPU:
        kind = "cpu"
    else:
        kind = "accelerator"
    refinements = []
    if "portable computing language" in device.platform.name.lower():
        refinements.append("pocl")
    vendor = device.vendor.lower()
    for needle, short in _VENDORS:
        if needle in vendor:
            refinements.append(short)
            break
    return [f"{kind}-{r}" for r in refinements] + [kind, "any"]


_LOG = logging.getLogger(__name__)

#: Environment variable: the float64 lanes of a vector as recipes are to see the device (a power
#: of two), in place of its ``preferred_vector_width_double``. It lets one machine run the code
#: paths of another class of CPU: ``4`` takes AVX2's narrow paths on an AVX-512 CPU, ``8`` the
#: AVX-512 paths (as generic vectors) on an AVX2 CPU. Unset or ``native``: the device's own.
VECTOR_DOUBLES_ENV = "FMMLOOPY_VECTOR_DOUBLES"
_LARGEST_VECTOR_DOUBLES = 64


def vector_doubles(device) -> int:
    """float64 lanes per vector that recipes are to assume on ``device``: its
    ``preferred_vector_width_double`` (PoCL: 8 on AVX-512, 4 on AVX2), unless
    ``$FMMLOOPY_VECTOR_DOUBLES`` says otherwise (:data:`VECTOR_DOUBLES_ENV`); a value there that
    is not a power of two from 1 to 64 (or ``native``) is a ValueError naming it."""
    text = os.environ.get(VECTOR_DOUBLES_ENV, "").strip().lower()
    if text in ("", "native"):
        return int(getattr(device, "preferred_vector_width_double", 0) or 0)
    try:
        lanes = int(text)
    except ValueError:
        lanes = 0
    if not (1 <= lanes <= _LARGEST_VECTOR_DOUBLES and lanes & (lanes - 1) == 0):
        raise ValueError(f"${VECTOR_DOUBLES_ENV} must be a power of two from 1 to "
                         f"{_LARGEST_VECTOR_DOUBLES} or 'native', got {text!r}")
    return lanes


def describe_vector_width(device) -> str:
    """One line: the float64 vector width recipes assume on ``device`` and where it comes from."""
    own = int(getattr(device, "preferred_vector_width_double", 0) or 0)
    lanes = vector_doubles(device)
    if lanes == own:
        return f"vectors: {lanes} doubles (the device's preferred width)"
    return (f"vectors: {lanes} doubles (${VECTOR_DOUBLES_ENV}; the device's own: {own}): "
            "recipes take the paths of that width")

#: What a device that cannot compile needs, said in every message about one.
COMPILER_FIX = ("PoCL 3.0 from PyPI (LLVM 14) cannot compile for CPUs newer than LLVM 14 knows "
                "(e.g. AMD Zen 5: 'unknown target CPU'); install a newer PoCL beside it, e.g. "
                "'apt-get install pocl-opencl-icd' on Debian/Ubuntu, and fmmloopy picks the "
                "device that works")

_PROBE_SOURCE = ("__kernel void fmmloopy_probe(__global double *x)"
                 "{ x[get_global_id(0)] = sqrt(x[get_global_id(0)]) + 1.0; }")
_COMPILER_PROBLEMS: dict[tuple[str, str], str | None] = {}


def compiler_problem(device: cl.Device) -> str | None:
    """None if ``device``'s OpenCL compiler builds a small float64 kernel, else why not.

    An installed OpenCL driver may list a device whose compiler fails on every program (PoCL
    3.0 from PyPI on a CPU its LLVM does not know). Probed once per device and process.
    """
    key = (device.platform.name, device.name)
    if key not in _COMPILER_PROBLEMS:
        try:
            cl.Program(context_for(device), _PROBE_SOURCE).build()
            _COMPILER_PROBLEMS[key] = None
        except cl.Error as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line.lower() and "clBuild" not in line]
            _COMPILER_PROBLEMS[key] = (errors or lines or [type(exc).__name__])[0]
    return _COMPILER_PROBLEMS[key]


def usable(device: cl.Device) -> cl.Device:
    """``device`` if its compiler works, else a RuntimeError naming the device and the fix."""
    problem = compiler_problem(device)
    if problem is not None:
        raise RuntimeError(f"OpenCL device {device.name!r} ({device.platform.name}) cannot "
                           f"compile a kernel: {problem}. {COMPILER_FIX}")
    return device


def _platforms_devices() -> list[cl.Device]:
    devices = []
    for platform in cl.get_platforms():
        if "oclgrind" in platform.name.lower():
            continue  # a simulator: only ever used on request (check --memcheck)
        devices.extend(platform.get_devices())
    return devices


def _checked_spec(spec) -> str | None:
    """``spec`` if it is None or a string, else a ValueError naming what was given."""
    if spec is None or isinstance(spec, str):
        return spec
    hint = ""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
        hint = " (devices are not numbered: their order depends on the OpenCL platforms installed)"
    raise ValueError("device must be None, a pyopencl.Device, 'cpu', 'gpu' or a device name, "
                     f"got {type(spec).__name__} {reprlib.repr(spec)}{hint}")


def choose_device(spec: str | cl.Device | None = None) -> cl.Device:
    """Pick an OpenCL device: a ``pyopencl.Device``, ``"cpu"``, ``"gpu"``, a name substring.

    ``None`` (or an empty string) reads ``$FMMLOOPY_DEVICE`` and otherwise prefers a GPU, then a
    CPU. Devices without float64 support are skipped: the toolkit computes in float64 by default.
    Anything else, integers and booleans included, is a ValueError: an index would name different
    devices on machines whose OpenCL platforms differ or are listed in another order. A device
    whose compiler cannot build a kernel (:func:`compiler_problem`) is passed over for one that
    can; where none can, the RuntimeError names each device, the compiler's error and the fix.
    """
    if isinstance(spec, cl.Device):
        return usable(spec)
    spec = _checked_spec(spec) or os.environ.get(DEVICE_ENV) or None
    try:
        devices = [d for d in _platforms_devices() if d.double_fp_config]
    except cl.Error as exc:
        raise RuntimeError(f"no OpenCL platform found ({exc}); install 'pyopencl[pocl]'") from exc
    if not devices:
        raise RuntimeError("no OpenCL device with float64 support found; "
                           "install 'pyopencl[pocl]' for a CPU device")
    if spec is None:
        candidates = sorted(devices, key=lambda d: 0 if d.type & cl.device_type.GPU else 1)
    else:
        wanted = spec.lower()
        candidates = [d for d in devices
                      if wanted in device_classes(d) or wanted in d.name.lower()]
    broken = []
    for device in candidates:
        problem = compiler_problem(device)
        if problem is None:
            return device
        broken.append(f"{device.name!r} ({device.platform.name}): {problem}")
        _LOG.info("skipping OpenCL device %r: its compiler fails: %s", device.name, problem)
    if broken:
        raise RuntimeError(f"no usable OpenCL device{'' if spec is None else f' matches {spec!r}'}"
                           f": {'; '.join(broken)}. {COMPILER_FIX}")
    names = [f"{d.name} ({device_classes(d)[0]})" for d in devices]
    raise ValueError(f"no OpenCL device matches {spec!r}; available: {names}")


def device_key(device: cl.Device) -> tuple[str, str]:
    """A picklable name of ``device`` (platform, device) for use in another process."""
    return device.platform.name, device.name


def device_from_key(key: tuple[str, str]) -> cl.Device:
    """The device :func:`device_key` named, in this process (simulators included)."""
    for platform in cl.get_platforms():
        if platform.name == key[0]:
            for device in platform.get_devices():
                if device.name == key[1]:
                    return device
    raise ValueError(f"no OpenCL device {key[1]!r} on platform {key[0]!r}")


_CONTEXTS: dict[int, cl.Context] = {}


def context_for(device: cl.Device) -> cl.Context:
    """One OpenCL context per device, shared by every kernel (executors are cached per context)."""
    key = device.int_ptr
    if key not in _CONTEXTS:
        _CONTEXTS[key] = cl.Context([device])
    return _CONTEXTS[key]


#: PoCL's CPU device runs this many threads (read when PoCL starts in a process).
POCL_THREADS_ENV = "POCL_MAX_PTHREAD_COUNT"


def share_cpu(ranks_on_node: int) -> int | None:
    """Give each of ``ranks_on_node`` ranks its share of this node's cores on PoCL's CPU
    device, by setting ``POCL_MAX_PTHREAD_COUNT`` (unless it is set already); the threads per
    rank, or None where it was set already. It takes effect only where PoCL has not started
    in this process yet (no OpenCL device listed), so call it first."""
    if os.environ.get(POCL_THREADS_ENV):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // max(1, ranks_on_node))
    os.environ[POCL_THREADS_ENV] = str(threads)
    return threads


def device_for_rank(spec: str | cl.Device | None, node_rank: int) -> cl.Device:
    """The device of the ``node_rank``-th rank on a node: ``spec`` as :func:`choose_device`
    takes it, where it is not None; else GPU ``node_rank`` where the node has that many
    usable GPUs with float64, and the CPU device otherwise (one share of it per rank,
    :func:`share_cpu`)."""
    if spec is not None or os.environ.get(DEVICE_ENV):
        return choose_device(spec)
    gpus = [d for d in _platforms_devices()
            if d.type & cl.device_type.GPU and d.double_fp_config
            and compiler_problem(d) is None]
    if node_rank < len(gpus):
        return gpus[node_rank]
    return choose_device("cpu")
