"""Transformed kernels and their launchers, built once per (operator, recipe, device, dtype).

:func:`compiled_operator` applies a recipe to an operator's math-level kernel, generates its code
through loopy and keeps one launcher per OpenCL context; every caller of the same combination
gets the same object, so code generation and the OpenCL build happen once per process. The
generated code goes to the disk kernel cache (:mod:`fmmloopy.kernel_cache`), so a later process
skips the math-level kernel, the recipe and loopy, and builds from PoCL's binary cache.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import loopy as lp
import numpy as np
import pyopencl as cl
from pymbolic import evaluate
from pymbolic.primitives import Variable

from fmmloopy import kernel_cache
from fmmloopy.devices import context_for
from fmmloopy.kernels import GreenKernel, get_kernel
from fmmloopy.layouts import TARGET_MAJOR, layout_arguments
from fmmloopy.operators import get_operator, math_kernel
from fmmloopy.recipes import Recipe, RecipeContext, RecipeError, select_recipe
from fmmloopy.resources import explain_opencl_error
from fmmloopy.validation import where_in_recipe


class CompiledOperator:
    """One operator transformed by one recipe for one device; call it with a queue and arrays.

    The generated code comes from the disk kernel cache (:mod:`fmmloopy.kernel_cache`) when it
    holds it; the transformed loopy kernel (:attr:`t_unit`) is then built only if asked for.
    """

    def __init__(self, operator: str, recipe: Recipe, device: cl.Device,
                 transform: Callable[[], tuple[lp.TranslationUnit, lp.TranslationUnit]], *,
                 disk_key: dict[str, Any] | None = None,
                 generated: kernel_cache.GeneratedKernel | None = None):
        self.operator, self.recipe, self.device = operator, recipe, device
        self._transform, self._disk_key, self._generated = transform, disk_key, generated
        self._t_unit: lp.TranslationUnit | None = None
        self._reshaped: dict[str, tuple[tuple, tuple]] = {}
        #: Launchers by OpenCL context: ``launcher(queue, **arrays) -> (event, outputs)``.
        self._executors: dict[int, Any] = {}
        if generated is None:  # a recipe that raises fails here, not at the first launch
            self._build_t_unit()

    def _build_t_unit(self) -> None:
        math_level, self._t_unit = self._transform()
        self._reshaped = _reshaped_arrays(math_level, self._t_unit)

    @property
    def t_unit(self) -> lp.TranslationUnit:
        """The transformed loopy kernel (built now if the code came from the disk cache)."""
        if self._t_unit is None:
            self._build_t_unit()
        return self._t_unit

    @property
    def reshaped(self) -> dict[str, tuple[tuple, tuple]]:
        """Arrays whose shape the recipe changed (an axis split for ``vec``): name -> (math-level
        shape, transformed shape), as loopy expressions. Callers pass math-level shapes."""
        return self._generated.reshaped if self._generated else self._reshaped

    @property
    def layout(self):
        """The list layout this kernel walks (chosen by its recipe)."""
        return self.recipe.layout

    @property
    def label(self) -> str:
        recipe = self.recipe
        function = getattr(recipe.function, "__qualname__", "?")
        return (f"operator {self.operator!r} under recipe {recipe.name!r} (function {function} in "
                f"{recipe.source})")

    def __call__(self, queue: cl.CommandQueue, **arrays) -> dict[str, Any]:
        """Run the kernel; returns loopy's output dict. Build failures name operator and recipe."""
        given_shapes = {name: arrays[name].shape for name in self.reshaped if name in arrays}
        arrays = self._reshape(arrays)
        try:
            executor = self._executors.get(queue.context.int_ptr)
            if executor is None:
                executor = self._executors[queue.context.int_ptr] = self._launcher(
                    queue.context)
            _event, outputs = executor(queue, **arrays)
        except Exception as exc:  # code generation (loopy, islpy), the OpenCL build, the launch
            hint = explain_opencl_error(exc, self.device)
            raise RecipeError(f"running {self.label} on {self.device.name!r} failed: " + (
                f"{hint} (OpenCL: {exc})" if hint else f"{type(exc).__name__}: {exc}")) from exc
        return {name: value.reshape(given_shapes[name]) if name in given_shapes else value
                for name, value in outputs.items()}

    def _launcher(self, context: cl.Context):
        """Generate the code (unless cached), build it for ``context``; store it once it builds."""
        fresh = self._generated is None
        if fresh:
            executor = self.t_unit.executor(context)
            if executor.has_runtime_typed_args or executor.packing_controller is not None:
                return executor  # argument types fixed at call time: loopy's executor, uncached
            self._generated = _generate(self.t_unit, executor, self._reshaped)
        launcher = _Launcher(self._generated, context)
        if fresh:
            kernel_cache.store(self._disk_key, self._generated)
        return launcher

    @property
    def generated(self) -> kernel_cache.GeneratedKernel | None:
        """The generated code and launcher (generated now if not yet; None for a kernel whose
        argument types are only known at call time, which loopy's executor runs)."""
        context = context_for(self.device)
        if self._generated is None and context.int_ptr not in self._executors:
            self._executors[context.int_ptr] = self._launcher(context)
        return self._generated

    def _reshape(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Views of the arrays the recipe re-shaped, in the shapes the transformed kernel takes.

        Sizes come from the scalar arguments given and from matching the math-level shape of
        each array with the array itself (C order, so a split axis is a free view).
        """
        if not self.reshaped:
            return arrays
        sizes = {name: int(value) for name, value in arrays.items()
                 if isinstance(value, (int, np.integer))}
        for name, (math_shape, _) in self.reshaped.items():
            if name in arrays:
                given = zip(math_shape, arrays[name].shape, strict=False)
                sizes.update({extent.name: length for extent, length in given
                              if isinstance(extent, Variable) and extent.name not in sizes})
        return arrays | {
            name: arrays[name].reshape(tuple(int(evaluate(extent, sizes)) for extent in shape))
            for name, (_, shape) in self.reshaped.items() if name in arrays}

    def arguments_from(self, target_major: dict[str, Any]) -> dict[str, Any]:
        """This kernel's host arguments from target-major ones (lists in the recipe's layout).

        ``target_major`` holds the template's target-major lists (``target_boxes``,
        ``source_box_starts``, ...) and whatever else the kernel takes; names it does not take
        are dropped.
        """
        names = set(self.argument_names)
        arguments = (target_major if self.layout == TARGET_MAJOR else layout_arguments(
            self.layout, target_major, self.device.max_compute_units))
        return {name: value for name, value in arguments.items() if name in names}

    @property
    def argument_names(self) -> list[str]:
        """Names of the kernel's arguments, in order."""
        if self._generated is not None:
            return list(self._generated.argument_names)
        return [arg.name for arg in self.t_unit.default_entrypoint.args]

    @property
    def written_names(self) -> list[str]:
        """Names of the arguments the kernel writes (its outputs), in argument order."""
        if self._generated is not None:
            return list(self._generated.written_names)
        return _written_names(self.t_unit)

    def device_code(self) -> str:
        """The generated OpenCL source."""
        generated = self.generated
        return (generated.device_code if generated
                else lp.generate_code_v2(self.t_unit).device_code())


