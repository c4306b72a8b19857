"""OpenCL device selection and device classes (``cpu-pocl`` -> ``cpu`` -> ``any``)."""

from __future__ import annotations

import os
import reprlib
import warnings

import numpy as np
import pyopencl as cl

from fmmloopy.base.compiler_probe import cpu_flags, probe_verdict, registered_programs

#: Environment variable naming the device: ``cpu``, ``gpu`` or a substring of the device name.
DEVICE_ENV = "FMMLOOPY_DEVICE"

_VENDORS = (("nvidia", "nvidia"), ("advanced micro devices", "amd"), ("amd", "amd"),
            ("intel", "intel"), ("apple", "apple"))


def device_classes(device: cl.Device) -> list[str]:
    """Classes of ``device`` from the most specific to ``any``, e.g. ``["cpu-pocl", "cpu", "any"]``.

    The first part is the device type (``cpu``, ``gpu`` or ``accelerator``). A CPU is refined by
    its OpenCL runtime, whose compiler is what recipes tune for: ``cpu-pocl`` (PoCL),
    ``cpu-intel`` (Intel's CPU runtime), whatever the processor's maker; other devices by the
    platform (``pocl``) and the vendor (``nvidia``, ``amd``, ``intel``, ``apple``).
    """
    if device.type & cl.device_type.GPU:
        kind = "gpu"
    elif device.type & cl.device_type.CPU:
        kind = "cpu"
    else:
        kind = "accelerator"
    refinements = []
    platform = device.platform.name.lower()
    if "portable computing language" in platform:
        refinements.append("pocl")
    if kind == "cpu":
        if platform.startswith("intel(r) opencl") or "intel(r) cpu runtime" in platform:
            refinements.append("intel")
        return [f"{kind}-{r}" for r in refinements] + [kind, "any"]
    vendor = device.vendor.lower()
    for needle, short in _VENDORS:
        if needle in vendor:
            refinements.append(short)
            break
    return [f"{kind}-{r}" for r in refinements] + [kind, "any"]


#: Environment variable: the float64 lanes of a vector as recipes are to see the device (a power
#: of two), in place of its ``preferred_vector_width_double``. It lets one machine run the code
#: paths of another class of CPU: ``4`` takes AVX2's narrow paths on an AVX-512 CPU, ``8`` the
#: AVX-512 paths (as generic vectors) on an AVX2 CPU. Unset or ``native``: the device's own.
VECTOR_DOUBLES_ENV = "FMMLOOPY_VECTOR_DOUBLES"
_LARGEST_VECTOR_DOUBLES = 64


#: LLVM's names of x86 CPUs by the float64 lanes of their widest vectors: AVX-512 (8), AVX and
#: AVX2 (4). A name not listed (``generic``, ``x86-64``, SSE-only CPUs) counts as 2.
_LLVM_CPU_DOUBLES = {
    8: ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
        "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
        "graniterapids", "graniterapids-d", "diamondrapids", "knl", "knm", "znver4", "znver5",
        "x86-64-v4"),
    4: ("sandybridge", "ivybridge", "haswell", "broadwell", "skylake", "alderlake",
        "raptorlake", "meteorlake", "arrowlake", "arrowlake-s", "lunarlake", "pantherlake",
        "gracemont", "sierraforest", "grandridge", "clearwaterforest", "znver1", "znver2",
        "znver3", "bdver1", "bdver2", "bdver3", "bdver4", "btver2", "x86-64-v3"),
}
_GENERIC_X86_DOUBLES = 2


def compiler_target(device) -> str | None:
    """The CPU a PoCL CPU device's compiler targets, from its device version (``... HSTR:
    pthread-x86_64-unknown-linux-gnu-znver3`` -> ``znver3``); None for other devices."""
    _, marker, host = str(getattr(device, "version", "")).partition("HSTR:")
    triple = host.split()[0] if marker and host.split() else ""
    for system in ("-gnu-", "-linux-", "-elf-"):
        if system in triple:
            return triple.rsplit(system, 1)[1] or None
    return None


def target_doubles(device) -> int | None:
    """float64 lanes of the widest vectors ``device``'s compiler targets: from the CPU a PoCL
    device compiles for (:func:`compiler_target`; PoCL 3.0 on a Zen 4 reports 8 preferred
    doubles but targets ``znver3``, 4), None where the device does not say."""
    target = compiler_target(device)
    if target is None:
        return None
    return next((lanes for lanes, names in _LLVM_CPU_DOUBLES.items() if target in names),
                _GENERIC_X86_DOUBLES)


