"""The disk kernel cache: a warm start runs the stored code (data: source, arguments, grid) of the
shipped recipes without loopy or the recipe; anything that changes the code changes the key; a
corrupt, foreign, planted or stale entry never runs."""

import importlib.util
import json
import os
import re
import shutil
import stat
import sys
import warnings
from pathlib import Path

import fmmloopy.transforms
import numpy as np
import pyopencl.array as cla
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer
from fmmloopy.checking.problems import check_problems
from fmmloopy.execution import compiled as execution
from fmmloopy.execution import kernel_cache
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.generated_kernel import GeneratedKernel
from fmmloopy.execution.kernel_cache import KernelCacheWarning, kernel_key, kernel_path
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.operators import get_operator
from fmmloopy.tuning import shipped as shipped_module
from fmmloopy.tuning.recipe import Recipe, RecipeError
from fmmloopy.tuning.registry import select_recipe

POINTS = plummer(3000, np.random.default_rng(31))  # adaptive: every list is non-empty
CHARGES = np.random.default_rng(32).uniform(-1.0, 1.0, len(POINTS))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch, no_shipped_kernels):
    """An empty cache directory and an empty in-process kernel table (restored afterwards); the
    shipped kernels out of the way."""
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
    # The set-up's kernels (Morton keys, V classes) are stored too where this process builds
    # them first; a process that loaded them before (another test) does not store them here.
    stored = sorted(name for name in (path.name.split("-")[0]
                                      for path in (cache_dir / "kernels").iterdir())
                    if name != "setup")
    # One kernel per operator, or two for a matvec (rows of whole vectors or not): the sizes
    # (surfaces, ranks of each M2L class) are launch arguments.
    pairwise = ["p2p", "p2m", "p2l", "m2p", "l2p"]
    assert sorted(set(stored)) == sorted(pairwise + ["m2m", "l2l", "m2l", "m2l_compress",
                                                     "m2l_expand", "c2e"])
    assert all(stored.count(name) == 1 for name in pairwise)
    assert all(stored.count(name) <= 2 for name in stored)

    _forget_compiled(monkeypatch)
    monkeypatch.setattr(execution, "math_kernel", _no_loopy)
    warm = fmmloopy.Fmm(POINTS, order=3, n_crit=20)
    np.testing.assert_array_equal(warm(CHARGES), expected)


def test_cached_code_equals_freshly_generated_code(cache_dir, device, monkeypatch):
    # The cpu recipe on every device: its split axes are what the cache must restore.
    fresh = compiled_operator("m2l", device, recipe="cpu", n_target_coeffs=64,
                              n_source_coeffs=64)
    fresh_code = fresh.device_code()
    _forget_compiled(monkeypatch)
    monkeypatch.setattr(execution, "math_kernel", _no_loopy)
    warm = compiled_operator("m2l", device, recipe="cpu", n_target_coeffs=64,
                             n_source_coeffs=64)
    assert warm.device_code() == fresh_code
    assert warm.argument_names == fresh.argument_names
    assert warm.written_names == fresh.written_names == ["target_vectors"]
    # The cpu recipe splits axes where its vector width (8 or 16) divides the sizes (64 here).
    assert warm.reshaped == fresh.reshaped and warm.reshaped
    monkeypatch.undo()  # the loopy kernel is still there on request
    assert warm.t_unit.default_entrypoint.name == fresh.t_unit.default_entrypoint.name


def test_key_follows_operator_sizes_dtype_and_device(device):
    recipe = select_recipe("p2m", "pairwise", device, "cpu")
    key = kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26})
    assert key == kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26})
    changed = [
        kernel_key("p2m", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 56}),
        kernel_key("p2m", recipe, device, LAPLACE_3D, np.float32, {"n_surface": 26}),
        kernel_key("p2l", recipe, device, LAPLACE_3D, np.float64, {"n_surface": 26}),
        kernel_key("p2m", select_recipe("p2m", "pairwise", device, "gpu"), device, LAPLACE_3D,
                   np.float64, {"n_surface": 26}),
        # Another field of the same Green's function is another kernel (dipole sources): a
        # stored scalar P2M must never run for it.
        kernel_key("p2m", recipe, device, LAPLACE_3D.with_fields(inputs=("charge", "dipole")),
                   np.float64, {"n_surface": 26}),
    ]
    paths = {kernel_path(key)} | {kernel_path(other) for other in changed}
    assert len(paths) == 1 + len(changed)
    assert key["device"]["max_compute_units"] == str(device.max_compute_units)
    # PoCL sets its memory sizes from the memory free at start-up: not part of the key.
    assert not {"global_mem_size", "max_mem_alloc_size"} & set(key["device"])
    assert set(key["versions"]) == {"python", "loopy", "pyopencl", "pymbolic", "islpy", "numpy"}
    assert len(key["generators"]) == 64  # sha256 of the modules that generate kernels