class _Launcher:
    """Runs a generated kernel in one OpenCL context, as loopy's executor would, without loopy."""

    def __init__(self, generated: kernel_cache.GeneratedKernel, context: cl.Context):
        self.generated = generated
        program = cl.Program(context, generated.device_code).build(
            options=list(generated.build_options))
        self.kernels = SimpleNamespace(**{name: getattr(program, name)
                                          for name in program.kernel_names.split(";")})

    def __call__(self, queue: cl.CommandQueue, **arrays):
        missing = self.generated.input_array_names - arrays.keys()
        if missing:
            raise TypeError(f"missing array arguments: {sorted(missing)}")
        return self.generated.invoker(self.kernels, queue, None, None, None, **arrays)


def _written_names(t_unit: lp.TranslationUnit) -> list[str]:
    entry = t_unit.default_entrypoint
    written = entry.get_written_variables()
    return [arg.name for arg in entry.args if arg.name in written]


def _generate(t_unit: lp.TranslationUnit, executor,
              reshaped: dict[str, tuple[tuple, tuple]]) -> kernel_cache.GeneratedKernel:
    """Code generation through loopy's executor: device code, host launcher, argument facts."""
    entrypoint = t_unit.default_entrypoint.name
    scheduled = executor.get_typed_and_scheduled_translation_unit(None)
    code = lp.generate_code_v2(scheduled)
    return kernel_cache.GeneratedKernel(
        device_code=code.device_code(),
        build_options=tuple(scheduled[entrypoint].options.build_options or ()),
        invoker=executor.get_invoker(scheduled, entrypoint, code),
        argument_names=tuple(arg.name for arg in t_unit.default_entrypoint.args),
        input_array_names=frozenset(executor.input_array_names),
        written_names=tuple(_written_names(t_unit)),
        reshaped=reshaped)


