"""The memory an FMM may use and the check that an estimate fits in it.

An estimate (:class:`MemoryEstimate`, made by :mod:`fmmloopy.driver.memory` from the plan's
buffers) is compared by :func:`check_memory` with the memory available on the host
(``/proc/meminfo``, a cgroup limit, or a caller's ``memory_limit``) and with the device's
``global_mem_size`` and ``max_mem_alloc_size``; :class:`ResourceLimitError` with the estimate
when it cannot fit. On a CPU device (PoCL) device buffers are host memory too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyopencl as cl


class ResourceLimitError(MemoryError, RuntimeError):
    """The FMM would not fit in the host's or the device's memory; the message has the estimate.

    A :class:`MemoryError` (and a :class:`RuntimeError`, which the command line reports).
    """


def gigabytes(nbytes: float) -> str:
    """``"1.23 GB"`` (10**9 bytes)."""
    return f"{nbytes / 1e9:.3g} GB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes an FMM needs, by part, on the host and on the device."""

    #: Host arrays by part, plus the largest set-up temporary under its own name.
    host: dict[str, float] = field(default_factory=dict)
    #: Device buffers by part.
    device: dict[str, float] = field(default_factory=dict)
    #: The largest single device buffer: (what, bytes).
    largest_buffer: tuple[str, float] = ("none", 0.0)

    @property
    def host_bytes(self) -> float:
        return float(sum(self.host.values()))

    @property
    def device_bytes(self) -> float:
        return float(sum(self.device.values()))

    @staticmethod
    def _parts(parts: dict[str, float]) -> str:
        ranked = sorted(parts.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {gigabytes(value)}" for name, value in ranked if value > 0)

    def describe(self) -> str:
        """``"host 1.2 GB (operators 0.6 GB, ...); device 0.9 GB (...)"``."""
        return (f"host {gigabytes(self.host_bytes)} ({self._parts(self.host)}); device "
                f"{gigabytes(self.device_bytes)} ({self._parts(self.device)})")


def _meminfo_available() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


#: Where the cgroup hierarchies are mounted, and the file naming the process's own cgroups.
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
#: Limits at or above this are none (cgroup v1 writes 2**63 - 4096 for "no limit").
_NO_LIMIT = 2 ** 60
#: Sub-directory of the root, limit file and usage file of cgroup v2 and of v1's memory
#: controller.
_CGROUP_FILES = {"v2": ("", "memory.max", "memory.current"),
                 "v1": ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes")}


def _own_cgroups(proc_cgroup: str | os.PathLike) -> dict[str, str]:
    """The process's path in the v2 hierarchy (line ``0::/path``) and in v1's memory controller
    (``N:memory:/path``) as ``proc_cgroup`` names them; ``/`` where it names none."""
    paths = {"v2": "/", "v1": "/"}
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return paths
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1"] = path
    return paths


def _cgroup_dirs(root: str | os.PathLike, sub: str, path: str) -> list[str]:
    """The directory of cgroup ``path`` under ``root/sub`` and those of its parents, to the top.

    Only the top for a path outside this cgroup namespace (``/../x``)."""
    parts = [part for part in path.split("/") if part]
    if ".." in parts:
        parts = []
    return [os.path.join(root, sub, *parts[:depth]) for depth in range(len(parts), -1, -1)]


def _headroom(directory: str, limit_file: str, usage_file: str) -> float | None:
    """Limit minus usage in one cgroup directory; None without a readable limit there. An
    unreadable usage counts as 0: the limit alone still bounds what is left."""
    try:
        with open(os.path.join(directory, limit_file)) as f:
            limit = int(f.read())  # v2's "max" is a ValueError too: no limit
    except (OSError, ValueError):
        return None
    if limit >= _NO_LIMIT:
        return None
    try:
        with open(os.path.join(directory, usage_file)) as f:
            usage = float(f.read().strip())
    except (OSError, ValueError):
        usage = 0.0
    return max(limit - usage, 0.0)


def _cgroup_available(root: str | os.PathLike = CGROUP_ROOT,
                      proc_cgroup: str | os.PathLike = PROC_CGROUP) -> float | None:
    """What is left under the process's cgroup memory limits (v2, v1), None without one.

    The limit of the process's own cgroup (found in ``proc_cgroup``) and of every parent up to
    the top of the hierarchy under ``root`` applies: the smallest headroom wins. Directories or
    files that are missing or unreadable are skipped, so where the process's path is not
    mounted (containers) the top-level files are read.
    """
    paths = _own_cgroups(proc_cgroup)
    headrooms = [_headroom(directory, limit_file, usage_file)
                 for version, (sub, limit_file, usage_file) in _CGROUP_FILES.items()
                 for directory in _cgroup_dirs(root, sub, paths[version])]
    return min((h for h in headrooms if h is not None), default=None)


def available_host_memory() -> float | None:
    """Bytes of host memory available now (the smaller of the system's and the cgroup's), or
    None where neither can be read."""
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(values) if values else None


def device_memory_limits(device: cl.Device) -> tuple[float, float]:
    """``(global_mem_size, max_mem_alloc_size)`` of ``device``, in bytes."""
    return float(device.global_mem_size), float(device.max_mem_alloc_size)


def uses_host_memory(device: cl.Device) -> bool:
    """Whether the device's buffers live in host memory (a CPU device such as PoCL's)."""
    return bool(device.type & cl.device_type.CPU)


def host_bytes_needed(estimate: MemoryEstimate, device: cl.Device) -> float:
    """Host memory ``estimate`` takes on ``device``: its host bytes, and its device bytes too
    where the device's buffers live in host memory (:func:`uses_host_memory`)."""
    return estimate.host_bytes + (estimate.device_bytes if uses_host_memory(device) else 0.0)


def check_memory(estimate: MemoryEstimate, device: cl.Device, what: str,
                 memory_limit: float | None = None) -> None:
    """Raise :class:`ResourceLimitError` when ``estimate`` does not fit (module docstring).

    ``what`` describes the problem (``"2000 sources ... at order 6"``); ``memory_limit`` replaces
    the available host memory.
    """
    shared = uses_host_memory(device)
    host_needed = host_bytes_needed(estimate, device)
    if memory_limit is not None:
        host_limit, source = memory_limit, "the memory_limit given"
    else:
        host_limit, source = available_host_memory(), "the host memory available now"
    advice = "lower the order, raise n_crit (fewer boxes) or split the points"
    if host_limit is not None and host_needed > host_limit:
        including = (f", including the device buffers of {device.name!r}, which live in host "
                     "memory" if shared else "")
        raise ResourceLimitError(
            f"{what} needs an estimated {gigabytes(host_needed)} of host memory{including}, "
            f"more than {source} ({gigabytes(host_limit)}); {advice}. Estimate: "
            f"{estimate.describe()}")
    global_size, max_alloc = device_memory_limits(device)
    if estimate.device_bytes > global_size:
        raise ResourceLimitError(
            f"{what} needs an estimated {gigabytes(estimate.device_bytes)} on device "
            f"{device.name!r}, more than its global memory ({gigabytes(global_size)}); "
            f"{advice}. Estimate: {estimate.describe()}")
    name, largest = estimate.largest_buffer
    if largest > max_alloc:
        raise ResourceLimitError(
            f"{what} needs a buffer of {gigabytes(largest)} ({name}) on device "
            f"{device.name!r}, more than it allocates at once (max_mem_alloc_size "
            f"{gigabytes(max_alloc)}); {advice}. Estimate: {estimate.describe()}")


def allocated_device_bytes(plan) -> int:
    """Bytes of every device array a :class:`fmmloopy.driver.plan.Plan` holds (each counted
    once)."""
    seen: dict[int, int] = {}
    arrays = list(plan.buffers.values())
    for launch in plan.launches:
        arrays.extend(launch.arguments.values())
    for array in arrays:
        data = getattr(array, "base_data", None)
        if data is not None:  # the allocation's size: several buffers may be views of one
            seen[data.int_ptr] = int(data.size)
    return sum(seen.values())


__all__ = [
    "MemoryEstimate",
    "ResourceLimitError",
    "allocated_device_bytes",
    "available_host_memory",
    "check_memory",
    "device_memory_limits",
    "gigabytes",
    "host_bytes_needed",
    "uses_host_memory",
]
