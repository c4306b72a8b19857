"""Everything fmmloopy takes from loopy beyond its public API, in one place.

Written against loopy 2025.2 (pinned in ``pyproject.toml``). Two users:

* the disk kernel cache (:mod:`fmmloopy.execution.kernel_cache`) stores a kernel's generated
  code as data and launches it without loopy. Describing the launch needs what loopy's executor
  computes and does not export: the typed and scheduled translation unit, its single device
  kernel (a ``CallKernel`` of the linearization), the arguments passed to that kernel and the
  launch grid as expressions in the scalar arguments (:func:`describe_launch`);
* the race analysis (:mod:`fmmloopy.tuning.races`) asks, as
  :func:`loopy.check.check_for_write_races` does, whether a loop's tag makes a write race
  (:func:`is_racing_iname_tag`).

Every access goes through :func:`_internal`, which turns a missing or renamed internal into a
:class:`LoopyInternalsChanged` naming the installed loopy version and the internal; the kernel
cache then falls back to loopy's public path (``t_unit.executor(context)``, uncached on disk)
with one warning, and ``tests/test_loopy_internals.py`` fails with the same message.

Why not the public path only. Keeping the generated code in a persistent dictionary and running
it through ``t_unit.executor`` needs the transformed kernel in every process: the math-level
kernel, the recipe and the race analysis, then loopy's hashing of the kernel to find its cached
code. ``benchmarks/kernel_cache_paths.py`` measures both on a warm start (docs/performance.md,
"Kernel cache: public API against internals"); the public path costs more than the 0.1 s the
data path is allowed to save before it is worth these internals.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import loopy as lp

#: The loopy release these internals were read from.
WRITTEN_FOR = "2025.2"

_T = TypeVar("_T")


class LoopyInternalsChanged(RuntimeError):
    """An internal of loopy that fmmloopy relies on is missing or changed."""


def loopy_version() -> str:
    try:
        return importlib.metadata.version("loopy")
    except importlib.metadata.PackageNotFoundError:
        return getattr(lp, "__version__", "?")


def _internal(what: str, get: Callable[[], _T]) -> _T:
    """``get()``, or :class:`LoopyInternalsChanged` naming ``what`` and the loopy version when
    the internal is gone or takes other arguments."""
    try:
        return get()
    except (AttributeError, ImportError, TypeError, KeyError) as exc:
        raise LoopyInternalsChanged(
            f"loopy {loopy_version()} no longer provides {what} as loopy {WRITTEN_FOR} did "
            f"({type(exc).__name__}: {exc}); fmmloopy.tuning.loopy_internals must follow it"
        ) from exc


def is_racing_iname_tag(temporary, tag) -> bool:
    """Whether ``tag`` on a loop makes writes to ``temporary`` race (loopy.check's rule)."""
    def rule():
        from loopy.check import _is_racing_iname_tag
        return _is_racing_iname_tag
    return _internal("loopy.check._is_racing_iname_tag", rule)(temporary, tag)


def runs_plainly(executor) -> bool:
    """Whether ``executor`` passes its arguments as given: no argument typed at call time, no
    packing of arguments (only such kernels can be described as data)."""
    return _internal("the executor's has_runtime_typed_args and packing_controller",
                     lambda: not executor.has_runtime_typed_args
                     and executor.packing_controller is None)


@dataclass(frozen=True)
class LaunchDescription:
    """One device kernel of a scheduled translation unit and how to launch it."""

    scheduled: Any  # the typed, scheduled translation unit (lp.TranslationUnit)
    kernel: Any  # its entry point (lp.LoopKernel), linearized
    kernel_name: str  # the OpenCL kernel's name
    passed_names: tuple[str, ...]  # the arguments it takes, in order
    groups: tuple  # grid of work-groups, expressions in the scalar arguments
    group_size: tuple  # work-group size, likewise


def describe_launch(executor, entrypoint: str) -> LaunchDescription | None:
    """The launch of ``executor``'s translation unit when it is one device kernel that takes
    only the entry point's own arguments; None otherwise (several kernels, inames or
    temporaries passed between them)."""
    scheduled = _internal("executor.get_typed_and_scheduled_translation_unit",
                          lambda: executor.get_typed_and_scheduled_translation_unit(None))

    def schedule_tools():
        from loopy.schedule import CallKernel, get_insn_ids_for_block_at
        from loopy.schedule.tools import get_subkernel_arg_info
        return CallKernel, get_insn_ids_for_block_at, get_subkernel_arg_info

    call_kernel, block_insn_ids, arg_info = _internal(
        "loopy.schedule.CallKernel, get_insn_ids_for_block_at and "
        "loopy.schedule.tools.get_subkernel_arg_info", schedule_tools)
    kernel = scheduled[entrypoint]
    linearization = _internal("LoopKernel.linearization", lambda: kernel.linearization)
    calls = [(index, item) for index, item in enumerate(linearization)
             if isinstance(item, call_kernel)]
    if len(calls) != 1:
        return None
    index, call = calls[0]
    info = _internal("get_subkernel_arg_info(kernel, name)",
                     lambda: arg_info(kernel, call.kernel_name))
    if info.passed_inames or info.passed_temporaries:
        return None
    groups, group_size = _internal(
        "LoopKernel.get_grid_sizes_for_insn_ids_as_exprs",
        lambda: kernel.get_grid_sizes_for_insn_ids_as_exprs(
            block_insn_ids(linearization, index), scheduled.callables_table))
    return LaunchDescription(scheduled, kernel, call.kernel_name, tuple(info.passed_names),
                             tuple(groups), tuple(group_size))


def self_check() -> str | None:
    """None when every internal above is where loopy 2025.2 had it, else the first one
    missing (the message of :class:`LoopyInternalsChanged`)."""
    def names():
        from loopy.check import _is_racing_iname_tag
        from loopy.schedule import CallKernel, get_insn_ids_for_block_at
        from loopy.schedule.tools import get_subkernel_arg_info
        from loopy.target.execution import ExecutorBase
        return (_is_racing_iname_tag, CallKernel, get_insn_ids_for_block_at,
                get_subkernel_arg_info, ExecutorBase.get_typed_and_scheduled_translation_unit,
                lp.LoopKernel.get_grid_sizes_for_insn_ids_as_exprs)
    try:
        _internal("the schedule, check and executor internals listed in this module", names)
    except LoopyInternalsChanged as exc:
        return str(exc)
    return None
