"""Which recipes are shipped, unmodified: the sha256 of every module they are made of.

A recipe of :mod:`fmmloopy.transforms` is trusted by :class:`fmmloopy.Fmm` without first-use
verification, and its generated kernels go to the disk kernel cache, only while all these
modules are byte for byte what was shipped. An edited copy is verified like a user's recipe
(:func:`needs_verification`). ``tests/test_shipped.py`` fails when a module changes and this table
does not; it prints the new table.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

from fmmloopy.tuning.recipe import REFERENCE

#: The package of the shipped recipes (``transforms/`` in the repository).
SHIPPED_PACKAGE = "fmmloopy.transforms"

SHIPPED_SHA256 = {
    "fmmloopy.transforms": "a29ebfcbda8b229e7836878cfd8e4824854c8db211e01441339c6e3d901c325a",
    "fmmloopy.transforms.cpu": "6dd9f9183158026787f4e82336a18d7581d9a1e465854f761bec2f5c5cd1d36f",
    "fmmloopy.transforms.generic":
        "d5c1dd918e9b4941de6a396615bb1593a78906cbe08dcd91d9d754ab82659d83",
    "fmmloopy.transforms.gpu": "1a8e809daa59a00cb713e82b4021903d51f6a5a2ccbd3e3e83e57c1d62889d6c",
    "fmmloopy.transforms.sequential":
        "ed0069adbb495edd7a15545d39511f0b8bef199b6c9b077ca881157e8dcdfbdb",
    "fmmloopy.tuning.complex_split":
        "4b2e7774807d1231a4f494f16afcf6ffb0d62a71c469fc743bad1e8b4177ce0b",
    "fmmloopy.tuning.constant_factors":
        "125f74498afbc52215568774353fc71348c07c3f0c517eed150af2da8950991d",
    "fmmloopy.tuning.inline_math":
        "fbb5f5662e90d8656ab826eddf5d11c48b71719696f7a451a6b5c78c79407e01",
    "fmmloopy.tuning.kernel_options":
        "571f26616b75084039f1ed6f685727d3ee999b2041c48bbfba4661fafa70de70",
    "fmmloopy.tuning.loop_padding":
        "606a37f20c2cdce57df0ca0ba957f3bf7bddb77c8c7f51180b16e79452ac1d2f",
    "fmmloopy.tuning.matching": "551437ef533d5033e757e301ea69eb6fd7149603a26aff8e69a67796ab7c65b4",
    "fmmloopy.tuning.newton_rsqrt":
        "5a899b2331c3d2c2f1fca1e8f79f61b702fd27a6cad8830ef125394b4694ad76",
    "fmmloopy.tuning.shared_calls":
        "4fc377ac7adbeea022568cc14e613cd5121eed70372b180296f619c5762ab17e",
    "fmmloopy.tuning.target_lanes":
        "71b733cd8df3bc6a948f3757c21c5f0fab73e722fcee595295a3ca68cc7ef2e7",
    "fmmloopy.tuning.tools": "40aa678b38964824cec5dc9a123fd6941e6311ce4ca7da184f2fc0940fbbcdb9",
}


def module_file(name: str) -> Path | None:
    """The file module ``name`` is imported from (without importing it), None if none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin).resolve() if origin else None


def file_digest(name: str) -> str | None:
    """sha256 of the file of module ``name``; None where it cannot be read."""
    path = module_file(name)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path else None
    except OSError:
        return None


@functools.cache
def shipped_files_intact() -> bool:
    """Whether every module of :data:`SHIPPED_SHA256` is as shipped."""
    return all(file_digest(name) == digest for name, digest in SHIPPED_SHA256.items())


def is_shipped(recipe) -> bool:
    """Whether ``recipe`` (a :class:`~fmmloopy.tuning.recipe.Recipe`) is one of the shipped
    recipes, unmodified: defined in a module of :data:`SHIPPED_PACKAGE` listed in the table,
    imported from that module's own file, all shipped modules intact."""
    module_name = getattr(getattr(recipe, "function", None), "__module__", "") or ""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if (not path or module_name not in SHIPPED_SHA256
            or not module_name.startswith(SHIPPED_PACKAGE + ".")):
        return False
    return _imported_from_its_file(module_name, path) and shipped_files_intact()


@functools.cache
def _imported_from_its_file(module_name: str, path: str) -> bool:
    """Whether module ``module_name``, imported from ``path``, came from the file it is found
    at (resolved once per module and path: a plan asks for every launch)."""
    return Path(path).resolve() == module_file(module_name)


def needs_verification(recipe) -> bool:
    """Whether :class:`fmmloopy.Fmm` compares ``recipe`` with ``sequential`` on its own tree
    before use: every recipe but the reference and the unmodified shipped ones."""
    return recipe.name != REFERENCE and not is_shipped(recipe)
