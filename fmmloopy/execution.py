"""Transformed kernels and their executors, built once per (operator, recipe, device, dtype).

:func:`compiled_operator` applies a recipe to an operator's math-level kernel and keeps one loopy
executor for it; every caller of the same combination gets the same object, so code generation
and the OpenCL build happen once per process (and loopy/PoCL disk caches make them cheap later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import loopy as lp
import numpy as np
import pyopencl as cl
from pymbolic import evaluate
from pymbolic.primitives import Variable

from fmmloopy.kernels import GreenKernel, get_kernel
from fmmloopy.layouts import TARGET_MAJOR, layout_arguments
from fmmloopy.operators import get_operator, math_kernel
from fmmloopy.recipes import Recipe, RecipeContext, RecipeError, select_recipe
from fmmloopy.resources import explain_opencl_error
from fmmloopy.validation import where_in_recipe


@dataclass
class CompiledOperator:
    """One operator transformed by one recipe for one device; call it with a queue and arrays."""

    operator: str
    recipe: Recipe
    device: cl.Device
    t_unit: lp.TranslationUnit
    #: Arrays whose shape the recipe changed (an axis split for ``vec``): name -> (math-level
    #: shape, transformed shape), as loopy expressions. Callers pass math-level shapes.
    reshaped: dict[str, tuple[tuple, tuple]] = field(default_factory=dict)
    _executors: dict[int, Any] = field(default_factory=dict, repr=False)  # by OpenCL context

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
        executor = self._executors.get(queue.context.int_ptr)
        if executor is None:
            executor = self._executors[queue.context.int_ptr] = self.t_unit.executor(
                queue.context)
        given_shapes = {name: arrays[name].shape for name in self.reshaped if name in arrays}
        arrays = self._reshape(arrays)
        try:
            _event, outputs = executor(queue, **arrays)
        except Exception as exc:  # code generation (loopy, islpy), the OpenCL build, the launch
            hint = explain_opencl_error(exc, self.device)
            raise RecipeError(f"running {self.label} on {self.device.name!r} failed: " + (
                f"{hint} (OpenCL: {exc})" if hint else f"{type(exc).__name__}: {exc}")) from exc
        return {name: value.reshape(given_shapes[name]) if name in given_shapes else value
                for name, value in outputs.items()}

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
        return [arg.name for arg in self.t_unit.default_entrypoint.args]

    def device_code(self) -> str:
        """The generated OpenCL source."""
        return lp.generate_code_v2(self.t_unit).device_code()


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
        knl = math_kernel(operator, kernel=green, dtype=dtype, layout=recipe.layout, **sizes)
        ctx = RecipeContext(operator=operator, template=spec.template, device=device,
                            parameters=dict(sizes, dtype=dtype, layout=recipe.layout))
        transformed = _apply_recipe(recipe, knl, ctx)
        _CACHE[key] = CompiledOperator(operator, recipe, device, transformed,
                                       _reshaped_arrays(knl, transformed))
    return _CACHE[key]
