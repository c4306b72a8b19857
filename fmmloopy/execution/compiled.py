"""Transformed kernels and their launchers, built once per (operator, recipe, device, dtype).

:func:`compiled_operator` applies a recipe to an operator's math-level kernel, refuses it if it
changes what the kernel takes or makes its writes race (:mod:`fmmloopy.tuning.races`), generates its
code through loopy and keeps one launcher per OpenCL context; every caller of the same
combination gets the same object, so code generation and the OpenCL build happen once per
process. The generated code of the shipped recipes goes to the disk kernel cache
(:mod:`fmmloopy.execution.kernel_cache`) as data (:mod:`fmmloopy.execution.generation`), and
:class:`~fmmloopy.execution.launcher.Launcher` runs it: a later process skips the math-level
kernel, the recipe and loopy for them. What loopy prints while it generates code (a whole kernel,
when it rejects one) goes to :func:`loopy_log_path`, not to the screen.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import loopy as lp
import numpy as np
import pyopencl as cl
from pymbolic import evaluate
from pymbolic.primitives import Variable

from fmmloopy.base.devices import context_for, vector_doubles
from fmmloopy.execution import generation, kernel_cache, shipped_kernels
from fmmloopy.execution.cache_files import cache_dir
from fmmloopy.execution.generated_kernel import GeneratedKernel
from fmmloopy.execution.launcher import Launcher, expression
from fmmloopy.execution.opencl_errors import explain_opencl_error
from fmmloopy.execution.tuning_records import tuned_settings
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.layouts import TARGET_MAJOR, for_sizes, layout_arguments
from fmmloopy.maths.operators import get_operator, math_kernel
from fmmloopy.maths.pair_precision import checked_rsqrt_error
from fmmloopy.tuning.races import preprocess_and_analyse, silence_benign_races
from fmmloopy.tuning.recipe import Recipe, RecipeContext, RecipeError, where_in_recipe
from fmmloopy.tuning.registry import select_recipe


class CompiledOperator:
    """One operator transformed by one recipe for one device; call it with a queue and arrays.

    The generated code comes from the disk kernel cache (:mod:`fmmloopy.execution.kernel_cache`)
    when it holds it; the transformed loopy kernel (:attr:`t_unit`) is then built only if asked for.
    """

    def __init__(self, operator: str, recipe: Recipe, device: cl.Device,
                 transform: Callable[[], tuple[lp.TranslationUnit, Transformed]], *,
                 disk_key: dict[str, Any] | None = None,
                 generated: GeneratedKernel | None = None,
                 settings: Mapping[str, Any] | None = None, layout=None):
        self.operator, self.recipe, self.device = operator, recipe, device
        #: The values of the recipe's parameters this kernel was made with.
        self.settings = recipe.settings_for(device, settings)
        # Fixed with the kernel it was made for.
        self._layout = recipe.layout_for(device, self.settings) if layout is None else layout
        self._transform, self._disk_key, self._generated = transform, disk_key, generated
        self._t_unit: lp.TranslationUnit | None = None
        self._preprocessed: lp.TranslationUnit | None = None  # what the code is generated from
        self._reshaped: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        #: Launchers by OpenCL context: ``launcher(queue, **arrays) -> (event, outputs)``.
        self._executors: dict[int, Any] = {}
        #: Launches set the OpenCL kernel's arguments, then enqueue it: one thread at a time
        #: (the arguments are captured at the enqueue), as FMMs in several threads share this.
        self._lock = threading.Lock()
        if generated is None:  # a recipe that raises fails here, not at the first launch
            self._build_t_unit()

    def _build_t_unit(self) -> None:
        math_level, transformed = self._transform()
        self._t_unit, self._preprocessed = transformed.t_unit, transformed.preprocessed
        self._reshaped = generation.reshaped_arrays(math_level, self._t_unit)

    @property
    def t_unit(self) -> lp.TranslationUnit:
        """The transformed loopy kernel (built now if the code came from the disk cache)."""
        if self._t_unit is None:
            self._build_t_unit()
        return self._t_unit

    @property
    def reshaped(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Arrays whose shape the recipe changed (an axis split for ``vec``): name -> (math-level
        shape, transformed shape), extents as text. Callers pass math-level shapes."""
        return self._generated.reshaped if self._generated else self._reshaped

    @property
    def disk_key(self) -> dict[str, Any] | None:
        """The key of this kernel in the disk kernel cache (None: not stored, a user's recipe)."""
        return self._disk_key

    @property
    def layout(self):
        """The list layout this kernel walks (chosen by its recipe for this device)."""
        return self._layout

    @property
    def label(self) -> str:
        recipe = self.recipe
        function = getattr(recipe.function, "__qualname__", "?")
        return (f"operator {self.operator!r} under recipe {recipe.name!r} (function {function} in "
                f"{recipe.source})")

    def __call__(self, queue: cl.CommandQueue, **arrays) -> dict[str, Any]:
        """Run the kernel; returns loopy's output dict. Build failures name operator and recipe."""
        return self.launch(queue, **arrays)[1]

    def launch(self, queue: cl.CommandQueue, **arrays) -> tuple[cl.Event, dict[str, Any]]:
        """Enqueue the kernel: its event (nothing waits for it) and loopy's output dict.
        Build failures name operator and recipe."""
        given_shapes = {name: arrays[name].shape for name in self.reshaped if name in arrays}
        arrays = self._reshape(arrays)
        try:
            with self._lock:
                event, outputs = self._executor(queue.context)(queue, **arrays)
        except Exception as exc:  # code generation (loopy, islpy), the OpenCL build, the launch
            raise self._failure(exc) from exc
        return event, {name: value.reshape(given_shapes[name]) if name in given_shapes
                       else value for name, value in outputs.items()}

    def bind(self, queue: cl.CommandQueue, **arrays) -> Callable[[], cl.Event] | None:
        """A function that enqueues the kernel on ``queue`` with ``arrays``, checked and
        re-shaped once here (a plan's launch repeats its arguments at every evaluation: the
        checks cost more than the launch on a GPU); None where loopy's executor runs the
        kernel (no launcher to bind). The arrays must stay what they are."""
        with self._lock:
            executor = self._executor(queue.context)
        if not isinstance(executor, Launcher):
            return None
        try:
            bound = executor.bind(**self._reshape(arrays))
        except Exception as exc:  # an argument the kernel does not take
            raise self._failure(exc) from exc

        def enqueue() -> cl.Event:
            with self._lock:
                return executor.enqueue(queue, bound)
        return enqueue

    def _failure(self, exc: Exception) -> RecipeError:
        """The error of a failed launch or binding, naming operator, recipe and device, with
        what the OpenCL status means where it is one."""
        hint = explain_opencl_error(exc, self.device)
        return RecipeError(f"running {self.label} on {self.device.name!r} failed: " + (
            f"{hint} (OpenCL: {exc})" if hint else f"{type(exc).__name__}: {exc}"))

    def prepare(self, context: cl.Context) -> None:
        """Build the kernel for ``context`` now, as its first call would (its OpenCL
        program), where its generated code is at hand (the disk kernel cache); a kernel still
        to be generated waits for its first call. Errors are left to that call to report."""
        with self._lock:
            if self._generated is not None:
                with contextlib.suppress(Exception):
                    self._executor(context)

    def compiled_for(self, context: cl.Context) -> bool:
        """Whether a launch in ``context`` runs code already compiled (a launch of the same
        work-group size has run: :attr:`Launcher.compiled`)."""
        executor = self._executors.get(context.int_ptr)
        return isinstance(executor, Launcher) and executor.compiled

    def _executor(self, context: cl.Context):
        """The launcher for ``context`` (built at the first call; the caller holds the lock)."""
        executor = self._executors.get(context.int_ptr)
        if executor is None:
            executor = self._executors[context.int_ptr] = self._launcher(context)
        return executor

    def _launcher(self, context: cl.Context):
        """Generate the code (unless cached), build it for ``context``; store it once it builds.

        A kernel :func:`~fmmloopy.execution.generation.generate` cannot describe as data (several
        device kernels, argument types known only at call time, loopy's internals moved) runs
        through loopy's executor, uncached.
        """
        fresh = self._generated is None
        if fresh:
            with loopy_output_to_log():
                executor = self._preprocessed.executor(context)
                generated = generation.generate(self.t_unit, executor, self._reshaped)
            if generated is None:
                return executor
            self._generated = generated
        launcher = Launcher(self._generated, context)
        if fresh:
            kernel_cache.store(self._disk_key, self._generated)
        return launcher

    @property
    def generated(self) -> GeneratedKernel | None:
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
                given = zip(map(expression, math_shape), arrays[name].shape, strict=False)
                sizes.update({extent.name: length for extent, length in given
                              if isinstance(extent, Variable) and extent.name not in sizes})
        return arrays | {
            name: arrays[name].reshape(tuple(int(evaluate(expression(extent), sizes))
                                             for extent in shape))
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
        return generation.written_names(self.t_unit)

    def device_code(self) -> str:
        """The generated OpenCL source."""
        generated = self.generated
        return (generated.device_code if generated
                else lp.generate_code_v2(self.t_unit).device_code())


def loopy_log_path() -> str:
    """The file that receives what loopy prints while it generates code (a whole kernel, when
    it rejects one)."""
    return str(cache_dir() / "logs" / "loopy.log")


@contextlib.contextmanager
def loopy_output_to_log() -> Iterator[None]:
    """Send standard output (where loopy prints rejected kernels) to :func:`loopy_log_path`."""
    path = loopy_log_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        log = open(path, "a")
    except OSError:  # no log file: loopy's output stays where it was
        yield
        return
    with log, contextlib.redirect_stdout(log):
        print(f"--- fmmloopy process {os.getpid()} at {time.ctime()} ---")
        try:
            yield
        finally:
            sys.stdout.flush()


_CACHE: dict[tuple, CompiledOperator] = {}
_CACHE_LOCK = threading.RLock()


def forget_compiled() -> None:
    """Drop this process's transformed kernels (the next request looks in the caches again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class Transformed:
    """A recipe's kernel, its benign write races silenced: as the recipe returned it
    (:attr:`CompiledOperator.t_unit`), and preprocessed by loopy, which code generation starts
    from (preprocessed once, for the race analysis)."""

    t_unit: lp.TranslationUnit
    preprocessed: lp.TranslationUnit


def _apply_recipe(recipe: Recipe, knl: lp.TranslationUnit,
                  ctx: RecipeContext) -> Transformed:
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
    _check_argument_types(where, knl, transformed)
    try:
        with loopy_output_to_log():
            preprocessed, races = preprocess_and_analyse(transformed)
    except Exception as exc:  # loopy refuses the kernel while preprocessing it
        raise RecipeError(f"{where} made a kernel loopy cannot preprocess: "
                          f"{type(exc).__name__}: {exc} (loopy's output: {loopy_log_path()})"
                          ) from exc
    if races.reports:
        raise RecipeError(f"{where} makes parallel work-items or work-groups write the same "
                          "element (a write race, which a CPU device may hide and a GPU will "
                          "not): " + "; ".join(str(report) for report in races.reports))
    return Transformed(silence_benign_races(transformed, races),
                       silence_benign_races(preprocessed, races))


def _check_argument_types(where: str, knl: lp.TranslationUnit,
                          transformed: lp.TranslationUnit) -> None:
    """RecipeError naming the argument when a recipe changed an argument's dtype or kind (its
    shape is checked at launch: only an axis split for ``vec`` keeps the arrays callers pass)."""
    old = {arg.name: arg for arg in knl.default_entrypoint.args}
    for arg in transformed.default_entrypoint.args:
        previous = old[arg.name]
        if type(arg) is not type(previous) or arg.dtype != previous.dtype:
            raise RecipeError(
                f"{where} changed argument {arg.name!r} from {type(previous).__name__} of "
                f"{previous.dtype} to {type(arg).__name__} of {arg.dtype}; a recipe may "
                "transform how a kernel computes, not what it takes")


def compiled_operator(operator: str, device: cl.Device, *, recipe: str | Recipe | None = None,
                      kernel: str | GreenKernel = "laplace", dtype=np.float64,
                      only_cached: bool = False, settings: Mapping[str, Any] | None = None,
                      rsqrt_error: float | None = None, **sizes: int
                      ) -> CompiledOperator | None:
    """The cached, transformed ``operator`` for ``device`` (recipe by name, or the default).

    A recipe that declines a complex kernel's values gives way to the default chain's
    (:func:`~fmmloopy.tuning.registry.select_recipe`); ``.recipe`` says which ran.
    ``settings``: values of the recipe's parameters (:class:`~fmmloopy.tuning.recipe.
    Parameter`), default: those tuned for this device and operator
    (:func:`~fmmloopy.execution.tuning_records.tuned_settings`), the recipe's declared
    defaults for the rest; each set of values is a kernel of its own. ``only_cached``: None
    instead of transforming a kernel that neither this process nor the disk kernel cache holds
    (what a thread may ask for without running loopy). ``rsqrt_error``: the relative error
    each ``1/sqrt`` of a pairwise kernel may carry (:mod:`fmmloopy.maths.pair_precision`;
    None: float64's own), a kernel of its own."""
    spec = get_operator(operator)
    rows = sizes.get("n_target_coeffs")
    sizes = spec.kernel_sizes(sizes)  # the others are launch arguments
    green = get_kernel(kernel)
    if not isinstance(recipe, Recipe):
        recipe = select_recipe(operator, spec.template, device, recipe, green.is_complex)
    elif not recipe.handles(green.is_complex):  # it declines complex values: the default's
        recipe = select_recipe(operator, spec.template, device, None, green.is_complex)
    dtype = np.dtype(dtype)
    rsqrt_error = checked_rsqrt_error(rsqrt_error, spec, green, dtype)
    settings = recipe.settings_for(device, tuned_settings(recipe, operator, device)
                                   if settings is None else settings)
    # The recipe's layout, with whole-vector rows where the coefficient count allows (a kernel
    # of its own: layouts.for_sizes).
    layout = for_sizes(recipe.layout_for(device, settings), rows)
    key = (operator, recipe, device.int_ptr, vector_doubles(device), green, dtype,
           tuple(sorted(sizes.items())), tuple(settings.items()), layout, rsqrt_error)
    with _CACHE_LOCK:
        if key not in _CACHE:
            disk_key = kernel_cache.kernel_key(operator, recipe, device, green, dtype, sizes,
                                               settings, layout, rsqrt_error)
            generated = kernel_cache.load(disk_key) or shipped_kernels.load(disk_key, device)
            if generated is None and only_cached:
                return None
            _CACHE[key] = _compiled(operator, recipe, device, green, dtype, sizes, spec,
                                    disk_key, generated, settings, layout, rsqrt_error)
        return _CACHE[key]


def _compiled(operator: str, recipe: Recipe, device: cl.Device, green: GreenKernel, dtype,
              sizes: dict[str, int], spec, disk_key: dict[str, Any],
              generated: GeneratedKernel | None, settings: dict[str, Any],
              layout, rsqrt_error: float | None = None) -> CompiledOperator:
    """The :class:`CompiledOperator` of :func:`compiled_operator`'s choices (transformed now
    unless ``generated`` holds its code)."""
    def transform() -> tuple[lp.TranslationUnit, Transformed]:
        knl = math_kernel(operator, kernel=green, dtype=dtype, layout=layout, **sizes)
        ctx = RecipeContext(operator=operator, template=spec.template, device=device,
                            parameters=dict(sizes, dtype=dtype, layout=layout,
                                            value_dtype=green.value_dtype(dtype),
                                            rsqrt_error=rsqrt_error),
                            settings=dict(settings))
        return knl, _apply_recipe(recipe, knl, ctx)

    return CompiledOperator(operator, recipe, device, transform, disk_key=disk_key,
                            generated=generated, settings=settings, layout=layout)
