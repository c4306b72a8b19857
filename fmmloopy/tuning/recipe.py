"""What a recipe is: a transform ``TranslationUnit -> TranslationUnit`` for operators or
templates on a device class, registered with the :func:`recipe` decorator.

A recipe is registered for one or more operators (``"p2p"``) or whole templates (``"pairwise"``,
``"matvec"``) and a device class (``"cpu"``, ``"gpu-nvidia"``, ``"any"``)::

    @recipe("p2p", device="cpu")
    def p2p_cpu(knl, ctx):
        return lp.split_iname(knl, "itgt", 16, inner_tag="l.0")

Recipes are named after the module that defines them (``transforms/cpu.py`` gives ``cpu``)
unless ``name=`` says otherwise. This module holds the registered recipes; loading recipe files
and choosing among them is :mod:`fmmloopy.tuning.registry` (which imports the shipped recipes of
:mod:`fmmloopy.transforms`; they import only this module and :mod:`fmmloopy.tuning.tools`).
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import loopy as lp
import numpy as np

from fmmloopy.maths.layouts import TARGET_MAJOR, Grouped, ListLayout, TargetMajor
from fmmloopy.maths.operators import OPERATORS

#: Name of the reference recipe every other recipe is checked against.
REFERENCE = "sequential"

RecipeFunction = Callable[[lp.TranslationUnit, "RecipeContext"], lp.TranslationUnit]


@dataclass(frozen=True)
class RecipeContext:
    """What a recipe may know: the operator, its template parameters, the target device and
    the values of the recipe's own parameters (:class:`Parameter`) in force."""

    operator: str
    template: str
    device: Any  # pyopencl.Device
    parameters: dict[str, Any] = field(default_factory=dict)
    #: The recipe's declared parameters -> their values for this kernel
    #: (:meth:`Recipe.settings_for`).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def complex_values(self) -> bool:
        """Whether the kernel's values (strengths, results, matrices) are complex
        (``parameters["value_dtype"]``, default ``parameters["dtype"]``)."""
        dtype = self.parameters.get("value_dtype", self.parameters.get("dtype", "float64"))
        return np.dtype(dtype).kind == "c"


@dataclass(frozen=True)
class Parameter:
    """A speed choice a recipe declares instead of a module constant (a work-group size, a
    register tile, vector lanes): the values it may take, which ``fmmloopy tune`` searches,
    and its default, a value or a function of the OpenCL device (a tile sized to the device's
    vectors, say). Every value must give a correct kernel: the check and the tuner compare
    each with ``sequential``."""

    values: tuple
    default: Any
    doc: str = ""
    #: Whether its values choose between code paths that other parameters tune (vector lanes
    #: or work-items, say): ``fmmloopy tune`` then sweeps the others under each of its values.
    chooses_path: bool = False

    def default_for(self, device: Any) -> Any:
        """The default on ``device``."""
        return self.default(device) if callable(self.default) else self.default


