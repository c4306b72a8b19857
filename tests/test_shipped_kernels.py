"""The shipped generated kernels (fmmloopy/execution/shipped_kernels.py): what the recipes generate,
used on a first run without loopy, refused when changed."""

import json
import lzma
import types
import warnings

import numpy as np
import pyopencl as cl
import pytest

import fmmloopy
from fmmloopy.base.devices import VECTOR_DOUBLES_ENV
from fmmloopy.base.distributions import plummer
from fmmloopy.cli import ship_kernels
from fmmloopy.execution import compiled, device_setup, kernel_cache, shipped_kernels
from fmmloopy.execution.cache_files import key_string
from fmmloopy.maths.green import LAPLACE_3D, get_kernel
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.scheme import KIFMM, plan_kernel_requests

POINTS = plummer(2000, np.random.default_rng(41))
CHARGES = np.random.default_rng(42).uniform(-1.0, 1.0, len(POINTS))


@pytest.fixture
def shipped_here(device):
    """The device, where kernels are shipped for it (an OpenCL CPU device)."""
    if shipped_kernels.device_class("cpu", device) is None:
        pytest.skip(f"no kernel is shipped for {device.name!r} (not a CPU device)")
    return device


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty disk cache, no kernel of this process, the shipped file read again."""
    monkeypatch.setenv("FMMLOOPY_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(kernel_cache.KERNEL_CACHE_ENV, raising=False)
    monkeypatch.setattr(compiled, "_CACHE", {})
    monkeypatch.setattr(device_setup, "_LAUNCHERS", {})
    shipped_kernels._entries.cache_clear()
    yield tmp_path
    shipped_kernels._entries.cache_clear()


def _no_loopy(*args, **kwargs):
    raise AssertionError("a kernel was generated although it is shipped")


@pytest.mark.slow
def test_the_shipped_kernels_are_what_the_recipes_generate(shipped_here):
    """Every entry generated again (both vector classes, both precisions, every field of the
    Laplace FMM, the set-up's kernels) equals the shipped one, key and code; a change to what
    generates kernels fails here until ``python -m fmmloopy.cli.ship_kernels`` is run."""
    generated = sorted(map(key_string, ship_kernels.generate_entries(shipped_here)))
    ours = shipped_kernels.device_class("cpu", shipped_here)["class"]  # cpu or cpu-intel
    shipped = sorted(key_string(entry) for entry in shipped_kernels.read()
                     if entry["key"]["device"]["class"] in (ours, "any"))
    assert len(generated) == len(shipped) > 80
    assert generated == shipped, "run: python -m fmmloopy.cli.ship_kernels"


def test_a_first_run_takes_the_shipped_kernels_without_loopy(shipped_here, empty_cache,
                                                             monkeypatch):
    monkeypatch.setattr(compiled, "math_kernel", _no_loopy)
    monkeypatch.setattr(device_setup, "SETUP_KERNELS", {
        name: _no_loopy for name in device_setup.SETUP_KERNELS})
    reference = direct_sum(LAPLACE_3D, POINTS, CHARGES, POINTS)
    for order in (3, 5):  # one kernel per operator for every order
        with warnings.catch_warnings():
            warnings.simplefilter("error", kernel_cache.KernelCacheWarning)
            potential = fmmloopy.Fmm(POINTS, order=order, n_crit=30)(CHARGES)
        error = np.linalg.norm(potential - reference) / np.linalg.norm(reference)
        assert error < 10 * {3: 4.4e-4, 5: 4.5e-6}[order]  # the orders' measured errors
    # Nothing generated, so nothing stored in the disk cache.
    assert not list((empty_cache / "kernels").glob("*.json"))


def _planted(tmp_path, change, device) -> list[dict]:
    """The shipped entries with ``change`` applied to the first of the cpu recipe's for
    ``device``'s class, written to a file of their own."""
    entries = shipped_kernels.read()
    ours = shipped_kernels.device_class("cpu", device)["class"]
    target = next(item for item in entries if item["key"]["recipe"][0] == "cpu"
                  and item["key"]["device"]["class"] == ours)
    change(target)
    path = tmp_path / "planted.json.xz"
    path.write_bytes(lzma.compress(json.dumps({"format_version": shipped_kernels.FORMAT_VERSION,
                                               "entries": entries}).encode()))
    return path, target


def test_a_changed_shipped_source_is_refused_and_generated(shipped_here, empty_cache,
                                                            tmp_path, monkeypatch):
    def change(target):
        target["kernel"]["device_code"] = target["kernel"]["device_code"].replace(
            "+", "-", 1)
    path, target = _planted(tmp_path, change, shipped_here)
    monkeypatch.setattr(shipped_kernels, "SHIPPED_PATH", path)
    key = target["key"]
    lanes = key["device"]["vector_doubles_for_recipes"]
    monkeypatch.setenv(VECTOR_DOUBLES_ENV, lanes)
    with pytest.warns(kernel_cache.KernelCacheWarning, match="refused the shipped kernel.*"
                                                             "content digest does not match"):
        assert shipped_kernels.load(key, shipped_here) is None
    # The others are still served.
    other = next(item for item in shipped_kernels.read(path)
                 if item["key"] != key and item["key"]["device"] == key["device"])
    assert shipped_kernels.load(other["key"], shipped_here) is not None


def test_an_entry_for_other_generators_or_devices_is_not_used(shipped_here, empty_cache):
    ours = shipped_kernels.device_class("cpu", shipped_here)["class"]
    entry = next(item for item in shipped_kernels.read() if item["key"]["recipe"][0] == "cpu"
                 and item["key"]["device"]["class"] == ours)
    key = entry["key"]  # as the disk cache's key would give it on a device of its class
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(VECTOR_DOUBLES_ENV, entry["key"]["device"]["vector_doubles_for_recipes"])
        assert shipped_kernels.load(key, shipped_here) is not None
        # Another generator digest (a template edited since), another vector class, another
        # version of loopy: no entry.
        assert shipped_kernels.load(key | {"generators": "0" * 64}, shipped_here) is None
        assert shipped_kernels.load(key | {"versions": {"loopy": "0"}}, shipped_here) is None
        other = {"4": "8", "8": "4"}[entry["key"]["device"]["vector_doubles_for_recipes"]]
        patch.setenv(VECTOR_DOUBLES_ENV, other)
        assert shipped_kernels.load(key, shipped_here) is None
        patch.setenv(kernel_cache.KERNEL_CACHE_ENV, "off")
        patch.setenv(VECTOR_DOUBLES_ENV, entry["key"]["device"]["vector_doubles_for_recipes"])
        assert shipped_kernels.load(key, shipped_here) is None  # the cache switched off
    gpu = types.SimpleNamespace(type=cl.device_type.GPU)
    assert shipped_kernels.device_class("cpu", gpu) is None
    assert shipped_kernels.device_class("gpu", shipped_here) is None
    assert shipped_kernels.device_class("setup", gpu) == {"class": "any"}


@pytest.mark.parametrize("lanes,shipped", [("1", "4"), ("2", "4"), ("16", "8")])
def test_a_width_between_the_classes_generates_its_classs_code(shipped_here, empty_cache, lanes,
                                                                shipped):
    """The cpu recipes read of the device only whether its vectors hold 8 doubles (Intel's
    runtime says 1, a future CPU may say 16): the code generated at ``lanes`` is the code of the
    class it is served from."""
    assert shipped_kernels.vector_class(int(lanes)) == int(shipped)
    green = get_kernel("laplace").with_fields(("potential", "gradient"), ("charge",))
    code = {}
    for width in (lanes, shipped):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(VECTOR_DOUBLES_ENV, width)
            patch.setenv(kernel_cache.KERNEL_CACHE_ENV, "off")
            compiled.forget_compiled()
            for operator, kernel, sizes in plan_kernel_requests(KIFMM, 56, None, green):
                if operator in ("p2p", "m2l"):
                    made = compiled.compiled_operator(operator, shipped_here, recipe="cpu",
                                                      kernel=kernel, dtype=np.float64,
                                                      settings={}, **sizes)
                    code[width, operator] = made.generated.device_code
    compiled.forget_compiled()
    for operator in ("p2p", "m2l"):
        assert code[lanes, operator] == code[shipped, operator]
