"""The recipe registry: transform functions ``TranslationUnit -> TranslationUnit`` per operator.

A recipe is registered for one or more operators (``"p2p"``) or whole templates (``"pairwise"``,
``"matvec"``) and a device class (``"cpu"``, ``"gpu-nvidia"``, ``"any"``)::

    @recipe("p2p", device="cpu")
    def p2p_cpu(knl, ctx):
        return lp.split_iname(knl, "itgt", 16, inner_tag="l.0")

Selection walks the device's classes from the most specific (``cpu-pocl``) to ``any``; at each class
a recipe for the operator beats one for its template. Recipes are named after the module that
defines them (``transforms/cpu.py`` gives ``cpu``) unless ``name=`` says otherwise; asking for a
name picks that recipe at the most specific device class it supports.

The shipped recipes live in the ``transforms`` package. A user's own recipes are loaded from a
file or module with :func:`load_recipes`, or from ``$FMMLOOPY_RECIPES`` (paths or module names
separated by ``os.pathsep``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import loopy as lp

from fmmloopy.devices import device_classes
from fmmloopy.layouts import TARGET_MAJOR, ListLayout

#: Environment variable with extra recipe files or modules, separated by ``os.pathsep``.
RECIPES_ENV = "FMMLOOPY_RECIPES"

#: Name of the reference recipe every other recipe is checked against.
REFERENCE = "sequential"

_SHIPPED_MODULES = ("transforms.sequential", "transforms.generic", "transforms.cpu",
                     "transforms.gpu")

RecipeFunction = Callable[[lp.TranslationUnit, "RecipeContext"], lp.TranslationUnit]


@dataclass(frozen=True)
class RecipeContext:
    """What a recipe may know: the operator, its template parameters and the target device."""

    operator: str
    template: str
    device: Any  # pyopencl.Device
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """One registered transform."""

    name: str
    targets: tuple[str, ...]  # operator or template names
    device: str
    function: RecipeFunction
    source: str  # file or module it came from, for error messages
    layout: ListLayout = TARGET_MAJOR  # the list layout its kernels walk (matvec template)

    def __call__(self, knl: lp.TranslationUnit, ctx: RecipeContext) -> lp.TranslationUnit:
        return self.function(knl, ctx)


class RecipeError(RuntimeError):
    """A recipe raised or produced an unusable kernel; the message names recipe and operator."""


_REGISTRY: list[Recipe] = []
_LOADED_SOURCES: set[str] = set()


def recipe(*targets: str, device: str = "any", name: str | None = None,
           layout: ListLayout = TARGET_MAJOR) -> Callable[[RecipeFunction], RecipeFunction]:
    """Register the decorated function as a recipe for operators or templates ``targets``.

    ``layout`` asks for the list layout the kernel should walk (:mod:`fmmloopy.layouts`); the
    recipe then receives the math-level kernel of that layout, and the driver builds the lists
    to match.
    """
    if not targets:
        raise TypeError("recipe() needs at least one operator or template name")

    def register(function: RecipeFunction) -> RecipeFunction:
        module = sys.modules.get(function.__module__)
        source = getattr(module, "__file__", None) or function.__module__
        recipe_name = name or function.__module__.rsplit(".", 1)[-1]
        _REGISTRY.append(Recipe(recipe_name, tuple(targets), device, function, str(source),
                                layout))
        return function

    return register


def load_recipes(source: str | os.PathLike) -> None:
    """Import a recipe file (``path/to/file.py``) or module (``package.module``) once."""
    source = str(source)
    if source in _LOADED_SOURCES:
        return
    path = Path(source)
    if source.endswith(".py") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {source!r} does not exist")
        module_name = f"fmmloopy_user_recipes_{len(_LOADED_SOURCES)}_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise RecipeError(f"loading recipe file {source!r} failed: {exc!r}") from exc
    else:
        importlib.import_module(source)
    _LOADED_SOURCES.add(source)


def ensure_loaded(extra: Iterable[str] = ()) -> None:
    """Load the shipped recipes, those named in ``$FMMLOOPY_RECIPES`` and ``extra``."""
    for module in _SHIPPED_MODULES:
        load_recipes(module)
    for source in os.environ.get(RECIPES_ENV, "").split(os.pathsep):
        if source.strip():
            load_recipes(source.strip())
    for source in extra:
        load_recipes(source)


def registered() -> list[Recipe]:
    """All recipes registered so far, in registration order."""
    return list(_REGISTRY)


def _candidates(operator: str, template: str, device_class: str) -> list[Recipe]:
    """Recipes for one device class, operator-specific ones first; later registrations win."""
    at_class = [r for r in reversed(_REGISTRY) if r.device == device_class]
    return ([r for r in at_class if operator in r.targets]
            + [r for r in at_class if template in r.targets])


def select_recipe(operator: str, template: str, device, name: str | None = None) -> Recipe:
    """The recipe to use for ``operator`` on ``device``: by ``name``, or the default chain.

    The default chain never picks the reference (``sequential``) recipe; the ``generic`` recipe
    (parallelise the box loop) registered for ``any`` ends it. A recipe asked for by name is
    taken at the device's most specific class that has it, and otherwise from any other class:
    every recipe produces plain OpenCL, so a GPU recipe can be run (and checked) on a CPU.
    """
    ensure_loaded()
    classes = device_classes(device)
    def wanted(candidate: Recipe) -> bool:
        return candidate.name == name if name else candidate.name != REFERENCE

    other_classes = [r.device for r in reversed(_REGISTRY) if name and r.device not in classes]
    for device_class in [*classes, *dict.fromkeys(other_classes)]:
        for candidate in _candidates(operator, template, device_class):
            if wanted(candidate):
                return candidate
    known = sorted({r.name for r in _REGISTRY
                    if operator in r.targets or template in r.targets})
    raise LookupError(
        f"no recipe {name!r} for operator {operator!r} on a device of classes {classes}; "
        f"recipes for this operator: {known}")


def recipe_names_for(operator: str, template: str, device=None) -> list[str]:
    """Names of the recipes that transform ``operator``, reference first.

    With ``device``, only those registered for one of its classes (what the default chain may
    pick from); without, all of them (what ``fmmloopy check`` checks).
    """
    ensure_loaded()
    classes = set(device_classes(device)) if device is not None else None
    names = {r.name for r in _REGISTRY
             if (classes is None or r.device in classes)
             and (operator in r.targets or template in r.targets)}
    return sorted(names, key=lambda n: (n != REFERENCE, n))