def host_doubles() -> int:
    """float64 lanes of this CPU's widest vectors, from its instruction-set flags
    (``/proc/cpuinfo``): 8 with AVX-512, 4 with AVX, else 2; 4 where the flags are unknown."""
    flags = set(cpu_flags())
    if not flags:
        return 4
    return 8 if "avx512f" in flags else 4 if "avx" in flags else 2


def _claimed_doubles(device) -> int:
    own = int(getattr(device, "preferred_vector_width_double", 0) or 0)
    target = target_doubles(device)
    return own if target is None else max(1, min(own, target))


def _width_verdict(device) -> tuple[int, list[str]]:
    """(the widest float64 lanes up to :func:`_claimed_doubles` whose probe programs all build
    and run on ``device``, 0 if none; the failures seen on the way, one line each)."""
    verdict = probe_verdict(device)
    programs = registered_programs()
    lanes = _claimed_doubles(device)
    failures = []
    while True:
        failed = [f"{name}: {verdict[name]}" for name, program in sorted(programs.items())
                  if program.needed_at(max(lanes, 1)) and verdict.get(name)]
        if not failed:
            return max(lanes, 1), failures
        failures.append(f"{max(lanes, 1)} doubles per vector: {failed[0]}")
        if lanes <= 1:
            return 0, failures
        lanes //= 2


_ANNOUNCED: set[tuple[str, str]] = set()


def vector_doubles(device) -> int:
    """float64 lanes per vector that recipes are to assume on ``device``: its
    ``preferred_vector_width_double`` (PoCL: 8 on AVX-512, 4 on AVX2), no more than the vectors
    of the CPU its compiler targets (:func:`target_doubles`), and no more than its compiler
    builds: the widest whose probe programs build and run in a child process
    (:mod:`fmmloopy.base.compiler_probe`); a narrower width than the device's own is said once,
    in one line (a warning). ``$FMMLOOPY_VECTOR_DOUBLES`` sets it instead
    (:data:`VECTOR_DOUBLES_ENV`; a value that is not a power of two from 1 to 64, or
    ``native``, is a ValueError naming it)."""
    text = os.environ.get(VECTOR_DOUBLES_ENV, "").strip().lower()
    if text in ("", "native"):
        if not isinstance(device, cl.Device):  # a stand-in with no runtime behind it
            return int(getattr(device, "preferred_vector_width_double", 0) or 0)
        lanes, failures = _width_verdict(device)
        own = int(getattr(device, "preferred_vector_width_double", 0) or 0)
        if 0 < lanes < own and device_key(device) not in _ANNOUNCED:
            _ANNOUNCED.add(device_key(device))
            reason = failures[0] if failures else (
                f"its compiler targets {compiler_target(device)}")
            warnings.warn(f"fmmloopy: {device.name!r} ({device.platform.name}) reports "
                          f"{own} doubles per vector; recipes use {lanes} ({reason})",
                          DeviceFallbackWarning, stacklevel=2)
        return lanes if lanes else 1
    try:
        lanes = int(text)
    except ValueError:
        lanes = 0
    if not (1 <= lanes <= _LARGEST_VECTOR_DOUBLES and lanes & (lanes - 1) == 0):
        raise ValueError(f"${VECTOR_DOUBLES_ENV} must be a power of two from 1 to "
                         f"{_LARGEST_VECTOR_DOUBLES} or 'native', got {text!r}")
    return lanes


class DeviceFallbackWarning(UserWarning):
    """fmmloopy uses less of a device than it reports (narrower vectors), or passes it over,
    because its compiler cannot build what the recipes need there."""


def describe_vector_width(device) -> str:
    """One line: the float64 vector width recipes assume on ``device`` and where it comes from."""
    own = int(getattr(device, "preferred_vector_width_double", 0) or 0)
    lanes = vector_doubles(device)
    if os.environ.get(VECTOR_DOUBLES_ENV, "").strip().lower() not in ("", "native"):
        return (f"vectors: {lanes} doubles (${VECTOR_DOUBLES_ENV}; the device's own: {own}): "
                "recipes take the paths of that width")
    if lanes == own:
        return f"vectors: {lanes} doubles (the device's preferred width, probed)"
    _, failures = _width_verdict(device)
    target = compiler_target(device)
    why = failures[0] if failures else f"its compiler targets {target}"
    return f"vectors: {lanes} doubles (the device reports {own}; {why})"

