"""A transformed kernel's generated code and launch as data, for the disk kernel cache.

:func:`generate` turns what loopy's executor would run into a
:class:`~fmmloopy.execution.generated_kernel.GeneratedKernel` (OpenCL source, build options, the
device kernel's arguments in order, the launch grid, all as text) that
:class:`~fmmloopy.execution.launcher.Launcher` runs without loopy. Reading the launch from loopy
takes its internals (:mod:`fmmloopy.tuning.loopy_internals`); when they moved, or the launch
cannot be described so, :func:`generate` returns None and the kernel runs through loopy's
executor, not stored.
"""

from __future__ import annotations

from typing import Any

import loopy as lp
from pymbolic import parse

from fmmloopy.execution.cache_files import warn_once
from fmmloopy.execution.generated_kernel import GeneratedKernel, KernelArgument
from fmmloopy.tuning import loopy_internals


def as_text(expression) -> str:
    """``expression`` as text that pymbolic's parser reads back to it (ValueError if not)."""
    text = str(expression)
    if parse(text) != expression:
        raise ValueError(f"{expression!r} does not survive a round trip through text")
    return text


def written_names(t_unit: lp.TranslationUnit) -> list[str]:
    """Names of the arguments the entry point writes (its outputs), in argument order."""
    entry = t_unit.default_entrypoint
    written = {name for insn in entry.instructions for name in insn.assignee_var_names()}
    return [arg.name for arg in entry.args if arg.name in written]


def reshaped_arrays(before: lp.TranslationUnit, after: lp.TranslationUnit,
                    ) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Arrays whose shape a recipe changed without changing their size (split axes), with both
    shapes as text (:func:`fmmloopy.execution.launcher.expression` parses them back)."""
    old = {arg.name: arg.shape for arg in before.default_entrypoint.args
           if isinstance(arg, lp.ArrayArg)}
    return {arg.name: (tuple(map(as_text, old[arg.name])), tuple(map(as_text, arg.shape)))
            for arg in after.default_entrypoint.args
            if isinstance(arg, lp.ArrayArg) and arg.shape != old[arg.name]}


def generate(t_unit: lp.TranslationUnit, executor: Any,
             reshaped: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
             ) -> GeneratedKernel | None:
    """The generated code of ``t_unit`` and its launch as data, as ``executor`` (of
    ``t_unit.executor(context)``) would run it; None when it cannot be described so (argument
    types known only at call time, several device kernels, arguments passed another way) or when
    loopy's internals moved (then one :class:`~fmmloopy.execution.cache_files.KernelCacheWarning`
    per process says which)."""
    problem = loopy_internals.self_check()
    if problem is None:
        try:
            return _describe(t_unit, executor, reshaped)
        except loopy_internals.LoopyInternalsChanged as exc:
            problem = str(exc)
    warn_once(f"{problem}; kernels run through loopy's executor and are not stored")
    return None


def _describe(t_unit: lp.TranslationUnit, executor: Any, reshaped: dict,
              ) -> GeneratedKernel | None:
    if not loopy_internals.runs_plainly(executor):
        return None
    launch = loopy_internals.describe_launch(executor, t_unit.default_entrypoint.name)
    if launch is None:
        return None
    kernel_args = {arg.name: arg for arg in launch.kernel.args}
    arguments = []
    for name in launch.passed_names:
        arg = kernel_args.get(name)
        if isinstance(arg, lp.ArrayArg) and arg.offset == 0:
            arguments.append(KernelArgument(name, True, arg.dtype.numpy_dtype.str,
                                            tuple(map(as_text, arg.shape))))
        elif isinstance(arg, lp.ValueArg):
            arguments.append(KernelArgument(name, False, arg.dtype.numpy_dtype.str))
        else:
            return None
    try:
        groups, group_size = tuple(map(as_text, launch.groups)), tuple(map(as_text,
                                                                           launch.group_size))
    except ValueError:
        return None
    code = lp.generate_code_v2(launch.scheduled)
    return GeneratedKernel(
        device_code=code.device_code(),
        build_options=tuple(launch.kernel.options.build_options or ()),
        kernel_name=launch.kernel_name,
        arguments=tuple(arguments),
        groups=groups, group_size=group_size,
        argument_names=tuple(arg.name for arg in t_unit.default_entrypoint.args),
        written_names=tuple(written_names(t_unit)),
        reshaped=reshaped)