_CACHE: dict[tuple, CompiledOperator] = {}


def _reshaped_arrays(before: lp.TranslationUnit, after: lp.TranslationUnit,
                     ) -> dict[str, tuple[tuple, tuple]]:
    """Arrays whose shape a recipe changed without changing their size (split axes)."""
    old = {arg.name: arg.shape for arg in before.default_entrypoint.args
           if isinstance(arg, lp.ArrayArg)}
    return {arg.name: (old[arg.name], arg.shape) for arg in after.default_entrypoint.args
            if isinstance(arg, lp.ArrayArg) and arg.shape != old[arg.name]}


def _apply_recipe(recipe: Recipe, knl: lp.TranslationUnit,
                  ctx: RecipeContext) -> lp.TranslationUnit:
    where = f"recipe {recipe.name!r} from {recipe.source} on operator {ctx.operator!r}"
    try:
        transformed = recipe(knl, ctx)
    except Exception as exc:
        raise RecipeError(f"{where} raised {type(exc).__name__}"
                          f"{where_in_recipe(exc, recipe.source)}: {exc}") from exc
    if not isinstance(transformed, lp.TranslationUnit):
        raise RecipeError(f"{where} returned {type(transformed).__name__}, "
                          "not a loopy TranslationUnit")
    before = [arg.name for arg in knl.default_entrypoint.args]
    after = [arg.name for arg in transformed.default_entrypoint.args]
    if sorted(before) != sorted(after):
        raise RecipeError(f"{where} changed the kernel arguments from {before} to {after}; "
                          "a recipe may transform how a kernel computes, not what it takes")
    return transformed


def compiled_operator(operator: str, device: cl.Device, *, recipe: str | Recipe | None = None,
                      kernel: str | GreenKernel = "laplace", dtype=np.float64,
                      **sizes: int) -> CompiledOperator:
    """The cached, transformed ``operator`` for ``device`` (recipe by name, or the default)."""
    spec = get_operator(operator)
    if not isinstance(recipe, Recipe):
        recipe = select_recipe(operator, spec.template, device, recipe)
    green = get_kernel(kernel)
    dtype = np.dtype(dtype)
    key = (operator, recipe, device.int_ptr, green, dtype, tuple(sorted(sizes.items())))
    if key not in _CACHE:
        def transform() -> tuple[lp.TranslationUnit, lp.TranslationUnit]:
            knl = math_kernel(operator, kernel=green, dtype=dtype, layout=recipe.layout, **sizes)
            ctx = RecipeContext(operator=operator, template=spec.template, device=device,
                                parameters=dict(sizes, dtype=dtype, layout=recipe.layout))
            return knl, _apply_recipe(recipe, knl, ctx)

        disk_key = kernel_cache.kernel_key(operator, recipe, device, green, dtype, sizes)
        _CACHE[key] = CompiledOperator(operator, recipe, device, transform, disk_key=disk_key,
                                       generated=kernel_cache.load(disk_key))
    return _CACHE[key]
