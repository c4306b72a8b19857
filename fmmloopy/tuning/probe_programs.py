"""What the shipped CPU recipes compile, as small programs each device is probed with first
(:mod:`fmmloopy.base.compiler_probe`), so that a compiler that cannot build them (or aborts the
process on them) is met in a child process and the recipes take narrower vectors or another
device instead.

The recipes take one of two paths by the float64 lanes they assume
(:func:`fmmloopy.base.devices.vector_doubles`): below 8, a box's targets over work-items with
scalar maths (``__builtin_sqrt``, the bit-trick reciprocal square root refined by Newton steps,
the inline ``exp``, ``sin`` and ``cos``) and matvec accumulators of 8 doubles (16 floats in
float32); at 8 and more, targets in the lanes of ``double8`` with ``vrsqrt14pd`` where the
compiler targets AVX-512 (``1 / sqrt`` of a ``double8`` elsewhere: the call PoCL 3.0 aborts on,
targeting ``znver3`` on a Zen 4), ``sin`` and ``cos`` of ``double8``, ``float16`` in float32, and
accumulators of 16 doubles. Each program below uses each such helper, made by the very
functions the recipes call, on each vector type of its path, built with the recipes' options;
``tests/test_compiler_probe.py`` checks that every vector type and helper in the shipped kernels'
code is among them.
"""

from __future__ import annotations

from fmmloopy.base.compiler_probe import ProbeProgram, register_probe_program
from fmmloopy.tuning.inline_math import (
    FMA_PREAMBLE,
    exp_preamble,
    lane_trig_preamble,
    trig_preamble,
)
from fmmloopy.tuning.kernel_options import BUILTIN_SQRT_PREAMBLE, BUILTIN_SQRTF_PREAMBLE
from fmmloopy.tuning.newton_rsqrt import newton_rsqrt_preamble
from fmmloopy.tuning.target_lanes import rsqrt_preamble

__all__ = ["CPU_PROBE_PROGRAMS", "WIDE_LANES"]

#: Lanes from which the recipes take their wide path (``transforms/cpu.py``'s
#: ``has_wide_vectors``).
WIDE_LANES = 8
#: Work-items per group of every probe program, as the recipes' groups (16).
_GROUP = 16
#: The recipes' build options.
_OPTIONS = ("-cl-fast-relaxed-math",)
_FP64 = "#if __OPENCL_C_VERSION__ < 120\n#pragma OPENCL EXTENSION cl_khr_fp64: enable\n#endif\n"


def _program(name: str, preambles, body: str, wide: bool) -> ProbeProgram:
    source = (_FP64 + "\n".join(text for _, text in preambles) + "\n"
              f"__kernel void __attribute__((reqd_work_group_size({_GROUP}, 1, 1))) "
              f"fmmloopy_probe(__global double *x)\n{{\n  int i = get_global_id(0);\n{body}}}\n")
    lanes = (WIDE_LANES, 64) if wide else (1, WIDE_LANES - 1)
    return ProbeProgram(name, source, "fmmloopy_probe", _OPTIONS, _GROUP, _GROUP, *lanes)


def _accumulate(type_name: str, lanes: int, scalar: str) -> str:
    """Lines loading a ``type_name`` (``lanes`` wide) vector from ``x``, multiply-adding it
    (``fma``) as a matvec accumulator does, and storing it; ``scalar`` the element type."""
    load = f"({type_name}) (" + ", ".join(f"({scalar}) x[{lanes} * i + {k}]"
                                          for k in range(lanes)) + ")"
    store = "".join(f"  x[{lanes} * i + {k}] = (double) a.s{k:x};\n" for k in range(lanes))
    return (f"  {{ {type_name} a = {load};\n"
            f"  a = fma(a, ({type_name}) (({scalar}) 0.5), a * a);\n" + store + "  }\n")


def _narrow_float64() -> ProbeProgram:
    body = ("  double r2 = x[i] * x[i] + 1.0;\n"
            "  double y = rsqrt(r2) + sqrt(r2) + exp(-r2) * sin(r2) + cos(r2);\n"
            "  x[i] = fma(y, 0.5, 1.0 / r2);\n" + _accumulate("double8", 8, "double"))
    return _program("cpu-work-items-float64", [FMA_PREAMBLE, BUILTIN_SQRT_PREAMBLE,
                                               newton_rsqrt_preamble(), exp_preamble(),
                                               trig_preamble()], body, wide=False)


def _narrow_float32() -> ProbeProgram:
    body = ("  float r2 = (float) x[i] * (float) x[i] + 1.0f;\n"
            "  x[i] = (double) (1.0f / sqrt(r2) + sqrt(r2));\n"
            + _accumulate("float8", 8, "float") + _accumulate("float16", 16, "float"))
    return _program("cpu-work-items-float32", [FMA_PREAMBLE, BUILTIN_SQRTF_PREAMBLE], body,
                    wide=False)


def _wide_float64() -> ProbeProgram:
    body = ("  double8 v = (double8) (x[i]) + (double8) (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);\n"
            "  double8 r2 = v * v + 1.0;\n"
            "  double8 y = rsqrt(r2) * sin(r2) + cos(r2) + sqrt(r2);\n"
            "  x[i] = y.s0 + y.s1 + y.s2 + y.s3 + y.s4 + y.s5 + y.s6 + y.s7 + rsqrt(x[i] + 1.0);\n"
            + _accumulate("double16", 16, "double"))
    return _program("cpu-vector-lanes-float64", [FMA_PREAMBLE, rsqrt_preamble(WIDE_LANES),
                                                 lane_trig_preamble(WIDE_LANES)],
                    body, wide=True)


def _wide_float32() -> ProbeProgram:
    lanes = 2 * WIDE_LANES
    body = (f"  float{lanes} v = (float{lanes}) ((float) x[i]) + (float{lanes}) ("
            + ", ".join(f"{k}.0f" for k in range(lanes)) + ");\n"
            f"  float{lanes} y = rsqrt(v * v + 1.0f);\n"
            "  x[i] = (double) (y.s0 + y.s7 + y.sf) + (double) rsqrt((float) x[i] + 1.0f);\n"
            + _accumulate("float8", 8, "float") + _accumulate(f"float{lanes}", lanes, "float"))
    return _program("cpu-vector-lanes-float32", [FMA_PREAMBLE,
                                                 rsqrt_preamble(lanes, single=True)],
                    body, wide=True)


#: The programs, registered with the probe when this module is imported (by ``fmmloopy``).
CPU_PROBE_PROGRAMS = tuple(register_probe_program(make()) for make in (
    _narrow_float64, _narrow_float32, _wide_float64, _wide_float32))
