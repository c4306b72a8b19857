"""Run a generated kernel from its description (plain data) in one OpenCL context, without loopy.

:class:`Launcher` builds the OpenCL source of a
:class:`~fmmloopy.execution.generated_kernel.GeneratedKernel` (once per process and source,
loaded as the device's binary where a process built it before:
:mod:`fmmloopy.execution.program_cache`) and launches it as loopy's executor
would, after checking every argument against the description: arrays by dtype, shape (its extents
evaluated over the integer scalar arguments), C order and offset, scalars by whether they fit
their type. Nothing of the description is executed as Python: extents and the launch grid are
pymbolic expressions, parsed by :func:`expression` and evaluated over integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyopencl as cl
from pymbolic import evaluate, parse

from fmmloopy.execution.generated_kernel import GeneratedKernel, KernelArgument
from fmmloopy.execution.program_cache import built_program

_EXPRESSIONS: dict[str, Any] = {}
#: Distinct scalar sets whose extents a launcher keeps (:meth:`Launcher._extents`).
_MOST_EVALUATED = 4096


def expression(text: str):
    """A pymbolic expression parsed (not executed) from ``text``, memoised."""
    if text not in _EXPRESSIONS:
        _EXPRESSIONS[text] = parse(text)
    return _EXPRESSIONS[text]


class Launcher:
    """Runs ``generated`` in ``context``: ``launcher(queue, **arrays) -> (event, outputs)``, as
    loopy's executor returns them (the outputs are the arrays passed for the written names)."""

    def __init__(self, generated: GeneratedKernel, context: cl.Context):
        self.generated = generated
        program = built_program(context, generated.device_code, generated.build_options)
        self.kernel = cl.Kernel(program, generated.kernel_name)  # its own: launchers set args
        if self.kernel.num_args != len(generated.arguments):
            raise ValueError(f"kernel {generated.kernel_name!r} takes {self.kernel.num_args} "
                             f"arguments, its description {len(generated.arguments)}")
        self.groups = tuple(map(expression, generated.groups))
        self.group_size = tuple(map(expression, generated.group_size))
        #: Work-group sizes a non-empty grid was enqueued with: PoCL compiles a kernel for its
        #: work-group size at the first such launch; later launches of the size reuse it.
        self.launched_sizes: set[tuple[int, ...]] = set()
        #: Sorted integer scalars -> (array shapes, grid, work-group size): :meth:`_extents`.
        self._evaluated: dict[tuple, tuple[dict, tuple, tuple]] = {}

    def _extents(self, scalars: dict[str, int]) -> tuple[dict, tuple, tuple]:
        """The array arguments' shapes, the grid and the work-group size for the integer
        ``scalars``, evaluated once per distinct set of them (a plan's launches repeat
        theirs at every evaluation, and evaluating the expressions cost host time at every
        launch: docs/history.md, 2026-11-26, "Set-up on AVX2 (fifth session)")."""
        key = tuple(sorted(scalars.items()))
        extents = self._evaluated.get(key)
        if extents is None:
            shapes = {argument.name: _array_shape(argument, scalars)
                      for argument in self.generated.arguments if argument.is_array}
            groups = tuple(int(evaluate(extent, scalars)) for extent in self.groups) or (1,)
            size = tuple(int(evaluate(extent, scalars)) for extent in self.group_size) or (1,)
            extents = shapes, groups, size
            if len(self._evaluated) >= _MOST_EVALUATED:
                self._evaluated.clear()
            self._evaluated[key] = extents
        return extents

    @property
    def compiled(self) -> bool:
        """Whether every launch of this kernel runs code already compiled: its work-group
        size is the same for any arguments (no extent names one) and a launch with it has
        run."""
        if not all(isinstance(extent, (int, np.integer)) for extent in self.group_size):
            return False
        return (tuple(map(int, self.group_size)) or (1,)) in self.launched_sizes

    def __call__(self, queue: cl.CommandQueue, **arrays):
        return self.enqueue(queue, self.bind(**arrays)), {
            name: arrays[name] for name in self.generated.written_names if name in arrays}

    def bind(self, **arrays) -> tuple[list, tuple[int, ...], tuple[int, ...]]:
        """The kernel's argument values, grid and work-group size for ``arrays``, after
        checking each (TypeError naming the argument): what :meth:`enqueue` launches, as many
        times as asked, while the arrays stay what they are."""
        generated = self.generated
        scalars = {name: int(value) for name, value in arrays.items()
                   if isinstance(value, (int, np.integer)) and not isinstance(value, bool)}
        for argument in generated.arguments:
            if argument.name not in arrays:
                kind = "array" if argument.is_array else "scalar"
                raise TypeError(f"missing {kind} argument {argument.name!r}")
        shapes, groups, size = self._extents(scalars)
        values = [_checked_array(argument, arrays[argument.name], shapes[argument.name])
                  if argument.is_array else _checked_scalar(argument, arrays[argument.name])
                  for argument in generated.arguments]
        return values, groups, size

    def enqueue(self, queue: cl.CommandQueue,
                bound: tuple[list, tuple[int, ...], tuple[int, ...]]) -> cl.Event:
        """Launch with arguments :meth:`bind` checked; the event (nothing waits for it)."""
        values, groups, size = bound
        self.kernel.set_args(*values)
        event = cl.enqueue_nd_range_kernel(queue, self.kernel, groups, size, None, None,
                                           True, True)  # g_times_l, allow_empty_ndrange
        if all(groups):
            self.launched_sizes.add(size)
        return event


def _array_shape(argument: KernelArgument, scalars: dict) -> tuple[int, ...]:
    """The shape ``argument`` has for the integer ``scalars`` (TypeError if they do not say)."""
    try:
        return tuple(int(evaluate(expression(extent), scalars)) for extent in argument.shape)
    except Exception as exc:
        raise TypeError(f"the shape of argument {argument.name!r} ({argument.shape}) cannot be "
                        f"evaluated from the scalar arguments: {exc}") from exc


def _checked_array(argument: KernelArgument, value, shape: tuple[int, ...]) -> cl.Buffer:
    """The buffer of ``value`` after checking it is what ``argument`` says, of ``shape``
    (TypeError if not)."""
    if not hasattr(value, "base_data"):
        raise TypeError(f"argument {argument.name!r} must be a pyopencl array, got "
                        f"{type(value).__name__}")
    if np.dtype(value.dtype) != np.dtype(argument.dtype):
        raise TypeError(f"argument {argument.name!r} has dtype {value.dtype}, the kernel takes "
                        f"{np.dtype(argument.dtype)}")
    if tuple(value.shape) != shape:
        raise TypeError(f"argument {argument.name!r} has shape {tuple(value.shape)}, the kernel "
                        f"takes {shape}")
    if not value.flags.c_contiguous or value.offset != 0:
        raise TypeError(f"argument {argument.name!r} must be C-contiguous with no offset")
    return value.base_data


def _checked_scalar(argument: KernelArgument, value):
    """``value`` as the scalar type of ``argument`` (TypeError if it does not fit)."""
    dtype = np.dtype(argument.dtype)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"argument {argument.name!r} must be a number, got "
                        f"{type(value).__name__}")
    converted = dtype.type(value)
    if converted != value:
        raise TypeError(f"argument {argument.name!r} = {value!r} does not fit {dtype}")
    return converted
