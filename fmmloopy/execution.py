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

from fmmloopy.kernels import GreenKernel, get_kernel
from fmmloopy.operators import get_operator, math_kernel
from fmmloopy.recipes import Recipe, RecipeContext, RecipeError, select_recipe


@dataclass
class CompiledOperator:
    """One operator transformed by one recipe for one device; call it with a queue and arrays."""

    operator: str
    recipe: Recipe
    device: cl.Device
    t_unit: lp.TranslationUnit
    _executors: dict[int, Any] = field(default_factory=dict, repr=False)  # by OpenCL context

    @property
    def label(self) -> str:
        recipe = self.recipe
        return f"operator {self.operator!r} under recipe {recipe.name!r} ({recipe.source})"

    def __call__(self, queue: cl.CommandQueue, **arrays) -> dict[str, Any]:
        """Run the kernel; returns loopy's output dict. Build failures name operator and recipe."""
        executor = self._executors.get(queue.context.int_ptr)
        if executor is None:
            executor = self._executors[queue.context.int_ptr] = self.t_unit.executor(
                queue.context)
        try:
            _event, outputs = executor(queue, **arrays)
        except (cl.Error, lp.LoopyError) as exc:
            raise RecipeError(f"running {self.label} on {self.device.name!r} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        return outputs

    @property
    def argument_names(self) -> list[str]:
        """Names of the kernel's arguments, in order."""
        return [arg.name for arg in self.t_unit.default_entrypoint.args]

    def device_code(self) -> str:
        """The generated OpenCL source."""
        return lp.generate_code_v2(self.t_unit).device_code()


_CACHE: dict[tuple, CompiledOperator] = {}


def _apply_recipe(recipe: Recipe, knl: lp.TranslationUnit,
                  ctx: RecipeContext) -> lp.TranslationUnit:
    where = f"recipe {recipe.name!r} from {recipe.source} on operator {ctx.operator!r}"
    try:
        transformed = recipe(knl, ctx)
    except Exception as exc:
        raise RecipeError(f"{where} raised {type(exc).__name__}: {exc}") from exc
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
        knl = math_kernel(operator, kernel=green, dtype=dtype, **sizes)
        ctx = RecipeContext(operator=operator, template=spec.template, device=device,
                            parameters=dict(sizes, dtype=dtype))
        transformed = _apply_recipe(recipe, knl, ctx)
        _CACHE[key] = CompiledOperator(operator, recipe, device, transformed)
    return _CACHE[key]
