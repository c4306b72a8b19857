"""The recipe registry: device classes, selection and fallback, user files, recipe errors."""

import textwrap

import numpy as np
import pytest

from fmmloopy.base.devices import VECTOR_DOUBLES_ENV, device_classes
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.tuning import registry
from fmmloopy.tuning.recipe import RecipeError, recipe
from fmmloopy.tuning.registry import load_recipes, select_recipe


def test_device_classes_run_from_specific_to_any(device):
    classes = device_classes(device)
    kind = classes[-2]
    assert classes[-1] == "any" and kind in ("cpu", "gpu", "accelerator")
    assert all(specific.startswith(kind + "-") for specific in classes[:-2])
    if "portable computing language" in device.platform.name.lower():
        assert classes[0] == f"{kind}-pocl"


def test_default_selection_prefers_device_recipe_and_never_the_reference(device,
                                                                        default_recipe):
    assert select_recipe("p2p", "pairwise", device).name == default_recipe
    assert select_recipe("m2l", "matvec", device).name == default_recipe
    assert select_recipe("p2p", "pairwise", device, "sequential").name == "sequential"


def test_fallback_reaches_generic_for_an_operator_without_device_recipe(device):
    # An operator of a template that only 'any' recipes cover falls back to 'generic'.
    recipe("only_any_template", device="any", name="generic")(lambda k, c: k)
    assert select_recipe("new_op", "only_any_template", device).name == "generic"


def test_unknown_recipe_name_is_a_clear_error(device):
    with pytest.raises(LookupError, match="no recipe 'nope' for operator 'p2p'"):
        select_recipe("p2p", "pairwise", device, "nope")


def _write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_user_recipe_file_via_environment_is_selected_for_its_device(tmp_path, monkeypatch,
                                                                    device, default_recipe):
    most_specific = device_classes(device)[0]  # e.g. cpu-pocl
    path = _write(tmp_path, "my_recipes.py", f"""
        import loopy as lp
        from fmmloopy.tuning.recipe import recipe

        @recipe("p2p", device="{most_specific}", name="mine")
        def mine(knl, ctx):
            return lp.tag_inames(knl, {{"itgt_box": "g.0"}})
        """)
    monkeypatch.setenv(registry.RECIPES_ENV, str(path))
    # Registered for the device's most specific class and for the operator itself: it becomes
    # the default for p2p there; other operators keep the shipped default.
    assert select_recipe("p2p", "pairwise", device).name == "mine"
    assert select_recipe("m2l", "matvec", device).name == default_recipe


def test_recipe_that_raises_names_file_operator_and_error(tmp_path, device):
    path = _write(tmp_path, "broken.py", """
        import loopy as lp
        from fmmloopy.tuning.recipe import recipe

        @recipe("p2p", device="any", name="broken_split")
        def broken(knl, ctx):
            return lp.split_iname(knl, "not_an_iname", 4)
        """)
    load_recipes(str(path))
    with pytest.raises(RecipeError, match=r"recipe 'broken_split' from .*broken\.py "
                                          r"on operator 'p2p' raised"):
        compiled_operator("p2p", device, recipe="broken_split", dtype=np.float64)


def test_recipe_may_not_change_kernel_arguments(tmp_path, device):
    path = _write(tmp_path, "renaming.py", """
        import loopy as lp
        from fmmloopy.tuning.recipe import recipe

        @recipe("p2p", device="any", name="renames_args")
        def renames(knl, ctx):
            return lp.rename_argument(knl, "strengths", "charges")
        """)
    load_recipes(str(path))
    with pytest.raises(RecipeError, match="changed the kernel arguments"):
        compiled_operator("p2p", device, recipe="renames_args")


def test_missing_recipe_file_is_reported():
    with pytest.raises(FileNotFoundError, match="does_not_exist.py"):
        load_recipes("/nonexistent/does_not_exist.py")


def test_executor_is_built_once_per_operator_recipe_device_dtype(device):
    first = compiled_operator("p2p", device, recipe="cpu")
    assert compiled_operator("p2p", device, recipe="cpu") is first
    assert compiled_operator("p2p", device, recipe="sequential") is not first
    assert compiled_operator("p2p", device, recipe="cpu", dtype=np.float32) is not first


def test_named_recipe_of_another_device_class_is_found(device):
    """Every recipe is plain OpenCL: asked for by name, a recipe of another class runs here."""
    @recipe("p2p", device="gpu-imaginary", name="elsewhere")
    def elsewhere(knl, ctx):
        return knl

    assert select_recipe("p2p", "pairwise", device, "elsewhere").name == "elsewhere"
    assert select_recipe("p2p", "pairwise", device).name != "elsewhere"


WIDTH_RECIPE = """
from fmmloopy.tuning.recipe import recipe

@recipe("p2p", device="any", name="versioned")
def versioned(knl, ctx):
    return knl

VERSION = {version}
"""


def _versioned(device):
    chosen = select_recipe("p2p", "pairwise", device, "versioned")
    return chosen.function.__globals__["VERSION"]