def describe_probe(device) -> str:
    """Lines: what the compiler probe saw on ``device``, one program a line."""
    verdict = probe_verdict(device)
    lines = [f"compiler probe ({device.platform.name}, {device.version}; in a child process):"]
    for name, program in sorted(registered_programs().items()):
        used = (f"{program.min_doubles}-{program.max_doubles}" if program.max_doubles < 64
                else f"{program.min_doubles}+")
        lines.append(f"  {name:28s} (vectors of {used} doubles): "
                     + ("builds and runs" if verdict.get(name) is None else verdict[name]))
    return "\n".join(lines)


def listed_devices() -> list[cl.Device]:
    """Every OpenCL device with float64 that fmmloopy may choose (no simulator), in the order
    the default choice tries them (:func:`expected_speed_rank`)."""
    return sorted((d for d in _platforms_devices() if d.double_fp_config),
                  key=expected_speed_rank)


def device_spec(device: cl.Device) -> str:
    """A ``device=`` text that chooses ``device`` among the listed ones: its class where that is
    Intel's CPU runtime (whose device name PoCL's contains), else its name."""
    classes = device_classes(device)
    return "cpu-intel" if "cpu-intel" in classes else device.name


def describe_devices() -> str:
    """Lines: every OpenCL device with float64 that fmmloopy may choose, in the order of the
    default choice (:func:`expected_speed_rank`), each usable or why not."""
    lines = ["devices, in the order the default choice tries them:"]
    for device in listed_devices():
        problem = compiler_problem(device)
        state = f"{vector_doubles(device)} doubles per vector" if problem is None else problem
        lines.append(f"  {device.name} ({device.platform.name}; {device_classes(device)[0]}): "
                     f"{state}")
    return "\n".join(lines)


#: What a device that cannot compile needs, said in every message about one.
COMPILER_FIX = ("PoCL 3.0 from PyPI (LLVM 14) cannot compile for CPUs newer than LLVM 14 knows "
                "(e.g. AMD Zen 5: 'unknown target CPU'); Intel's CPU OpenCL runtime, a "
                "dependency of fmmloopy on Linux x86-64 ('pip install intel-opencl-rt "
                "intel-cmplr-lib-rt'), or a newer PoCL ('apt-get install pocl-opencl-icd' on "
                "Debian/Ubuntu) gives fmmloopy a device that works")


def compiler_problem(device: cl.Device) -> str | None:
    """None if ``device``'s OpenCL compiler builds and runs what the recipes need at some
    vector width, else why not (the first failure of the probe programs, observed in a child
    process: :mod:`fmmloopy.base.compiler_probe`). An installed OpenCL driver may list a device
    whose compiler fails on every program (PoCL 3.0 from PyPI on a CPU its LLVM does not know),
    or aborts the process (PoCL 3.0 on a Zen 4, 8-wide ``sqrt``)."""
    lanes, failures = _width_verdict(device)
    return None if lanes else failures[-1]


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


def expected_speed_rank(device) -> int:
    """Where ``device`` comes in the default choice, lowest first: a GPU; a CPU runtime whose
    compiler targets this CPU's widest vectors (PoCL with an LLVM that knows the CPU, or a runtime
    that does not name its target); Intel's CPU runtime (it dispatches to this CPU's
    instruction set, but its code ran 1.3-2.4x slower than PoCL's on the same AVX-512 CPUs:
    docs/performance.md, "CPU runtimes"); a PoCL that targets narrower vectors than this CPU
    has (PoCL 3.0 on a Zen 4 or newer)."""
    if device.type & cl.device_type.GPU:
        return 0
    if "cpu-intel" in device_classes(device):
        return 2
    target = target_doubles(device)
    return 1 if target is None or target >= host_doubles() else 3


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
    Among devices that match, one whose whole name it is comes first (Intel's CPU runtime names
    its device ``Intel(R) Xeon(R) ...``, PoCL ``pthread-Intel(R) Xeon(R) ...``), then the
    fastest expected (:func:`expected_speed_rank`).
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
        candidates = sorted(devices, key=expected_speed_rank)
    else:
        wanted = spec.lower()
        candidates = sorted((d for d in devices
                             if wanted in device_classes(d) or wanted in d.name.lower()),
                            key=lambda d: (d.name.lower() != wanted, expected_speed_rank(d)))
    broken = []
    for device in candidates:
        problem = compiler_problem(device)
        if problem is None:
            if broken:
                warnings.warn(f"fmmloopy: passing over {'; '.join(broken)}; using "
                              f"{device.name!r} ({device.platform.name})",
                              DeviceFallbackWarning, stacklevel=2)
            return device
        broken.append(f"{device.name!r} ({device.platform.name}): {problem}")
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
