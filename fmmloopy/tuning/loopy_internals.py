"""Everything fmmloopy takes from loopy beyond its public API, in one place.

Written against loopy 2025.2 (pinned in ``pyproject.toml``). The module sits in the tuning layer,
the lowest layer that needs loopy's internals, so that both of its users can import it:

* the race analysis of the recipe layer (:mod:`fmmloopy.tuning.races`) asks, as
  :func:`loopy.check.check_for_write_races` does, whether a loop's tag makes writes to a
  temporary race: ``loopy.check._is_racing_iname_tag`` (:func:`is_racing_iname_tag`);
* the disk kernel cache (:mod:`fmmloopy.execution.kernel_cache`) stores a kernel's generated code
  as data and runs it without loopy (:mod:`fmmloopy.execution.launcher`). Describing the launch
  as data (:mod:`fmmloopy.execution.generation`) needs what loopy's executor computes and does
  not export:

  - ``executor.has_runtime_typed_args`` and ``executor.packing_controller``: whether the
    executor passes the arguments as given (:func:`runs_plainly`);
  - ``ExecutorBase.get_typed_and_scheduled_translation_unit``: the translation unit the executor
    would generate code from, through loopy's persistent cache (:func:`describe_launch`);
  - ``loopy.schedule.CallKernel`` and ``loopy.schedule.get_insn_ids_for_block_at``: the device
    kernels of the linearization and their instructions;
  - ``loopy.schedule.tools.get_subkernel_arg_info``: the arguments a device kernel takes, in
    order;
  - ``LoopKernel.get_grid_sizes_for_insn_ids_as_exprs`` (with
    ``TranslationUnit.callables_table``): the launch grid as expressions in the scalar arguments.

Every access goes through one guard: a missing name, or a function that no longer takes the
arguments given, raises :class:`LoopyInternalsChanged`, whose message names the installed loopy
version and the internal. :func:`self_check` looks for every name up front; when it fails, or a
guard fires, the kernel cache warns once and runs kernels through loopy's public path
(``t_unit.executor(context)``), storing nothing, and the race analysis stops with that message
(a recipe is never accepted unchecked). ``tests/test_loopy_internals.py`` exercises each wrapper
on a tiny kernel and fails with the same message.

Why not loopy's public path only. It needs the transformed kernel in every process (math-level
kernel, recipe, race analysis), then loopy's persistent caches, keyed by a hash of the whole
kernel. loopy's caches once missed in every new process (``lp.make_kernel`` orders the
parameters of a kernel's assumptions by iterating a set of names, so the kernel's hash followed
Python's per-process string hashing); the templates now put them in name order, so they hit in
every process. Even then, building the transformed kernels plus loopy's look-ups cost more than
the 0.1 s over the data path under which fmmloopy prefers loopy's public API (``python
benchmarks/kernel_cache_paths.py``: docs/performance.md, "Kernel cache: public API vs
internals"; the earlier measurement in docs/history.md), so the data path and these internals
stay.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from typing import Any

import loopy as lp

#: The loopy release these internals were read from.
WRITTEN_FOR = "2025.2"


class LoopyInternalsChanged(RuntimeError):
    """An internal of loopy that fmmloopy relies on is missing or takes other arguments."""


def loopy_version() -> str:
    """The installed loopy's version (its distribution's metadata)."""
    try:
        return importlib.metadata.version("loopy")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(lp, "__version__", "?"))


def _changed(what: str, exc: Exception) -> LoopyInternalsChanged:
    return LoopyInternalsChanged(
        f"the installed loopy {loopy_version()} does not provide {what} as loopy {WRITTEN_FOR} "
        f"did ({type(exc).__name__}: {exc}); fmmloopy/tuning/loopy_internals.py must follow it")


def _attribute(owner: Any, name: str, what: str) -> Any:
    """``owner.name``, or :class:`LoopyInternalsChanged` naming ``what``."""
    try:
        return getattr(owner, name)
    except AttributeError as exc:
        raise _changed(what, exc) from exc


def _imported(module: str, name: str) -> Any:
    """``module.name`` (imported), or :class:`LoopyInternalsChanged` naming it."""
    what = f"{module}.{name}"
    try:
        return _attribute(importlib.import_module(module), name, what)
    except ImportError as exc:
        raise _changed(what, exc) from exc


def _call(function: Any, what: str, *args: Any) -> Any:
    """``function(*args)`` after checking that its signature still takes ``args``
    (:class:`LoopyInternalsChanged` if not); what the call itself raises propagates."""
    try:
        inspect.signature(function).bind(*args)
    except (TypeError, ValueError) as exc:
        raise _changed(what, exc) from exc
    return function(*args)


def is_racing_iname_tag(temporary: Any, tag: Any) -> bool:
    """Whether ``tag`` on a loop makes writes to ``temporary`` race (loopy.check's rule)."""
    what = "loopy.check._is_racing_iname_tag"
    return _call(_imported("loopy.check", "_is_racing_iname_tag"), what, temporary, tag)


def runs_plainly(executor: Any) -> bool:
    """Whether ``executor`` (of ``t_unit.executor(context)``) passes its arguments as given:
    none typed only at call time (``has_runtime_typed_args``), no packing of separated arrays
    (``packing_controller``). Only such kernels can be described as data."""
    return (not _attribute(executor, "has_runtime_typed_args", "executor.has_runtime_typed_args")
            and _attribute(executor, "packing_controller",
                           "executor.packing_controller") is None)


_GRID = "LoopKernel.get_grid_sizes_for_insn_ids_as_exprs"


@dataclass(frozen=True)
class LaunchDescription:
    """The single device kernel of a scheduled translation unit and how to launch it."""

    scheduled: lp.TranslationUnit  # typed and scheduled, as the executor generates code from it
    kernel: lp.LoopKernel  # its entry point, linearized
    kernel_name: str  # the OpenCL kernel's name
    passed_names: tuple[str, ...]  # the arguments the OpenCL kernel takes, in order
    groups: tuple  # work-groups per axis, pymbolic expressions in the scalar arguments
    group_size: tuple  # work-items per group and axis, likewise


def describe_launch(executor: Any, entrypoint: str) -> LaunchDescription | None:
    """How ``executor`` would launch ``entrypoint``, when that is one device kernel that takes
    only the entry point's own arguments; None otherwise (several device kernels, loop indices
    or temporaries passed between them). Only for an executor that :func:`runs_plainly`."""
    call_kernel = _imported("loopy.schedule", "CallKernel")
    block_insn_ids = _imported("loopy.schedule", "get_insn_ids_for_block_at")
    arg_info = _imported("loopy.schedule.tools", "get_subkernel_arg_info")
    grid = _GRID.split(".")[-1]
    grid_sizes = _attribute(lp.LoopKernel, grid, _GRID)
    what = "ExecutorBase.get_typed_and_scheduled_translation_unit"
    scheduled = _call(_attribute(executor, "get_typed_and_scheduled_translation_unit", what),
                      what, None)  # None: no argument types known only at call time
    kernel = scheduled[entrypoint]
    linearization = kernel.linearization
    calls = [(index, item) for index, item in enumerate(linearization or ())
             if isinstance(item, call_kernel)]
    if len(calls) != 1:
        return None
    index, call = calls[0]
    name = _attribute(call, "kernel_name", "CallKernel.kernel_name")
    info = _call(arg_info, "loopy.schedule.tools.get_subkernel_arg_info", kernel, name)
    passed = {field: _attribute(info, field, f"SubKernelArgInfo.{field}")
              for field in ("passed_names", "passed_inames", "passed_temporaries")}
    if passed["passed_inames"] or passed["passed_temporaries"]:
        return None
    insn_ids = _call(block_insn_ids, "loopy.schedule.get_insn_ids_for_block_at",
                     linearization, index)
    callables = _attribute(scheduled, "callables_table", "TranslationUnit.callables_table")
    groups, group_size = _call(grid_sizes, _GRID, kernel, insn_ids, callables)
    return LaunchDescription(scheduled, kernel, name, tuple(passed["passed_names"]),
                             tuple(groups), tuple(group_size))


#: Every name the wrappers above look up: (module, dotted attribute path).
_NAMES = (
    ("loopy.check", "_is_racing_iname_tag"),
    ("loopy.target.execution", "ExecutorBase.get_typed_and_scheduled_translation_unit"),
    ("loopy.schedule", "CallKernel"),
    ("loopy.schedule", "get_insn_ids_for_block_at"),
    ("loopy.schedule.tools", "get_subkernel_arg_info"),
    ("loopy.schedule.tools", "SubKernelArgInfo.passed_names"),
    ("loopy", "LoopKernel.get_grid_sizes_for_insn_ids_as_exprs"),
)


def self_check() -> str | None:
    """None when every internal named here is where loopy 2025.2 had it, else the message of
    :class:`LoopyInternalsChanged` for the first one missing.

    Module-level names and methods are looked up; the executor's instance attributes
    (``has_runtime_typed_args``, ``packing_controller``) and the signatures are checked where
    they are used, by the same guard."""
    try:
        for module, path in _NAMES:
            head, *rest = path.split(".")
            found = _imported(module, head)
            for part in rest:
                found = _attribute(found, part, f"{module}.{path}")
    except LoopyInternalsChanged as exc:
        return str(exc)
    return None