def test_an_edited_file_is_loaded_again_and_replaces_its_recipes(tmp_path, device):
    path = tmp_path / "versioned.py"
    path.write_text(WIDTH_RECIPE.format(version=1))
    load_recipes(path)
    assert _versioned(device) == 1
    load_recipes(path)  # unchanged: not imported again
    assert _versioned(device) == 1
    path.write_text(WIDTH_RECIPE.format(version=2))
    load_recipes(path)
    assert _versioned(device) == 2
    assert [r.name for r in registry.registered()].count("versioned") == 1
    load_recipes(path, reload=True)  # forced, same content
    assert _versioned(device) == 2
    assert [r.name for r in registry.registered()].count("versioned") == 1


def test_a_failing_reload_keeps_the_previous_recipes(tmp_path, device):
    path = tmp_path / "versioned.py"
    path.write_text(WIDTH_RECIPE.format(version=1))
    load_recipes(path)
    path.write_text(WIDTH_RECIPE.format(version="undefined_name"))
    with pytest.raises(RecipeError, match="loading recipe file .* failed.*undefined_name"):
        load_recipes(path)
    assert _versioned(device) == 1
    assert [r.name for r in registry.registered()].count("versioned") == 1


def test_a_name_that_clashes_with_a_registered_recipe_is_refused(tmp_path, device):
    path = _write(tmp_path, "shadow.py", """
        from fmmloopy.tuning.recipe import recipe

        @recipe("m2p", device="any", name="fine_first")
        def fine_first(knl, ctx):
            return knl

        @recipe("p2p", device="cpu", name="cpu")
        def my_cpu(knl, ctx):
            return knl
        """)
    before = registry.registered()
    with pytest.raises(RecipeError, match=r"recipe 'cpu' from .*shadow.py clashes with recipe "
                                          r"'cpu' from .*transforms/cpu.py: both are for device "
                                          r"class 'cpu' and operators \['p2p'\]; give yours "
                                          r"another name"):
        load_recipes(path)
    assert registry.registered() == before  # fine_first rolled back too
    assert select_recipe("p2p", "pairwise", device, "cpu").source.endswith("transforms/cpu.py")
    # The same name for other operators, or another device class, is no clash.
    other = _write(tmp_path, "other.py", """
        from fmmloopy.tuning.recipe import recipe

        @recipe("p2p", device="gpu-nvidia", name="cpu")
        def cpu_named_for_nvidia(knl, ctx):
            return knl
        """)
    load_recipes(other)


def test_a_layout_may_follow_the_device(monkeypatch):
    """The cpu matvec recipe sizes its pair tile to the device's vectors: 8 pairs where they
    hold 8 doubles (AVX-512), 4 otherwise; a layout function returning no layout is refused."""
    from types import SimpleNamespace
    monkeypatch.delenv(VECTOR_DOUBLES_ENV, raising=False)  # the devices' own widths

    from fmmloopy.transforms import cpu

    from fmmloopy.maths.layouts import Grouped
    from fmmloopy.tuning.recipe import Recipe, RecipeError

    shipped = next(r for r in registry.REGISTRY if r.name == "cpu" and "matvec" in r.targets)
    avx512, avx2 = (SimpleNamespace(preferred_vector_width_double=w) for w in (8, 4))
    assert shipped.layout_for(avx512) == Grouped(pair_tile=8, blocks_per_compute_unit=2,
                                                 row_multiple=16)
    assert shipped.layout_for(avx2) == Grouped(pair_tile=4, blocks_per_compute_unit=2,
                                               row_multiple=8)
    assert cpu.matvec_layout(SimpleNamespace()).pair_tile == cpu.PAIR_TILE  # nothing reported
    odd = Recipe("odd", ("matvec",), "any", lambda knl, ctx: knl, "here", lambda device: 4)
    with pytest.raises(RecipeError, match="recipe 'odd' from here asks for list layout 4: not a "
                                          "layout of fmmloopy.maths.layouts"):
        odd.layout_for(avx512)


@pytest.mark.filterwarnings("ignore:This function is deprecated:DeprecationWarning")
@pytest.mark.parametrize("lanes", [4, 8])
def test_the_cpu_recipes_take_the_path_of_the_vector_width_asked_for(device, monkeypatch, lanes):
    """``$FMMLOOPY_VECTOR_DOUBLES`` makes one machine take another CPU class's paths (AVX2's
    with 4, AVX-512's with 8): target lanes in P2P and the wide pair tile only with 8; the
    kernel cache keys the kernels by it, and a kernel compiled for one width is not served
    for the other."""
    from fmmloopy.transforms import cpu

    from fmmloopy.execution.kernel_cache import device_fingerprint

    monkeypatch.setenv(VECTOR_DOUBLES_ENV, str(lanes))
    assert cpu.has_wide_vectors(device) == (lanes == 8)
    assert cpu.matvec_layout(device).pair_tile == (8 if lanes == 8 else 4)
    assert device_fingerprint(device)["vector_doubles_for_recipes"] == str(lanes)
    code = compiled_operator("p2p", device, recipe="cpu").device_code()
    assert ("double8 acc[" in code) == (lanes == 8), code[:2000]
    matvec = compiled_operator("m2l", device, recipe="cpu", n_target_coeffs=48,
                               n_source_coeffs=56)
    assert matvec.layout.pair_tile == (8 if lanes == 8 else 4)
    assert f"double{cpu.vector_width(device)} acc[" in matvec.device_code()