def test_the_key_follows_the_modules_that_generate_kernels_only(tmp_path, monkeypatch):
    """An edit of the driver, the tree or the API keeps every stored kernel; one of a module that
    generates kernels (a template, a recipe, a building block) changes their key."""
    from fmmloopy.execution import cache_files

    copy = tmp_path / "fmmloopy"
    shutil.copytree(Path(fmmloopy.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(fmmloopy.transforms.__file__).parent, copy / "transforms",
                    ignore=shutil.ignore_patterns("__pycache__"))

    def digest() -> str:
        roots = {"fmmloopy": copy, "fmmloopy.transforms": copy / "transforms"}
        monkeypatch.setattr(cache_files, "_package_folder", roots.__getitem__)
        cache_files.modules_digest.cache_clear()
        return kernel_cache.generator_digest()

    before = digest()
    generating = (set(cache_files.modules_closure(*kernel_cache.OPERATOR_GENERATORS))
                  | set(kernel_cache.OPERATOR_GENERATORS_ALONE))
    assert {"fmmloopy.maths.templates", "fmmloopy.transforms.cpu", "fmmloopy.maths.green",
            "fmmloopy.tuning.tools", "fmmloopy.execution.compiled"} <= generating
    assert not {"fmmloopy.api.fmm", "fmmloopy.driver.builder", "fmmloopy.tree.octree",
                "fmmloopy.cli.main", "fmmloopy.checking.check"} & generating
    for module in ("api/fmm.py", "driver/builder.py", "tree/octree.py"):
        with open(copy / module, "a") as stream:
            stream.write("\n# an edit\n")
    assert digest() == before
    with open(copy / "maths" / "templates.py", "a") as stream:
        stream.write("\n# an edit\n")
    assert digest() != before
    cache_files.modules_digest.cache_clear()


def test_only_the_shipped_recipes_unmodified_are_stored(tmp_path, device, monkeypatch):
    """A user's recipe (its helpers, environment, data files) is applied anew in every process;
    an edited shipped file is a user's recipe too."""
    path = tmp_path / "kc_user_recipe.py"
    path.write_text("def plain(knl, ctx):\n    return knl\n")
    spec = importlib.util.spec_from_file_location("kc_user_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    user = Recipe("plain", ("p2p",), "any", module.plain, str(path))
    assert kernel_key("p2p", user, device, LAPLACE_3D, np.float64, {}) is None
    namespace = {}
    exec("def interactive(knl, ctx):\n    return knl\n", namespace)
    interactive = Recipe("interactive", ("p2p",), "any", namespace["interactive"], "<session>")
    assert kernel_key("p2p", interactive, device, LAPLACE_3D, np.float64, {}) is None

    shipped = select_recipe("p2p", "pairwise", device, "cpu")
    assert kernel_key("p2p", shipped, device, LAPLACE_3D, np.float64, {}) is not None
    monkeypatch.setitem(shipped_module.SHIPPED_SHA256, "fmmloopy.transforms.cpu", "0" * 64)
    shipped_module.shipped_files_intact.cache_clear()
    try:
        assert kernel_key("p2p", shipped, device, LAPLACE_3D, np.float64, {}) is None
    finally:
        monkeypatch.undo()
        shipped_module.shipped_files_intact.cache_clear()


def _stored_p2p(device):
    compiled_operator("p2p", device).device_code()  # generates and stores
    key = compiled_operator("p2p", device)._disk_key
    assert kernel_path(key).exists()
    return key


def test_the_checks_workers_store_what_they_generate_and_never_read_it(cache_dir, device,
                                                                       monkeypatch):
    """``store`` (the check's workers, CHECK_WORKER_ENVIRONMENT): a generated kernel of a
    shipped recipe is stored for later processes, and a stored one is never taken: the recipe is
    applied and the code generated anew, even over a file that holds other code."""
    from fmmloopy.checking.check import CHECK_WORKER_ENVIRONMENT

    assert CHECK_WORKER_ENVIRONMENT == {kernel_cache.KERNEL_CACHE_ENV: kernel_cache.STORE_ONLY}
    monkeypatch.setenv(kernel_cache.KERNEL_CACHE_ENV, kernel_cache.STORE_ONLY)
    assert kernel_cache.storing() and not kernel_cache.enabled()
    key = _stored_p2p(device)  # generated, then stored
    path = kernel_path(key)
    entry = json.loads(path.read_text())
    generated_code = entry["kernel"]["device_code"]
    entry["kernel"]["device_code"] = generated_code.replace("+", "-")  # planted, digest redone
    entry["sha256"] = kernel_cache._digest(entry["key"], entry["kernel"])
    path.write_text(json.dumps(entry, sort_keys=True))
    assert kernel_cache.load(key) is None
    _forget_compiled(monkeypatch)
    made, original = [], execution.math_kernel
    monkeypatch.setattr(execution, "math_kernel",
                        lambda *args, **kwargs: made.append(1) or original(*args, **kwargs))
    assert compiled_operator("p2p", device).device_code() == generated_code
    assert made
    # What it generated was stored over the planted file; an FMM's process reads it.
    monkeypatch.delenv(kernel_cache.KERNEL_CACHE_ENV)
    assert kernel_cache.load(key).device_code == generated_code


def test_corrupt_or_foreign_file_is_rejected_deleted_and_regenerated(cache_dir, device,
                                                                      monkeypatch):
    key = _stored_p2p(device)
    path = kernel_path(key)
    good = path.read_bytes()
    assert isinstance(kernel_cache.load(key), GeneratedKernel)

    def rejected(content: bytes, why: str) -> None:
        path.write_bytes(content)
        with pytest.warns(KernelCacheWarning, match=f"rejected .*{why}.*deleted"):
            assert kernel_cache.load(key) is None
        assert not path.exists()

    rejected(good[: len(good) // 2], "JSONDecodeError")  # truncated
    entry = json.loads(good)
    rejected(json.dumps(dict(entry, key=dict(key, operator="p2l"))).encode(),
             "stored key differs")  # a file that answers another key
    code = entry["kernel"]["device_code"]
    digit = re.search(r"\d", code.split("__kernel", 1)[1]).start() + code.index("__kernel") + 8
    entry["kernel"]["device_code"] = code[:digit] + str((int(code[digit]) + 1) % 10) + code[
        digit + 1:]
    rejected(json.dumps(entry).encode(), "digest does not match")  # one changed digit
    # After a rejection the kernel is generated again, runs, and the file is good again.
    path.write_bytes(good[:-7])
    _forget_compiled(monkeypatch)
    with pytest.warns(KernelCacheWarning, match="rejected"):
        fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES)
    assert isinstance(kernel_cache.load(key), GeneratedKernel)
    assert path.read_bytes() == good


def test_a_flipped_byte_anywhere_is_caught(cache_dir, device):
    """Every 61st byte flipped in turn (and every 500th prefix): each copy is rejected with a
    warning and deleted, never loaded; the regenerated kernel gives the right numbers."""
    key = _stored_p2p(device)
    path = kernel_path(key)
    good = path.read_bytes()
    copies = [good[:offset] + bytes([good[offset] ^ 0x01]) + good[offset + 1:]
              for offset in range(0, len(good), 61)]
    copies += [good[:length] for length in range(0, len(good), 500)]
    assert len(copies) > 100
    for copy in copies:
        path.write_bytes(copy)
        with pytest.warns(KernelCacheWarning, match="rejected"):
            assert kernel_cache.load(key) is None
        assert not path.exists()


SENTINEL_PAYLOAD = """
import os, pickle
class Planted:
    def __reduce__(self):
        return (os.system, ("touch {sentinel}",))
print(pickle.dumps(Planted()).hex())
"""


def test_planted_entry_never_runs(cache_dir, device, tmp_path, monkeypatch):
    """A pickle that runs a command when unpickled, planted under the file names the cache
    reads (and the old format's): nothing runs; the kernel is generated and is right."""
    import subprocess

    sentinel = tmp_path / "planted-code-ran"
    payload = bytes.fromhex(subprocess.run(
        [sys.executable, "-c", SENTINEL_PAYLOAD.format(sentinel=sentinel)],
        capture_output=True, text=True, check=True).stdout.strip())
    assert not sentinel.exists()
    key = _stored_p2p(device)
    path = kernel_path(key)
    path.write_bytes(payload)
    path.with_suffix(".pickle").write_bytes(payload)
    _forget_compiled(monkeypatch)
    with pytest.warns(KernelCacheWarning, match="rejected"):
        potential = fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES)
    assert not sentinel.exists()
    _forget_compiled(monkeypatch)
    monkeypatch.setenv(kernel_cache.KERNEL_CACHE_ENV, "off")
    np.testing.assert_array_equal(potential, fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES))


def test_files_other_users_could_have_written_are_not_read(cache_dir, device, monkeypatch):
    """The digest catches corruption, not a planted file with a matching digest: so files are
    read only from a private directory, owned by this user and writable by nobody else."""
    key = _stored_p2p(device)
    path = kernel_path(key)
    assert stat.S_IMODE((cache_dir / "kernels").stat().st_mode) == 0o700
    # A file another user owns (root can give it away) is rejected and deleted.
    if os.getuid() == 0:
        os.chown(path, 12345, -1)
        with pytest.warns(KernelCacheWarning, match="owned by user id 12345"):
            assert kernel_cache.load(key) is None
        assert not path.exists()
        _stored_p2p_again(device, monkeypatch)
    # A group-writable directory (a shared cache) is neither read nor written, with one warning.
    (cache_dir / "kernels").chmod(0o770)
    monkeypatch.setattr(kernel_cache, "_warned_unsafe", set())
    with pytest.warns(KernelCacheWarning, match="writable by other users"):
        assert kernel_cache.load(key) is None
    assert path.exists()  # left alone: not ours to judge
    _forget_compiled(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fmmloopy.Fmm(POINTS, order=3, n_crit=20)(CHARGES)
    assert not [w for w in caught if issubclass(w.category, KernelCacheWarning)]  # warned once


def _stored_p2p_again(device, monkeypatch):
    _forget_compiled(monkeypatch)
    _stored_p2p(device)


def test_cache_list_and_clear(cache_dir, device, capsys):
    from fmmloopy.cli.main import main

    key = _stored_p2p(device)
    fmmloopy.Fmm(POINTS, order=3, n_crit=20)  # the operator cache file too (its own dir)
    kernel_path(key).with_name("stray.json.tmp").write_text("left by a killed writer")
    assert main(["cache", "list"]) == 0
    listed = capsys.readouterr().out
    assert str(cache_dir) in listed
    assert re.search(r"kernel\s+\d+ B .* ok\s+p2p-cpu-", listed)
    assert "temporary" in listed and "leftover" in listed
    kernel_path(key).write_text("{}")
    assert main(["cache", "list"]) == 0
    assert re.search(r"kernel .* foreign\s+p2p-cpu-", capsys.readouterr().out)
    assert main(["cache", "clear"]) == 0
    cleared = capsys.readouterr().out
    assert re.search(r"removed \d+ files? \(\d+ bytes\)", cleared)
    assert not list((cache_dir / "kernels").iterdir())
    assert main(["cache", "list"]) == 0
    assert "0 files" in capsys.readouterr().out


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


def test_arguments_are_checked_and_named_before_launch(cache_dir, device, queue):
    p2p = compiled_operator("p2p", device, recipe="cpu")
    p2p.device_code()
    with pytest.raises(RecipeError, match=r"recipe 'cpu'.*missing array argument "
                                          r"'target_boxes'"):
        p2p(queue, targets=None)
    problem = check_problems()[0]
    inputs = {name: cla.to_device(queue, value) if isinstance(value, np.ndarray) else value
              for name, value in problem.arguments(get_operator("p2p"), {}).items()}
    inputs = {name: value for name, value in inputs.items() if name in p2p.argument_names}
    wrong_dtype = dict(inputs, strengths=inputs["strengths"].astype(np.float32))
    with pytest.raises(RecipeError, match=r"recipe 'cpu'.*'strengths' has dtype float32, the "
                                          r"kernel takes float64"):
        p2p(queue, **wrong_dtype)
    short = dict(inputs, result=inputs["result"][:-1])
    with pytest.raises(RecipeError, match=r"recipe 'cpu'.*'result' has shape \(\d+,\), the "
                                          r"kernel takes \(\d+,\)"):
        p2p(queue, **short)

