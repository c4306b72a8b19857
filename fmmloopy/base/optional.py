"""Optional dependencies, imported where they are used, with an error that says how to get them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["optional_module"]


def optional_module(name: str, extra: str, needed_by: str, detail: str = "") -> ModuleType:
    """The module ``name`` (e.g. ``"mpi4py.MPI"``); where it is missing, an ImportError saying
    that ``needed_by`` needs it and that ``pip install 'fmmloopy[extra]'`` brings it
    (``detail``: what the extra holds)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{needed_by} needs {name.split('.')[0]}: pip install "
                          f"'fmmloopy[{extra}]'{detail}") from exc
