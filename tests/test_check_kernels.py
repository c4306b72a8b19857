"""``fmmloopy check`` takes the Green's function as a parameter: every kernel of the check, and
the numpy reference the sequential recipe is held to, are built for it."""

import dataclasses
import subprocess
import sys

import numpy as np
import pyopencl as cl

from fmmloopy.base.devices import context_for
from fmmloopy.checking.check import check_pair
from fmmloopy.checking.problems import check_problems
from fmmloopy.checking.verification import compare, run_once
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.operators import get_operator


def _scaled_laplace(factor: float, name: str):
    """A kernel of the user's own: ``factor / (4 pi r)``, homogeneous like Laplace."""
    return dataclasses.replace(LAPLACE_3D, name=name, expression=factor * LAPLACE_3D.expression)


def test_every_recipe_is_checked_for_the_kernel_given(device, default_recipe):
    twice = _scaled_laplace(2.0, "twice_laplace")
    problem = check_problems(seed=0, n=600)[2]  # Plummer: every list non-empty
    for recipe in ("sequential", default_recipe):
        for operator in ("p2p", "m2p", "p2l"):
            results = check_pair(operator, recipe, problem, device, green=twice)
            assert results and all(result.ok for result in results), results


def test_the_kernel_given_is_the_one_compared(device):
    """A check that ignored the kernel would pass both; the mismatched pairing fails."""
    twice = _scaled_laplace(2.0, "twice_laplace")
    problem = check_problems(seed=0, n=600)[0]
    spec = get_operator("p2p")
    inputs = problem.arguments(spec, {})
    queue = cl.CommandQueue(context_for(device))
    rows = np.arange(inputs["ntarget_boxes"])
    compiled = {green.name: compiled_operator("p2p", device, recipe="sequential", kernel=green)
                for green in (LAPLACE_3D, twice)}
    assert compare(compiled["twice_laplace"], None, spec, {}, inputs, queue, green=twice,
                   rows=rows).ok
    wrong = compare(compiled["twice_laplace"], None, spec, {}, inputs, queue, green=LAPLACE_3D,
                    rows=rows)
    assert not wrong.ok and wrong.max_relative_error > 0.1
    # And the kernel built for twice the Green's function adds twice Laplace's sums.
    laplace, _ = run_once(compiled["laplace"], queue, inputs)
    doubled, _ = run_once(compiled["twice_laplace"], queue, inputs)
    initial = inputs["result"]
    np.testing.assert_allclose(doubled["result"] - initial, 2 * (laplace["result"] - initial),
                               rtol=1e-12, atol=1e-12 * np.abs(laplace["result"]).max())


def test_command_line_kernel_and_dtype_options():
    """``--kernel`` and ``--dtype`` reach the check (M2M: the cheapest operator to build; the
    kernel's expression matters to the pairwise operators, which the Yukawa test runs)."""
    run = [sys.executable, "-m", "fmmloopy.cli", "check", "--small-only", "--operator", "m2m",
           "--recipe", "sequential"]
    done = subprocess.run([*run, "--kernel", "laplace", "--dtype", "float32"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kernel 'laplace'; float32" in done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert lines and all("float32 of bound" in line for line in lines)
    assert "within float32's rounding bound" in done.stdout
    wrong = subprocess.run([*run, "--dtype", "float16"], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 2 and "float16" in wrong.stderr
    refused = subprocess.run([*run, "--kernel", "laplase"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "unknown kernel 'laplase'" in refused.stderr
