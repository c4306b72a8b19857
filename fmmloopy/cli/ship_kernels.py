"""Generate the kernels fmmloopy ships (:mod:`fmmloopy.execution.shipped_kernels`) and write them.

``python -m fmmloopy.cli.ship_kernels`` generates, on this machine's OpenCL CPU device, every
kernel a Laplace FMM asks for (the potential, and the gradient, of charges, dipoles or both) and
a Stokes FMM asks for its velocities (:data:`SHIPPED_KERNELS`) under the shipped ``cpu``
recipes, in float64 and float32 (float64's pairwise kernels also with the coarser ``1/sqrt``
an FMM under ``eps`` asks for, :mod:`fmmloopy.maths.pair_precision`), for each vector class
(:data:`VECTOR_CLASSES`, made through ``$FMMLOOPY_VECTOR_DOUBLES``: the recipes read nothing else
of the device), and the set-up's kernels; the disk kernel cache is neither read nor written.
Run it after a change to what generates kernels (``tests/test_shipped_kernels.py`` fails until
then); ``--check`` compares instead of writing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pyopencl as cl

from fmmloopy.base.devices import (
    VECTOR_DOUBLES_ENV,
    choose_device,
    compiler_problem,
    device_classes,
    listed_devices,
)
from fmmloopy.base.environment import set_environment
from fmmloopy.execution import compiled, device_setup, kernel_cache, shipped_kernels
from fmmloopy.execution.cache_files import key_string
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.operators import get_operator
from fmmloopy.maths.pair_precision import served_rsqrt_errors
from fmmloopy.maths.scheme import KIFMM, plan_kernel_requests

#: The doubles per vector of the CPU classes shipped: AVX2 and AVX-512.
VECTOR_CLASSES = shipped_kernels.VECTOR_CLASSES
#: The precisions shipped.
DTYPES = (np.float64, np.float32)
#: The kernels shipped with their fields: (kernel, outputs, inputs).
SHIPPED_KERNELS = tuple(("laplace", outputs, inputs)
                        for outputs in (("potential",), ("potential", "gradient"))
                        for inputs in (("charge",), ("dipole",), ("charge", "dipole"))) + (
    ("stokes", ("potential",), ("charge",)),)


#: Output coefficients of a matvec that make rows of whole vectors in both classes (8 and 16
#: doubles), rows of whole half vectors where the vectors hold 16 (8 doubles), and rows that
#: are neither: each a kernel of its own (``layouts.for_sizes``).
MATVEC_ROWS = (48, 40, 50)


def _variants(sizes: dict[str, int]) -> list[dict[str, int]]:
    """The sizes of a request, for each kernel they may select: a matvec's with rows of whole
    vectors and without (:data:`MATVEC_ROWS`), a pairwise operator's as they are."""
    if "n_target_coeffs" not in sizes:
        return [sizes]
    return [sizes | {"n_target_coeffs": rows} for rows in MATVEC_ROWS]


def _precisions(operator: str, kernel, dtype: np.dtype, variants: list[dict[str, int]]):
    """``(sizes, rsqrt_error)`` of each kernel a request may select: float64's own ``1/sqrt``
    and the coarser one an FMM under ``eps`` may launch
    (:func:`~fmmloopy.maths.pair_precision.served_rsqrt_errors`)."""
    return [(size, error) for size in variants
            for error in served_rsqrt_errors(get_operator(operator), kernel, dtype)]


def generate_entries(device: cl.Device) -> list[dict[str, Any]]:
    """Every shipped entry, generated now on ``device`` (an OpenCL CPU device)."""
    expansion = Expansion(4)  # any order: the sizes are launch arguments
    entries = {}

    def add(key: dict[str, Any] | None, generated) -> None:
        wanted = shipped_kernels.shipped_key(key, device)
        if wanted is None or generated is None:
            raise RuntimeError(f"the kernel of {key and key['operator']!r} cannot be shipped "
                               f"(recipe {key and key['recipe'][0]!r} on {device.name!r})")
        entries[key_string(wanted)] = shipped_kernels.entry(wanted, generated)

    with set_environment({kernel_cache.KERNEL_CACHE_ENV: "off"}):
        compiled.forget_compiled()
        for lanes in VECTOR_CLASSES:
            with set_environment({VECTOR_DOUBLES_ENV: str(lanes)}):
                for dtype in map(np.dtype, DTYPES):
                    for name, outputs, inputs in SHIPPED_KERNELS:
                        green = get_kernel(name).with_fields(outputs, inputs)
                        requests = plan_kernel_requests(KIFMM, expansion.n_e, None, green)
                        for operator, kernel, sizes in requests:
                            for size, rsqrt_error in _precisions(operator, kernel, dtype,
                                                                 _variants(sizes)):
                                made = compiled.compiled_operator(
                                    operator, device, recipe="cpu", kernel=kernel, dtype=dtype,
                                    settings={}, rsqrt_error=rsqrt_error,
                                    **size)  # the defaults, not a tuning record
                                add(made.disk_key, made.generated)
        context = cl.Context([device])
        for name in device_setup.SETUP_KERNELS:
            add(kernel_cache.setup_kernel_key(name, device),
                device_setup.generated_setup_kernel(name, context)[0])
        compiled.forget_compiled()
    return list(entries.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmmloopy.cli.ship_kernels",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the shipped file instead of writing it")
    args = parser.parse_args(argv)
    device = choose_device("cpu")
    entries = generate_entries(device)
    # Intel's CPU runtime is a class of its own (its recipes build with other options): its
    # entries too, where it is installed (a dependency on Linux x86-64).
    intel = [d for d in listed_devices() if "cpu-intel" in device_classes(d)
             and compiler_problem(d) is None]
    if intel and "cpu-intel" not in device_classes(device):
        device = intel[0]
        entries += [entry for entry in generate_entries(device)
                    if entry["key"]["device"].get("class") == "cpu-intel"]
    if args.check:
        shipped = shipped_kernels.read(shipped_kernels.SHIPPED_PATH)
        same = sorted(map(key_string, shipped)) == sorted(
            map(key_string, entries))
        print(f"{len(entries)} kernels generated: "
              f"{'the same as' if same else 'NOT the same as'} {shipped_kernels.SHIPPED_PATH}")
        return 0 if same else 1
    shipped_kernels.write(entries)
    print(f"{len(entries)} kernels generated written to "
          f"{shipped_kernels.SHIPPED_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
