"""fmmloopy.tuning.shipped: which recipes are shipped and unmodified (trusted without first-use
verification, stored in the disk kernel cache)."""

import ast
import pkgutil

import fmmloopy.transforms

from fmmloopy.tuning import shipped
from fmmloopy.tuning.recipe import REFERENCE, Recipe
from fmmloopy.tuning.registry import load_recipes, registered, select_recipe
from fmmloopy.tuning.shipped import SHIPPED_SHA256, file_digest, is_shipped, needs_verification


def test_shipped_table_matches_the_files():
    """Update fmmloopy/tuning/shipped.py with the printed table after checking the recipes."""
    actual = {name: file_digest(name) for name in SHIPPED_SHA256}
    table = "\n".join(f'    "{name}": "{digest}",' for name, digest in actual.items())
    assert actual == SHIPPED_SHA256, f"new table:\n{table}"


def test_every_shipped_module_is_in_the_table():
    modules = {f"fmmloopy.transforms.{info.name}"
               for info in pkgutil.iter_modules(fmmloopy.transforms.__path__)}
    assert modules | {"fmmloopy.transforms"} <= set(SHIPPED_SHA256)


def test_every_tuning_module_a_shipped_recipe_imports_is_in_the_table():
    """The transforms' building blocks (``fmmloopy.tuning.tools``, ``complex_split``, ...) decide
    what a shipped recipe computes as much as the recipe's own file does."""
    imported = set()
    for info in pkgutil.iter_modules(fmmloopy.transforms.__path__):
        path = shipped.module_file(f"fmmloopy.transforms.{info.name}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "fmmloopy.tuning.") and node.module != "fmmloopy.tuning.recipe":
                imported.add(node.module)
    assert {"fmmloopy.tuning.tools", "fmmloopy.tuning.complex_split"} <= imported
    assert imported <= set(SHIPPED_SHA256)


def test_which_recipes_are_verified(device):
    for name in ("cpu", "gpu", "generic"):
        recipe = select_recipe("p2p", "pairwise", device, name)
        assert recipe.function.__module__ == f"fmmloopy.transforms.{name}"
        assert is_shipped(recipe) and not needs_verification(recipe)
    reference = select_recipe("p2p", "pairwise", device, REFERENCE)
    assert is_shipped(reference) and not needs_verification(reference)
    mine = Recipe("mine", ("p2p",), "any", lambda knl, ctx: knl, "test")
    assert not is_shipped(mine) and needs_verification(mine)


def test_a_copy_of_a_shipped_file_is_not_shipped(tmp_path):
    """Loaded from another file, the shipped code is a user's recipe: verified before use."""
    source = shipped.module_file("fmmloopy.transforms.generic").read_text()
    copy = tmp_path / "copy_of_generic.py"
    renamed = source.replace('device="any",', 'device="any", name="copy_of_generic",')
    assert renamed != source
    copy.write_text(renamed)
    load_recipes(copy)
    copies = [r for r in registered() if r.name == "copy_of_generic"]
    assert copies and all(not is_shipped(r) and needs_verification(r) for r in copies)


def test_an_edited_shipped_module_is_not_shipped(monkeypatch, device):
    recipe = select_recipe("p2p", "pairwise", device, "cpu")
    monkeypatch.setitem(SHIPPED_SHA256, "fmmloopy.tuning.tools", "0" * 64)
    shipped.shipped_files_intact.cache_clear()
    try:
        assert not is_shipped(recipe) and needs_verification(recipe)
    finally:
        monkeypatch.undo()
        shipped.shipped_files_intact.cache_clear()
    assert is_shipped(recipe)
