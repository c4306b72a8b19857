"""The automatic check: every (operator, recipe) against the sequential recipe on real inputs.

Inputs come from real point sets sorted into boxes with real neighbour lists, never from
``lp.auto_test_vs_ref``'s zero-filled index arrays (which make every CSR loop empty). Outputs that
a kernel accumulates into start from random values, so a kernel that overwrites instead of adding,
skips a source box or a target, or reads the wrong box is caught.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pyopencl as cl

from fmmloopy.base.devices import context_for, device_from_key, device_key
from fmmloopy.base.environment import set_environment
from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.checking.problems import (
    DEFAULT_N_CRIT,
    DEFAULT_ORDER,
    CheckProblem,
    check_problems,
    production_problems,
    production_sizes,
)
from fmmloopy.checking.verification import (
    RELATIVE_TOLERANCE,
    RowFacts,
    compare,
    run_once,
    sample_rows,
    sampled_inputs,
)
from fmmloopy.execution.compiled import (
    compiled_operator,
    loopy_log_path,
    loopy_output_to_log,
)
from fmmloopy.execution.kernel_cache import KERNEL_CACHE_ENV, STORE_ONLY
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, get_kernel
from fmmloopy.maths.operators import OPERATORS, get_operator
from fmmloopy.maths.pair_precision import served_rsqrt_errors
from fmmloopy.maths.scheme import KIFMM
from fmmloopy.tuning.recipe import REFERENCE
from fmmloopy.tuning.registry import ensure_loaded, recipe_names_for, registered

__all__ = ["RELATIVE_TOLERANCE", "CheckResult", "ProductionSizes", "check_pair", "loopy_log_path",
           "run_checks"]


@dataclass(frozen=True)
class ProductionSizes:
    """The real-run sizes the check reaches: surfaces and c2e rank of ``order``, leaves of up to
    ``n_crit`` points, ``n`` points per problem (None: as :func:`production_problems` says)."""

    order: int = DEFAULT_ORDER
    n_crit: int = DEFAULT_N_CRIT
    n: int | None = None


@lru_cache(maxsize=4)
def _problems(seed: int, production: ProductionSizes | None,
              green: GreenKernel = LAPLACE_3D) -> tuple[CheckProblem, ...]:
    """The small problems, then (unless ``production`` is None) the production-size ones, whose
    surfaces and ranks two of the small problems then take (:func:`check_problems`).

    Built once per process for all the pairs it checks (a problem's trees and lists are only
    read; each check draws its arguments anew from the problem's seed)."""
    if production is None:
        return tuple(check_problems(seed))
    sizes = production_sizes(production.order, green)
    return tuple(check_problems(seed, second_sizes=sizes) + production_problems(
        production.order, production.n_crit, production.n, seed, kernel=green))


def describe_problems(seed: int = 0, production: ProductionSizes | None = ProductionSizes(),
                      kernel: str | GreenKernel = "laplace") -> list[str]:
    """One line per check problem: the sizes it reaches (what ``fmmloopy check`` prints)."""
    return [problem.describe() for problem in _problems(seed, production, get_kernel(kernel))]


def check_sizes(operator: str, problem: CheckProblem) -> dict[str, int]:
    """The first template sizes ``fmmloopy check`` uses for ``operator`` on ``problem``
    (:meth:`CheckProblem.sizes` lists all: both c2e factors where they differ)."""
    return problem.sizes(operator)[0]


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
    #: Target boxes compared with the reference, of those the launch computes (0: not known).
    compared_rows: int = 0
    total_rows: int = 0
    #: The kernel's fields where they are not the potential of charges (:func:`fields_label`).
    fields: str = ""
    #: What :attr:`max_relative_error` is: the normwise relative error (float64), or below
    #: float64 the largest error as a fraction of its entry's rounding bound (``of bound``).
    measure: str = "max rel err"
    #: A remark on the outcome, kept on the result's line however long the message (the
    #: ``--fail-fast`` note on the failure that stopped a pair).
    note: str = ""
    #: The relative error the kernel's ``1/sqrt`` may carry where it is not float64's
    #: (``1/sqrt~1e-08``, :mod:`fmmloopy.maths.pair_precision`), else empty.
    root: str = ""

    @property
    def label(self) -> str:
        """The operator, with its fields and root where not the plain ones:
        ``p2p[pot+grad+hess<q+dip]``, ``p2p[x3,1/sqrt~1e-08]``."""
        parts = ",".join(part for part in (self.fields, self.root) if part)
        return f"{self.operator}[{parts}]" if parts else self.operator

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        rows = (f"rows {self.compared_rows:4d}/{self.total_rows:<5d}" if self.total_rows
                else " " * 15)
        text = (f"{status} {self.label:8s} {self.recipe:12s} {self.problem:20s} "
                f"{self.measure} {self.max_relative_error:9.2e}  {rows} "
                f"ref {self.reference_seconds * 1e3:8.2f} ms  "
                f"recipe {self.recipe_seconds * 1e3:8.2f} ms")
        first, *rest = self.message.splitlines() or [""]
        if rest:  # a build log: one line here, the log after it (:meth:`detail_lines`)
            first += f" ({len(rest)} more line{'s' if len(rest) != 1 else ''} below)"
        remarks = "; ".join(part for part in (first, self.note) if part)
        return f"{text}  {remarks}" if remarks else text

    def detail_lines(self) -> list[str]:
        """The message's lines after its first (a compiler's build log), indented, so that
        every result is one line that starts with ``ok`` or ``FAIL`` (:meth:`line`)."""
        return [f"    {line}" for line in self.message.splitlines()[1:]]


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    scale = np.max(np.abs(reference)) if reference.size else 0.0
    if not np.all(np.isfinite(value)):
        return float("inf")
    diff = np.max(np.abs(value - reference)) if reference.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def expected_outputs(operator: str, recipe: str, sizes: dict[str, int], inputs: dict,
                     device: cl.Device, green: GreenKernel = LAPLACE_3D,
                     ) -> tuple[dict[str, np.ndarray], float]:
    """What ``recipe`` must reproduce, and the seconds it took: the sequential recipe's outputs
    on ``device``, or for the sequential recipe itself the numpy host reference's (both of the
    Green's function ``green``)."""
    if recipe == REFERENCE:
        start = time.perf_counter()
        expected = get_operator(operator).host_reference(green, inputs, sizes)
        return expected, time.perf_counter() - start
    reference = compiled_operator(operator, device, recipe=REFERENCE, kernel=green, **sizes)
    return run_once(reference, cl.CommandQueue(context_for(device)), inputs, warm_up=True)


def _size_label(operator: str, problem: CheckProblem, sizes: dict[str, int]) -> str:
    """The problem's name, with the c2e factor when the problem checks two."""
    if len(problem.sizes(operator)) == 1:
        return problem.name
    return f"{problem.name} {sizes['n_target_coeffs']}x{sizes['n_source_coeffs']}"


def check_pair(operator: str, recipe: str, problem: CheckProblem, device: cl.Device,
               green: str | GreenKernel = "laplace",
               precision: Precision = FLOAT64,
               settings: Mapping[str, object] | None = None,
               rsqrt_error: float | None = None) -> list[CheckResult]:
    """Compare ``operator`` under ``recipe`` with the sequential recipe on ``problem``, at each
    of the problem's sizes for it (:meth:`CheckProblem.sizes`), both built for the Green's
    function ``green``.

    Small problems compare every row; production-size ones run the whole launch under
    ``recipe`` and the reference on sampled rows (:mod:`fmmloopy.checking.verification`). The
    sequential recipe itself is compared with the operator's numpy host reference.

    ``precision`` below float64 (float32): the kernel of that precision, on the inputs rounded
    to it, is compared with the float64 host reference on the same rounded inputs, each entry
    within its rounding bound (:func:`~fmmloopy.checking.verification.rounding_bounds`).

    ``settings``: values of ``recipe``'s parameters for the candidate (its defaults on the
    device for the rest), as ``fmmloopy tune`` tries them.

    ``rsqrt_error``: the candidate is the kernel whose ``1/sqrt`` may carry that relative error
    (:mod:`fmmloopy.maths.pair_precision`), compared with the numpy reference within its rounding
    bound plus that error's share of each entry's terms.
    """
    green = get_kernel(green)
    reduced = precision != FLOAT64 or rsqrt_error is not None
    queue = cl.CommandQueue(context_for(device))
    spec = get_operator(operator)
    results = []
    fields = fields_label(green)
    root = "" if rsqrt_error is None else f"1/sqrt~{rsqrt_error:g}"
    for sizes in problem.sizes(operator):
        label = _size_label(operator, problem, sizes)
        try:
            inputs = problem.arguments(spec, sizes, green, precision)
            if not inputs["ntarget_boxes"]:
                continue  # this problem has no entry in the operator's list
            candidate = compiled_operator(operator, device, recipe=recipe, kernel=green,
                                          dtype=precision.dtype, settings=settings,
                                          rsqrt_error=rsqrt_error, **sizes)
            if recipe == REFERENCE or reduced:
                reference = None  # numpy; the sequential kernel, which branches on no size,
                if problem.production:  # runs the sampled rows only
                    inputs = sampled_inputs(inputs, sample_rows(RowFacts.of(spec, sizes, inputs)))
            else:
                reference = compiled_operator(operator, device, recipe=REFERENCE, kernel=green,
                                              **sizes)
            rows = None if problem.production else np.arange(inputs["ntarget_boxes"])
            comparison = compare(candidate, reference, spec, sizes, inputs, queue,
                                 green=green, rows=rows,
                                 warm_up=not problem.production, precision=precision,
                                 rsqrt_error=rsqrt_error)
        except Exception as exc:  # a recipe that breaks the build or the run is a failed check
            results.append(CheckResult(operator, recipe, label, float("inf"), 0.0, 0.0, False,
                                       f"{type(exc).__name__}: {exc}", fields=fields,
                                       root=root))
            continue
        against = "the numpy reference" if recipe == REFERENCE or reduced \
            else repr(REFERENCE)
        beyond = (f"its {precision.name} rounding bound"
                  + ("" if rsqrt_error is None else f" and 1/sqrt to {rsqrt_error:g}")
                  if reduced else f"{RELATIVE_TOLERANCE:g}")
        message = "" if comparison.ok else (
            f"differs from {against} beyond {beyond}: {comparison.mismatch}")
        if candidate.recipe.name != recipe:  # it declined the kernel's complex values
            message = (f"{recipe!r} declines complex values: {candidate.recipe.name!r} ran"
                       + (f"; {message}" if message else ""))
        results.append(CheckResult(
            operator, recipe, label, comparison.max_relative_error,
            comparison.reference_seconds, comparison.candidate_seconds, comparison.ok, message,
            comparison.compared_rows, comparison.total_rows, fields,
            f"{precision.name} of bound" if reduced else "max rel err", root=root))
    return results


_FIELD_ABBREVIATIONS = {"potential": "pot", "gradient": "grad", "hessian": "hess",
                        "pressure": "p", "charge": "q", "dipole": "dip"}


def fields_label(green: GreenKernel) -> str:
    """``green``'s fields in short, empty for the potential of charges (``pot+grad<q+dip``:
    potential and gradient of charges and dipoles), with ``x<k>`` for ``k`` strength
    vectors."""
    vectors = f"x{green.vectors}" if green.vectors > 1 else ""
    if green.single == green.base:
        return vectors

    def short(fields):
        return "+".join(_FIELD_ABBREVIATIONS[name] for name in fields)
    return f"{short(green.outputs)}<{short(green.inputs)}" + (f" {vectors}" if vectors else "")


def _check_in_this_process(operator: str, recipe: str, device: tuple[str, str],
                           recipe_sources: tuple[str, ...], seed: int,
                           production: ProductionSizes | None,
                           green: GreenKernel, precision: Precision = FLOAT64,
                           fail_fast: bool = False) -> list[CheckResult]:
    """One (operator, recipe) pair on every problem, for every kernel an FMM may build the
    operator for (:meth:`~fmmloopy.maths.scheme.KifmmScheme.operator_kernels`: the potential
    of charges and, at the user's points, gradients and dipoles); runs in the check's worker
    process.

    loopy prints a whole kernel to standard output when it rejects one: that goes to
    :func:`loopy_log_path`, not to the screen.
    """
    ensure_loaded(recipe_sources)
    device = device_from_key(device)
    problems = _problems(seed, production, green)
    with loopy_output_to_log():
        return until_first_failure(
            (check_pair(operator, recipe, problem, device, variant, precision,
                        rsqrt_error=error)
             for variant in KIFMM.operator_kernels(operator, green)
             for error in _root_errors(operator, recipe, variant, precision)
             for problem in problems),
            fail_fast)


def _root_errors(operator: str, recipe: str, green: GreenKernel,
                 precision: Precision) -> tuple[float | None, ...]:
    """The ``rsqrt_error`` of each kernel an FMM may build ``operator`` for
    (:func:`~fmmloopy.maths.pair_precision.served_rsqrt_errors`), but float64's own alone under
    the sequential recipe (the reference)."""
    if recipe == REFERENCE:
        return (None,)
    return served_rsqrt_errors(get_operator(operator), green, precision.dtype)


#: The note on the failure that stopped a pair under ``fail_fast``.
NOT_RUN_AFTER_FAILURE = ("the pair's other problems and kernels were not run (--fail-fast; "
                         "leave it out to see them all)")


def until_first_failure(batches: Iterable[list[CheckResult]],
                        fail_fast: bool) -> list[CheckResult]:
    """The results of ``batches`` (one list per problem and kernel, made lazily), in order; with
    ``fail_fast``, none after the batch of the first failure, whose last failure's note then
    says so."""
    results = []
    for batch in batches:
        failed = [index for index, result in enumerate(batch) if not result.ok]
        if fail_fast and failed:  # the note on the batch's last failure: its last line
            last = batch[failed[-1]]
            batch[failed[-1]] = replace(last, note=NOT_RUN_AFTER_FAILURE)
            return results + batch
        results.extend(batch)
    return results


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


#: The check never runs a kernel its recipe did not make: its workers do not read the disk
#: kernel cache's generated kernels, so every recipe is applied anew (loopy's own caches, keyed
#: by the whole transformed kernel, may hold the code of the very same kernel); what they
#: generate for a shipped recipe is stored, for the FMMs of later processes, never for a check;
#: a source built before is loaded as the device's binary
#: (:mod:`fmmloopy.execution.program_cache`).
CHECK_WORKER_ENVIRONMENT = {KERNEL_CACHE_ENV: STORE_ONLY}


def run_checks(device: cl.Device, *, operators: Iterable[str] | None = None,
               recipes: Iterable[str] | None = None, recipe_sources: Iterable[str] = (),
               seed: int = 0, production: ProductionSizes | None = ProductionSizes(),
               kernel: str | GreenKernel = "laplace",
               precision: Precision = FLOAT64, fail_fast: bool = False
               ) -> Iterator[CheckResult]:
    """Check every operator under every recipe registered for it (for any device class: all
    recipes produce plain OpenCL), or under those named, on every problem: the small ones and
    (unless ``production`` is None) those at the sizes of a real run.

    Kernels run in a worker process: a transform that makes a kernel crash the process (an
    out-of-bounds access can) is reported as a failed check, and checking goes on in a new
    worker. Recipes are applied anew, kernels never taken from the disk kernel cache. ``kernel`` is
    the Green's function every kernel is built for (a name, or a :class:`GreenKernel`: the
    worker receives it pickled); ``precision`` the kernels' (:func:`check_pair`). With
    ``fail_fast``, a pair's checking stops at its first failure (the problems and kernels after
    it are not run; the failure's message says so): a wrong recipe is told wrong sooner.

    Not a generator itself: a kernel, recipe file, recipe or operator it cannot take raises
    here, at the call, before any check runs or any line is printed.
    """
    green = get_kernel(kernel)
    recipe_sources = tuple(str(source) for source in recipe_sources)
    ensure_loaded(recipe_sources)
    pairs = pairs_to_check(list(operators or ()), list(recipes or ()))
    return run_in_worker(pairs, _check_in_this_process,
                             (device_key(device), recipe_sources, seed, production, green,
                              precision, fail_fast),
                             CHECK_WORKER_ENVIRONMENT)


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
            with set_environment(environment or {}):  # workers are spawned inside submit()
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
