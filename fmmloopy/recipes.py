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

import hashlib
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
#: Sources loaded by :func:`load_recipes`: source -> (sha256 of the file, or "" for a module;
#: the name of the module its recipes were registered from).
_LOADED: dict[str, tuple[str, str]] = {}


def _operators_of(targets: Iterable[str]) -> set[str]:
    """The operators ``targets`` (operator or template names) cover."""
    from fmmloopy.operators import OPERATORS

    return {name for name, spec in OPERATORS.items()
            if name in targets or spec.template in targets}


def _check_no_clash(new: Recipe) -> None:
    """RecipeError if a recipe of ``new``'s name is registered for the same device class and
    an operator ``new`` covers too: the later one would silently replace the other."""
    covered = _operators_of(new.targets)
    for old in _REGISTRY:
        if old.name != new.name or old.device != new.device:
            continue
        overlap = covered & _operators_of(old.targets)
        if overlap:
            raise RecipeError(
                f"recipe {new.name!r} from {new.source} clashes with recipe {old.name!r} from "
                f"{old.source}: both are for device class {new.device!r} and operators "
                f"{sorted(overlap)}; give yours another name with @recipe(..., name=...)")


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
        new = Recipe(recipe_name, tuple(targets), device, function, str(source), layout)
        _check_no_clash(new)
        _REGISTRY.append(new)
        return function

    return register


def load_recipes(source: str | os.PathLike, reload: bool = False) -> None:
    """Import a recipe file (``path/to/file.py``) or module (``package.module``).

    A source is imported once, unless its file changed since (sha256 of its bytes) or
    ``reload`` is true: then it is imported again and its recipes replace those it registered
    before. If importing fails (an error in the file, a name that clashes with a registered
    recipe) nothing it registered stays, and the previous version's recipes are kept.
    """
    source = str(source)
    path = Path(source)
    is_file = source.endswith(".py") or path.exists()
    if is_file and not path.is_file():
        raise FileNotFoundError(f"recipe file {source!r} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if is_file else ""
    previous = _LOADED.get(source)
    if previous is not None and previous[0] == digest and not reload:
        return
    old_module = previous[1] if previous else None
    kept = [r for r in _REGISTRY if r.function.__module__ != old_module]
    replaced = [r for r in _REGISTRY if r.function.__module__ == old_module]
    _REGISTRY[:] = kept
    try:
        module_name = _import(source, path, is_file, reload or previous is not None)
    except BaseException:
        _REGISTRY.extend(replaced)
        raise
    _LOADED[source] = (digest, module_name)


def _import(source: str, path: Path, is_file: bool, again: bool) -> str:
    """Import ``source``; the name of the module its recipes come from. On failure the
    recipes it registered are removed again."""
    if not is_file:
        module_name = source
        try:
            if again and source in sys.modules:
                importlib.reload(sys.modules[source])
            else:
                importlib.import_module(source)
        except BaseException as exc:
            _REGISTRY[:] = [r for r in _REGISTRY if r.function.__module__ != module_name]
            if isinstance(exc, ImportError):
                raise RecipeError(f"recipe module {source!r} cannot be imported ({exc}); give "
                                  "a module on the Python path or a file ending in .py") from exc
            raise
        return module_name
    module_name = f"fmmloopy_user_recipes_{_load_count()}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        _REGISTRY[:] = [r for r in _REGISTRY if r.function.__module__ != module_name]
        if isinstance(exc, RecipeError):
            raise RecipeError(f"loading recipe file {source!r} failed: {exc}") from exc
        raise RecipeError(f"loading recipe file {source!r} failed: {exc!r}") from exc
    return module_name


_LOADS = [0]


def _load_count() -> int:
    """A number new for every file import (module names of reloaded files differ)."""
    _LOADS[0] += 1
    return _LOADS[0]


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
