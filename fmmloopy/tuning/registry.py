"""The recipe registry: loading recipe files and modules, and choosing a recipe per operator.

Selection walks the device's classes from the most specific (``cpu-pocl``) to ``any``; at each class
a recipe for the operator beats one for its template. Asking for a name picks that recipe at the
most specific device class it supports.

The shipped recipes live in :mod:`fmmloopy.transforms` (``transforms/`` in the repository),
imported here by name. A user's own recipes are loaded from a file or module with
:func:`load_recipes`, or from ``$FMMLOOPY_RECIPES`` (paths or module names separated by
``os.pathsep``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from fmmloopy.base.devices import device_classes
from fmmloopy.tuning.recipe import REFERENCE, REGISTRY, Recipe, RecipeError

#: Environment variable with extra recipe files or modules, separated by ``os.pathsep``.
RECIPES_ENV = "FMMLOOPY_RECIPES"

#: The modules of the shipped recipes, in registration order.
SHIPPED_MODULES = ("fmmloopy.transforms.sequential", "fmmloopy.transforms.generic",
                   "fmmloopy.transforms.cpu", "fmmloopy.transforms.gpu")

#: Sources loaded by :func:`load_recipes`: source -> (sha256 of the file, or "" for a module;
#: the name of the module its recipes were registered from).
_LOADED: dict[str, tuple[str, str]] = {}


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
    kept = [r for r in REGISTRY if r.function.__module__ != old_module]
    replaced = [r for r in REGISTRY if r.function.__module__ == old_module]
    REGISTRY[:] = kept
    try:
        module_name = _import(source, path, is_file, reload or previous is not None)
    except BaseException:
        REGISTRY.extend(replaced)
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
            REGISTRY[:] = [r for r in REGISTRY if r.function.__module__ != module_name]
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
        REGISTRY[:] = [r for r in REGISTRY if r.function.__module__ != module_name]
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
    for module in SHIPPED_MODULES:
        load_recipes(module)
    for source in os.environ.get(RECIPES_ENV, "").split(os.pathsep):
        if source.strip():
            load_recipes(source.strip())
    for source in extra:
        load_recipes(source)


def registered() -> list[Recipe]:
    """All recipes registered so far, in registration order."""
    return list(REGISTRY)


def _candidates(operator: str, template: str, device_class: str) -> list[Recipe]:
    """Recipes for one device class, operator-specific ones first; later registrations win."""
    at_class = [r for r in reversed(REGISTRY) if r.device == device_class]
    return ([r for r in at_class if operator in r.targets]
            + [r for r in at_class if template in r.targets])


def select_recipe(operator: str, template: str, device, name: str | None = None,
                  complex_values: bool = False) -> Recipe:
    """The recipe to use for ``operator`` on ``device``: by ``name``, or the default chain.

    The default chain never picks the reference (``sequential``) recipe; the ``generic`` recipe
    (parallelise the box loop) registered for ``any`` ends it. A recipe asked for by name is
    taken at the device's most specific class that has it, and otherwise from any other class:
    every recipe produces plain OpenCL, so a GPU recipe can be run (and checked) on a CPU.

    For kernels of ``complex_values`` only recipes that handle them
    (:attr:`~fmmloopy.tuning.recipe.Recipe.complex_values`) are taken: one asked for by name
    that declines them gives way to the default chain's (:func:`declined`).
    """
    ensure_loaded()
    classes = device_classes(device)
    if name and complex_values and declined(operator, template, name):
        name = None

    def wanted(candidate: Recipe) -> bool:
        if not candidate.handles(complex_values):
            return False
        return candidate.name == name if name else candidate.name != REFERENCE

    other_classes = [r.device for r in reversed(REGISTRY) if name and r.device not in classes]
    for device_class in [*classes, *dict.fromkeys(other_classes)]:
        for candidate in _candidates(operator, template, device_class):
            if wanted(candidate):
                return candidate
    known = sorted({r.name for r in REGISTRY
                    if operator in r.targets or template in r.targets})
    raise LookupError(
        f"no recipe {name!r} for operator {operator!r} on a device of classes {classes}; "
        f"recipes for this operator: {known}")


def declined(operator: str, template: str, name: str) -> bool:
    """Whether the recipes called ``name`` for ``operator`` all decline complex values (and
    at least one exists)."""
    ensure_loaded()
    named = [r for r in REGISTRY if r.name == name
             and (operator in r.targets or template in r.targets)]
    return bool(named) and not any(r.complex_values for r in named)


def recipe_names_for(operator: str, template: str, device=None) -> list[str]:
    """Names of the recipes that transform ``operator``, reference first.

    With ``device``, only those registered for one of its classes (what the default chain may
    pick from); without, all of them (what ``fmmloopy check`` checks).
    """
    ensure_loaded()
    classes = set(device_classes(device)) if device is not None else None
    names = {r.name for r in REGISTRY
             if (classes is None or r.device in classes)
             and (operator in r.targets or template in r.targets)}
    return sorted(names, key=lambda n: (n != REFERENCE, n))
