"""The automatic check: every (operator, recipe) against the sequential recipe on real inputs.

Inputs come from real point sets sorted into boxes with real neighbour lists, never from
``lp.auto_test_vs_ref``'s zero-filled index arrays (which make every CSR loop empty). Outputs that
a kernel accumulates into start from random values, so a kernel that overwrites instead of adding,
skips a source box or a target, or reads the wrong box is caught.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.check_problems import CheckProblem, check_problems
from fmmloopy.devices import context_for, device_from_key, device_key
from fmmloopy.execution import CompiledOperator, compiled_operator
from fmmloopy.kernels import get_kernel
from fmmloopy.operators import OPERATORS, get_operator, operator_sizes
from fmmloopy.recipes import REFERENCE, ensure_loaded, recipe_names_for, registered

#: Normwise relative difference allowed between a recipe and the reference, in float64. Both sum
#: the same terms; only the order of summation and fused multiply-adds differ, which moves a sum
#: of at most a few thousand terms by O(n * 1e-16) relative to its largest term.
RELATIVE_TOLERANCE = 1e-12

def check_sizes(operator: str, problem: CheckProblem) -> dict[str, int]:
    """The template sizes ``fmmloopy check`` uses for ``operator`` on ``problem`` (surfaces of
    order 3 or 4; c2e's distinct target and source lengths catch swapped indices)."""
    return operator_sizes(operator, problem.surface_size, rank=problem.rank)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one (operator, recipe, problem) comparison."""

    operator: str
    recipe: str
    problem: str
    max_relative_error: float
    reference_seconds: float
    recipe_seconds: float
    ok: bool
    message: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        text = (f"{status} {self.operator:8s} {self.recipe:12s} {self.problem:14s} "
                f"max rel err {self.max_relative_error:9.2e}  "
                f"ref {self.reference_seconds * 1e3:8.2f} ms  "
                f"recipe {self.recipe_seconds * 1e3:8.2f} ms")
        return f"{text}  {self.message}" if self.message else text


def run_timed(compiled: CompiledOperator, queue: cl.CommandQueue, inputs: dict[str, np.ndarray],
              warm_up: bool = True) -> tuple[dict[str, np.ndarray], float]:
    """Run once to build, once more timed; return the outputs of the timed run and its seconds.

    Without ``warm_up`` the kernel runs once and the time includes its build (for a simulator,
    where every run is slow).
    """
    inputs = compiled.arguments_from(inputs)  # the lists in the layout the recipe asked for
    outputs = compiled.written_names
    device_inputs = {name: cla.to_device(queue, value) for name, value in inputs.items()
                     if name not in outputs and isinstance(value, np.ndarray)}
    scalars = {name: value for name, value in inputs.items() if not isinstance(value, np.ndarray)}

    def once():
        fresh = {name: cla.to_device(queue, inputs[name]) for name in outputs}
        result = compiled(queue, **device_inputs, **scalars, **fresh)
        queue.finish()
        return result

    if warm_up:
        once()
    start = time.perf_counter()
    result = once()
    seconds = time.perf_counter() - start
    return {name: result[name].get() for name in outputs}, seconds


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    scale = np.max(np.abs(reference)) if reference.size else 0.0
    if not np.all(np.isfinite(value)):
        return float("inf")
    diff = np.max(np.abs(value - reference)) if reference.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def expected_outputs(operator: str, recipe: str, sizes: dict[str, int], inputs: dict,
                     device: cl.Device) -> tuple[dict[str, np.ndarray], float]:
    """What ``recipe`` must reproduce, and the seconds it took: the sequential recipe's outputs
    on ``device``, or for the sequential recipe itself the numpy host reference's."""
    if recipe == REFERENCE:
        start = time.perf_counter()
        expected = get_operator(operator).host_reference(get_kernel("laplace"), inputs, sizes)
        return expected, time.perf_counter() - start
    reference = compiled_operator(operator, device, recipe=REFERENCE, **sizes)
    return run_timed(reference, cl.CommandQueue(context_for(device)), inputs)


def check_pair(operator: str, recipe: str, problem: CheckProblem, device: cl.Device,
               ) -> CheckResult:
    """Compare ``operator`` under ``recipe`` with the sequential recipe on ``problem``.

    The sequential recipe itself is compared with the operator's numpy host reference.
    """
    queue = cl.CommandQueue(context_for(device))
    spec = get_operator(operator)
    sizes = check_sizes(operator, problem)
    inputs = problem.arguments(spec, sizes)
    try:
        expected, reference_seconds = expected_outputs(operator, recipe, sizes, inputs, device)
        against = "the numpy reference" if recipe == REFERENCE else repr(REFERENCE)
        candidate = compiled_operator(operator, device, recipe=recipe, **sizes)
        actual, recipe_seconds = run_timed(candidate, queue, inputs)
    except Exception as exc:  # a recipe that breaks the build or the run is a failed check
        return CheckResult(operator, recipe, problem.name, float("inf"), 0.0, 0.0, False,
                           f"{type(exc).__name__}: {exc}")
    error = max(relative_error(actual[name], expected[name]) for name in expected)
    ok = error <= RELATIVE_TOLERANCE
    message = "" if ok else f"differs from {against} beyond {RELATIVE_TOLERANCE:g}"
    return CheckResult(operator, recipe, problem.name, error, reference_seconds, recipe_seconds,
                       ok, message)


def _check_in_this_process(operator: str, recipe: str, device: tuple[str, str],
                           recipe_sources: tuple[str, ...], seed: int) -> list[CheckResult]:
    """One (operator, recipe) pair on every problem; runs in the check's worker process."""
    ensure_loaded(recipe_sources)
    device = device_from_key(device)
    return [check_pair(operator, recipe, problem, device) for problem in check_problems(seed)]


def pairs_to_check(operators: Iterable[str] | None,
                    recipes: Iterable[str] | None) -> list[tuple[str, str]]:
    """(operator, recipe) pairs. Operators named explicitly are checked under every recipe
    named, and a recipe that does not cover one of them fails; otherwise a named recipe is
    checked on the operators it covers."""
    known = {entry.name for entry in registered()}
    unknown = [name for name in recipes or () if name not in known]
    if unknown:
        raise LookupError(f"no recipe named {unknown}; registered: {sorted(known)}")
    pairs = []
    for operator in operators or OPERATORS:
        template = get_operator(operator).template
        applicable = recipe_names_for(operator, template)
        names = [n for n in recipes if operators or n in applicable] if recipes else applicable
        pairs.extend((operator, name) for name in names)
    return pairs


def run_checks(device: cl.Device, *, operators: Iterable[str] | None = None,
               recipes: Iterable[str] | None = None, recipe_sources: Iterable[str] = (),
               seed: int = 0) -> Iterator[CheckResult]:
    """Check every operator under every recipe registered for it (for any device class: all
    recipes produce plain OpenCL), or under those named, on every problem.

    Kernels run in a worker process: a transform that makes a kernel crash the process (an
    out-of-bounds access can) is reported as a failed check, and checking goes on in a new
    worker.
    """
    recipe_sources = tuple(str(source) for source in recipe_sources)
    ensure_loaded(recipe_sources)
    pairs = pairs_to_check(list(operators or ()), list(recipes or ()))
    yield from run_in_worker(pairs, _check_in_this_process, (device_key(device), recipe_sources,
                                                             seed))


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set ``variables`` in ``os.environ`` for the duration (a spawned process inherits them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_in_worker(pairs: Iterable[tuple[str, str]],
                  worker: Callable[..., list[CheckResult]], arguments: tuple = (),
                  environment: Mapping[str, str] | None = None) -> Iterator[CheckResult]:
    """``worker(operator, recipe, *arguments)`` for every pair, in one spawned worker process.

    ``environment`` is set for the worker from its start (before it loads any OpenCL platform).
    A pair whose kernel crashes the worker is a failed check; the next pair gets a new worker.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
    try:
        for operator, recipe in pairs:
            with _environment(environment or {}):  # workers are spawned inside submit()
                job = pool.submit(worker, operator, recipe, *arguments)
            try:
                yield from job.result()
            except BrokenProcessPool:
                yield CheckResult(operator, recipe, "(all)", float("inf"), 0.0, 0.0, False,
                                  "the kernel crashed the worker process (e.g. a segmentation "
                                  "fault from an out-of-bounds access)")
                pool.shutdown(wait=True)
                pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
    finally:
        pool.shutdown(wait=True)