@dataclass(frozen=True)
class Recipe:
    """One registered transform."""

    name: str
    targets: tuple[str, ...]  # operator or template names
    device: str
    function: RecipeFunction
    source: str  # file or module it came from, for error messages
    #: The list layout its kernels walk (matvec template), or a function of the OpenCL device
    #: that gives it (a register tile sized to the device's vectors, say): :meth:`layout_for`.
    layout: ListLayout | Callable[[Any], ListLayout] = TARGET_MAJOR
    #: Whether it transforms kernels of complex values (Helmholtz) correctly. A recipe that
    #: does not say so declines them: the default chain passes it by, and the recipe after it
    #: runs (:func:`fmmloopy.tuning.registry.select_recipe`).
    complex_values: bool = False
    #: Its declared parameters, ``(name, Parameter)`` in declaration order.
    parameters: tuple[tuple[str, Parameter], ...] = ()

    def handles(self, complex_values: bool) -> bool:
        """Whether this recipe may transform kernels of complex (or real) values."""
        return self.complex_values or not complex_values

    def __call__(self, knl: lp.TranslationUnit, ctx: RecipeContext) -> lp.TranslationUnit:
        return self.function(knl, ctx)

    def settings_for(self, device: Any, given: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
        """The values of this recipe's parameters on ``device``: those ``given``, the
        defaults there for the rest. RecipeError for a name the recipe does not declare or a
        value outside the declared ones."""
        declared = dict(self.parameters)
        given = dict(given or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise RecipeError(f"recipe {self.name!r} from {self.source} has no parameter "
                              f"{unknown[0]!r} (its parameters: {sorted(declared) or 'none'})")
        settings = {}
        for name, parameter in self.parameters:
            value = given[name] if name in given else parameter.default_for(device)
            if value not in parameter.values:
                origin = "given" if name in given else "its default on this device"
                raise RecipeError(f"recipe {self.name!r} from {self.source}: parameter {name!r} "
                                  f"= {value!r} ({origin}) is not one of its values "
                                  f"{parameter.values}")
            settings[name] = value
        return settings

    def layout_for(self, device: Any, settings: Mapping[str, Any] | None = None) -> ListLayout:
        """The list layout this recipe's kernels walk on ``device`` with the parameter values
        ``settings`` (default: :meth:`settings_for` the device). A layout function of two
        arguments receives the settings as its second."""
        layout = self.layout
        if callable(layout):
            if _positional_count(layout) >= 2:
                layout = layout(device, self.settings_for(device, settings))
            else:
                layout = layout(device)
        if not isinstance(layout, (TargetMajor, Grouped)):
            raise RecipeError(f"recipe {self.name!r} from {self.source} asks for list layout "
                              f"{layout!r}: not a layout of fmmloopy.maths.layouts")
        return layout


def _positional_count(function: Callable) -> int:
    """How many positional arguments ``function`` takes (a layout function: the device, and
    the recipe's settings where it takes them)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(parameter.kind in kinds for parameter in signature.parameters.values())


class RecipeError(RuntimeError):
    """A recipe raised or produced an unusable kernel; the message names recipe and operator."""


#: Every recipe registered so far, in registration order (:mod:`fmmloopy.tuning.registry`
#: loads and selects them).
REGISTRY: list[Recipe] = []


def _operators_of(targets: Iterable[str]) -> set[str]:
    """The operators ``targets`` (operator or template names) cover."""
    return {name for name, spec in OPERATORS.items()
            if name in targets or spec.template in targets}


def _check_no_clash(new: Recipe) -> None:
    """RecipeError if a recipe of ``new``'s name is registered for the same device class and
    an operator ``new`` covers too: the later one would silently replace the other."""
    covered = _operators_of(new.targets)
    for old in REGISTRY:
        if old.name != new.name or old.device != new.device:
            continue
        overlap = covered & _operators_of(old.targets)
        if overlap:
            raise RecipeError(
                f"recipe {new.name!r} from {new.source} clashes with recipe {old.name!r} from "
                f"{old.source}: both are for device class {new.device!r} and operators "
                f"{sorted(overlap)}; give yours another name with @recipe(..., name=...)")


def recipe(*targets: str, device: str = "any", name: str | None = None,
           layout: ListLayout | Callable[..., ListLayout] = TARGET_MAJOR,
           complex_values: bool = False, parameters: Mapping[str, Parameter] | None = None
           ) -> Callable[[RecipeFunction], RecipeFunction]:
    """Register the decorated function as a recipe for operators or templates ``targets``.

    ``layout`` asks for the list layout the kernel should walk (:mod:`fmmloopy.maths.layouts`),
    or is a function of the OpenCL device (and, if it takes a second argument, of the
    recipe's settings) that returns one; the recipe then receives the math-level kernel of
    that layout, and the driver builds the lists to match.

    ``parameters`` declares the recipe's speed choices by name (:class:`Parameter`: the
    values each may take, its default); the recipe reads the values in force from
    ``ctx.settings``, and kernels of different values are different kernels (cached apart).

    ``complex_values`` says the recipe is right for kernels of complex values too (their
    strengths, results and matrices are ``complex128``; ``ctx.parameters["value_dtype"]``).
    Recipes that assume real data (``double8`` vectors, say) leave it False and are passed by
    for complex kernels.
    """
    if not targets:
        raise TypeError("recipe() needs at least one operator or template name")

    def register(function: RecipeFunction) -> RecipeFunction:
        module = sys.modules.get(function.__module__)
        source = getattr(module, "__file__", None) or function.__module__
        recipe_name = name or function.__module__.rsplit(".", 1)[-1]
        declared = tuple((parameters or {}).items())
        for parameter_name, parameter in declared:
            if (not isinstance(parameter, Parameter) or not tuple(parameter.values)
                    or not all(isinstance(value, (bool, int, float, str))
                               for value in parameter.values)):
                raise TypeError(f"recipe {recipe_name!r}: parameter {parameter_name!r} must be "
                                "a Parameter with at least one value, each a number, string or "
                                "boolean (a tuning record stores them as data)")
        new = Recipe(recipe_name, tuple(targets), device, function, str(source), layout,
                     bool(complex_values), declared)
        _check_no_clash(new)
        REGISTRY.append(new)
        return function

    return register


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def where_in_recipe(exc: BaseException, recipe_source: str) -> str:
    """Where in the recipe file ``recipe_source`` the exception ``exc`` came from.

    ``" in transform split_iname (loopy.transform.iname) called at line 9 of my.py
    (`return lp.split_iname(knl, 'x', 4)`)"``: the function the recipe called when it failed
    (a loopy transform or a helper) and the line; ``" at line 9 of my.py (`...`)"`` when the
    recipe raised itself; ``""`` when no frame of the traceback is in that file.
    """
    entries = list(traceback.walk_tb(exc.__traceback__))
    summary = traceback.StackSummary.extract(iter(entries), lookup_lines=True)
    inside = [i for i, frame in enumerate(summary) if _same_file(frame.filename, recipe_source)]
    if not inside:
        return ""
    last = inside[-1]
    frame = summary[last]
    where = f"line {frame.lineno} of {os.path.basename(frame.filename)} (`{frame.line}`)"
    if last + 1 == len(summary):
        return f" at {where}"
    # The function the recipe called: the first public one (loopy wraps its transforms in
    # decorators such as ``_collective_transform``).
    called = next((i for i in range(last + 1, len(summary))
                   if not summary[i].name.startswith("_")), last + 1)
    module = entries[called][0].f_globals.get("__name__", "?")
    return f" in transform {summary[called].name} ({module}) called at {where}"
