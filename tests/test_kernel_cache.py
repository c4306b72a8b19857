"""The disk kernel cache: a warm start runs the stored code without loopy or the recipe, and
anything that changes the code (recipe file, sizes, device, versions) changes the key."""

import importlib.util
import pickle
import sys
import warnings

import numpy as np
import pytest

import fmmloopy
from fmmloopy import execution, kernel_cache
from fmmloopy.distributions import plummer
from fmmloopy.execution import compiled_operator
from fmmloopy.kernel_cache import KernelCacheWarning, kernel_key, kernel_path
from fmmloopy.kernels import LAPLACE_3D
from fmmloopy.recipes import Recipe

POINTS = plummer(3000, np.random.default_rng(31))  # adaptive: every list is non-empty
CHARGES = np.random.default_rng(32).uniform(-1.0, 1.0, len(POINTS))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache directory and an empty in-process kernel table (restored afterwards)."""
    monkeypatch.setenv("FMMLOOPY_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(kernel_cache.KERNEL_CACHE_ENV, raising=False)
    monkeypatch.setattr(execution, "_CACHE", {})
    return tmp_path


def _forget_compiled(monkeypatch):
    monkeypatch.setattr(execution, "_CACHE", {})


def _no_loopy(*args, **kwargs):
    raise AssertionError("the math-level kernel was built although the disk cache holds it")


def test_warm_start_runs_the_stored_code_bitwise_equal(cache_dir, monkeypatch):
    cold = fmmloopy.Fmm(POINTS, order=3, n_crit=20)
    expected = cold(CHARGES)
    stored = sorted(path.name.split("-")[0] for path in (cache_dir / "kernels").iterdir())
    assert stored == sorted(["p2p", "p2m", "p2l", "m2p", "l2p", "m2m", "l2l", "m2l", "c2e"])

    _forget_compiled(monkeypatch)
    monkeypatch.setattr(execution, "math_kernel", _no_loopy)
    warm = fmmloopy.Fmm(POINTS, order=3, n_crit=20)
    np.testing.assert_array_equal(warm(CHARGES), expected)


def test_cached_code_equals_freshly_generated_code(cache_dir, device, monkeypatch):
    fresh = compiled_operator("m2l", device, n_target_coeffs=56, n_source_coeffs=56)
    fresh_code = fresh.device_code()
    _forget_compiled(monkeypatch)
    monkeypatch.setattr(execution, "math_kernel", _no_loopy)
    warm = compiled_operator("m2l", device, n_target_coeffs=56, n_source_coeffs=56)
    assert warm.device_code() == fresh_code
    assert warm.argument_names == fresh.argument_names
    assert warm.written_names == fresh.written_names == ["target_vectors"]
    assert warm.reshaped == fresh.reshaped and warm.reshaped  # the cpu recipe splits axes
    monkeypatch.undo()  # the loopy kernel is still there on request
    assert warm.t_unit.default_entrypoint.name == fresh.t_unit.default_entrypoint.name


RECIPE_MODULE = '''
from fmmloopy.transform_tools import parallelize_box_loop


def plain(knl, ctx):
    return parallelize_box_loop(knl)
'''


def _recipe_from_file(path):
    spec = importlib.util.spec_from_file_location(f"kernel_cache_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Recipe("plain", ("p2p",), "any", module.plain, str(path))


def test_key_follows_recipe_file_sizes_dtype_and_device(tmp_path, device):
    path = tmp_path / "recipe_a.py"
    path.write_text(RECIPE_MODULE)
    recipe = _recipe_from_file(path)
    key = kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26})
    assert key == kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26})
    changed = [
        kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 56}),
        kernel_key("p2m", recipe, device, LAPLACE_3D, np.float32, {"n_surface": 26}),
        kernel_key("p2l", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26}),
    ]
    path.write_text(RECIPE_MODULE + "# an edit that changes nothing the kernel does\n")
    changed.append(kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26}))
    paths = {kernel_path(key)} | {kernel_path(other) for other in changed}
    assert len(paths) == 1 + len(changed)
    assert key["device"]["max_compute_units"] == str(device.max_compute_units)
    # PoCL sets its memory sizes from the memory free at start-up: not part of the key.
    assert not {"global_mem_size", "max_mem_alloc_size"} & set(key["device"])
    assert set(key["versions"]) == {"python", "loopy", "pyopencl", "pymbolic", "islpy", "numpy"}


def test_key_follows_the_user_files_a_recipe_draws_on(tmp_path, device, monkeypatch):
    """Helpers in other files of the recipe author's (imported as a module, or a function from
    one, transitively) are in the key; installed packages are keyed by version instead."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "kc_inner_helpers.py").write_text(
        "from fmmloopy.transform_tools import parallelize_box_loop\n\n\n"
        "def parallel(knl):\n    return parallelize_box_loop(knl)\n")
    (tmp_path / "kc_outer_helpers.py").write_text(
        "import numpy\nfrom kc_inner_helpers import parallel\n\n\n"
        "def box_loop(knl):\n    return parallel(knl)\n")
    path = tmp_path / "recipe_with_helpers.py"
    path.write_text("import kc_outer_helpers\nfrom kc_outer_helpers import box_loop\n\n\n"
                    "def plain(knl, ctx):\n    return box_loop(knl)\n")
    monkeypatch.delitem(sys.modules, "kc_inner_helpers", raising=False)
    monkeypatch.delitem(sys.modules, "kc_outer_helpers", raising=False)
    recipe = _recipe_from_file(path)

    def key():
        return kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26})

    keys = [key()]
    for helper in ("kc_outer_helpers.py", "kc_inner_helpers.py"):
        with open(tmp_path / helper, "a") as stream:
            stream.write("# an edit of a helper file\n")
        keys.append(key())
    assert len({kernel_path(each) for each in keys}) == 3
    assert keys[-1] == key()  # nothing else (numpy, fmmloopy) read differently


