"""The machine's roofline, measured on the device: a float64 FMA-bound kernel and a streaming one.

A peak derived from device properties (compute units x clock x vector width x 2) misses what
the properties do not say: a second FMA unit, turbo clocks, or a vector width PoCL does not
report. So the two ceilings of the roofline model are measured:

- **compute**: every work-item runs :data:`CHAINS` independent chains of ``double8`` fused
  multiply-adds (enough independent work to hide the FMA latency), 2 flops per lane per FMA;
- **memory**: a triad ``a[i] = b[i] + s c[i]`` over arrays far larger than the caches,
  24 bytes per element (two reads, one write; write-allocate traffic is not counted).

Each is run a few times after a warm-up; the best run counts (a ceiling, not a typical value).
:func:`roofline` then gives the attainable rate of a step from its arithmetic intensity,
``min(peak, intensity x bandwidth)`` (Williams, Waterman, Patterson, CACM 2009).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

#: Probe variants: float64 vector width (OpenCL ``double<n>``) and independent FMA chains per
#: work-item. Compilers differ in which vectorises best (PoCL's ``double8`` may be split in
#: two halves where it targets 256-bit vectors), so every variant runs and the best counts.
VECTOR_WIDTHS = (1, 4, 8)
CHAIN_COUNTS = (8, 12, 16)
#: FMAs per chain per launch, work-items per compute unit.
FMA_STEPS = 2048
ITEMS_PER_COMPUTE_UNIT = 1024
#: Elements of each triad array (3 x 32 MiB: beyond the last-level cache of common CPUs).
TRIAD_ELEMENTS = 4 * 1024 * 1024

_TRIAD_SOURCE = """
__kernel void triad(__global double *a, __global const double *b, __global const double *c,
                    double s)
{
    size_t i = get_global_id(0);
    a[i] = b[i] + s * c[i];
}
"""


def fma_source(width: int, chains: int) -> str:
    """An OpenCL kernel of ``chains`` independent chains of ``double<width>`` multiply-adds,
    written out so that every chain stays in a register. They are written ``acc * a + b``, which
    ``-cl-fast-relaxed-math`` contracts to FMA instructions: PoCL 3.0 compiles OpenCL's ``fma``
    and ``mad`` to library calls that do not vectorise (measured an order of magnitude slower
    than the contracted form: docs/history.md, 2026-11-22)."""
    vector = "double" if width == 1 else f"double{width}"
    lanes = " + ".join(f"t.s{lane:x}" for lane in range(width)) if width > 1 else "t"
    init = "\n".join(f"    {vector} acc{c} = ({vector})(get_global_id(0) + {c});"
                     for c in range(chains))
    body = "\n".join(f"        acc{c} = acc{c} * a + b;" for c in range(chains))
    total = " + ".join(f"acc{c}" for c in range(chains))
    return (f"__kernel void fma_peak(__global double *out, double sa, double sb, int steps)\n"
            f"{{\n    {vector} a = ({vector})(sa), b = ({vector})(sb);\n{init}\n"
            f"    for (int k = 0; k < steps; ++k) {{\n{body}\n    }}\n"
            f"    {vector} t = {total};\n    out[get_global_id(0)] = {lanes};\n}}\n")


_MEASURED: dict[str, Peaks] = {}


@dataclass(frozen=True)
class Peaks:
    """The measured ceilings of one device."""

    flops: float  # float64 flops per second, FMA-bound kernel
    bandwidth: float  # bytes per second, streaming triad
    source: str  # how they were obtained, in words

    @property
    def ridge_intensity(self) -> float:
        """Flops per byte where the two ceilings meet."""
        return self.flops / self.bandwidth


def roofline(peaks: Peaks, intensity: float) -> float:
    """The attainable flops per second at ``intensity`` flops per byte."""
    return min(peaks.flops, intensity * peaks.bandwidth)


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up: the first launch builds the work-group function in PoCL
    best = np.inf
    for _ in range(repeats):
        clock = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - clock)
    return best


def _fma_rate(queue: cl.CommandQueue, width: int, chains: int, repeats: int) -> float:
    program = cl.Program(queue.context, fma_source(width, chains)).build(
        options=["-cl-fast-relaxed-math"])
    items = ITEMS_PER_COMPUTE_UNIT * queue.device.max_compute_units
    out = cla.empty(queue, items, np.float64)
    kernel = program.fma_peak

    def run():
        kernel(queue, (items,), None, out.data, np.float64(0.999999), np.float64(1e-7),
               np.int32(FMA_STEPS))
        queue.finish()

    rate = 2.0 * width * chains * FMA_STEPS * items / _best_seconds(run, repeats)
    if not np.all(np.isfinite(out.get())):
        raise RuntimeError("the FMA probe produced non-finite values")
    return rate


def _triad_bandwidth(queue: cl.CommandQueue, repeats: int) -> float:
    kernel = cl.Program(queue.context, _TRIAD_SOURCE).build().triad
    arrays = [cla.zeros(queue, TRIAD_ELEMENTS, np.float64) + value for value in (0.0, 1.0, 2.0)]

    def run():
        kernel(queue, (TRIAD_ELEMENTS,), None, *(x.data for x in arrays), np.float64(3.0))
        queue.finish()

    bandwidth = 24.0 * TRIAD_ELEMENTS / _best_seconds(run, repeats)
    if arrays[0][:1].get()[0] != 7.0:
        raise RuntimeError("the triad probe computed a wrong value")
    return bandwidth


def measure_peaks(queue: cl.CommandQueue, repeats: int = 5) -> Peaks:
    """Measure (once per device and process) the FMA and triad ceilings of ``queue``'s device."""
    device = queue.device
    key = f"{device.platform.name}/{device.name}/{device.int_ptr}"
    if key not in _MEASURED:
        rates = {(width, chains): _fma_rate(queue, width, chains, repeats)
                 for width in VECTOR_WIDTHS for chains in CHAIN_COUNTS}
        (width, chains), flops = max(rates.items(), key=lambda item: item[1])
        _MEASURED[key] = Peaks(
            flops, _triad_bandwidth(queue, repeats),
            f"measured: best of {len(rates)} FMA probes (here double{width} x {chains} chains, "
            f"-cl-fast-relaxed-math), triad over 3 x {TRIAD_ELEMENTS * 8 >> 20} MiB; "
            f"best of {repeats} runs each")
    return _MEASURED[key]