def test_recipe_without_a_source_file_is_never_stored(device):
    namespace = {}
    exec("def interactive(knl, ctx):\n    return knl\n", namespace)
    recipe = Recipe("interactive", ("p2p",), "any", namespace["interactive"], "<session>")
    assert kernel_key("p2p", recipe, device, LAPLACE_3D, np.float64, {}) is None


def _stored_p2p(device):
    compiled_operator("p2p", device).device_code()  # generates and stores
    key = compiled_operator("p2p", device)._disk_key
    assert kernel_path(key).exists()
    return key


def test_corrupt_or_foreign_file_is_rejected_with_a_warning(cache_dir, device, monkeypatch):
    key = _stored_p2p(device)
    path = kernel_path(key)
    good = path.read_bytes()
    assert isinstance(kernel_cache.load(key), kernel_cache.GeneratedKernel)

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.warns(KernelCacheWarning, match="rejected .* generating the kernel again"):
        assert kernel_cache.load(key) is None

    entry = pickle.loads(good)
    entry["key"] = dict(key, operator="p2l")  # a file that answers another key
    path.write_bytes(pickle.dumps(entry))
    with pytest.warns(KernelCacheWarning, match="stored key differs"):
        assert kernel_cache.load(key) is None

    path.write_bytes(pickle.dumps({"key": key, "kernel": "not a kernel"}))
    with pytest.warns(KernelCacheWarning, match="stored object is a str"):
        assert kernel_cache.load(key) is None

    # After a rejection the kernel is generated again, runs, and the file is good again.
    _forget_compiled(monkeypatch)
    with pytest.warns(KernelCacheWarning, match="stored object is a str"):
        fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES)
    assert isinstance(kernel_cache.load(key), kernel_cache.GeneratedKernel)


def test_switched_off_by_the_environment(cache_dir, device, monkeypatch):
    monkeypatch.setenv(kernel_cache.KERNEL_CACHE_ENV, "off")
    compiled_operator("p2p", device).device_code()
    assert not (cache_dir / "kernels").exists()


def test_unwritable_directory_warns_once_and_still_runs(cache_dir, monkeypatch):
    (cache_dir / "kernels").write_text("a file where the directory should be")
    monkeypatch.setattr(kernel_cache, "_warned_unwritable", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        potential = fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES)
    unwritable = [w for w in caught if issubclass(w.category, KernelCacheWarning)]
    assert len(unwritable) == 1 and "cannot write to" in str(unwritable[0].message)
    assert np.isfinite(potential).all()


def test_missing_array_argument_is_named(cache_dir, device, queue):
    p2p = compiled_operator("p2p", device)
    p2p.device_code()
    launcher = p2p._executors[queue.context.int_ptr]
    with pytest.raises(TypeError, match=r"missing array arguments: \[.*'sources'"):
        launcher(queue, targets=None)

