"""fmmloopy.base.devices: what ``device=`` accepts (a clear error for anything else), the device
classes recipes are registered for, the choice of a default device (``$FMMLOOPY_DEVICE``, a GPU,
else a CPU; float64 only; never the Oclgrind simulator), device keys and contexts.

Classes and the choice are tested on fake devices and platforms too, so every kind is covered
whatever the machine has; the rest runs on the test device."""

import pickle
from types import SimpleNamespace

import numpy as np
import pyopencl as cl
import pytest

import fmmloopy
from fmmloopy.base import devices
from fmmloopy.base.devices import (
    DEVICE_ENV,
    VECTOR_DOUBLES_ENV,
    choose_device,
    context_for,
    device_classes,
    device_from_key,
    device_key,
)

ACCEPTED = "device must be None, a pyopencl.Device, 'cpu', 'gpu' or a device name"
INDEX_HINT = (" (devices are not numbered: their order depends on the OpenCL platforms "
              "installed)")


@pytest.mark.parametrize("spec,given", [
    (3.5, "float 3.5"),
    (b"cpu", "bytes b'cpu'"),
    (["cpu"], "list ['cpu']"),
    (np.float64(1.0), "float64 np.float64(1.0)"),
])
def test_device_of_another_type_is_refused_with_what_is_accepted(spec, given):
    """(device=3.5 raised AttributeError: 'float' object has no attribute 'lower')"""
    with pytest.raises(ValueError) as refused:
        choose_device(spec)
    assert str(refused.value) == f"{ACCEPTED}, got {given}"


def test_fmm_refuses_a_float_device():
    points = np.random.default_rng(90).random((20, 3))
    with pytest.raises(ValueError) as refused:
        fmmloopy.Fmm(points, device=3.5)
    assert str(refused.value) == f"{ACCEPTED}, got float 3.5"


@pytest.mark.parametrize("spec,given", [
    (0, "int 0"),
    (1, "int 1"),
    (np.int64(0), "int64 np.int64(0)"),
])
def test_integer_device_is_refused_not_taken_for_the_default(spec, given):
    """(device=0 quietly meant the default device, device=1 raised AttributeError)"""
    with pytest.raises(ValueError) as refused:
        choose_device(spec)
    assert str(refused.value) == f"{ACCEPTED}, got {given}{INDEX_HINT}"


@pytest.mark.parametrize("spec,given", [
    (True, "bool True"),
    (False, "bool False"),
    (np.bool_(False), "bool np.False_"),
])
def test_boolean_device_is_refused(spec, given):
    """(device=False quietly meant the default device, True raised AttributeError)"""
    with pytest.raises(ValueError) as refused:
        choose_device(spec)
    assert str(refused.value) == f"{ACCEPTED}, got {given}"


def test_accepted_specs_still_choose_a_device(device):
    assert choose_device(device) is device
    assert isinstance(choose_device(None), cl.Device)
    kind = device_classes(device)[-2]  # "cpu" or "gpu"
    assert kind in device_classes(choose_device(kind))
    assert choose_device(device.name.upper()).name == device.name
    with pytest.raises(ValueError, match="no OpenCL device matches 'no such device'"):
        choose_device("no such device")


# -- device classes, from fake devices of every kind (no such hardware needed) -----------------


def _fake_device(kind, platform: str, vendor: str, name: str = "fake", float64: bool = True,
                 compile_error: str | None = None, version: str = "OpenCL 3.0"):
    """What device_classes and choose_device read of a pyopencl.Device; ``compile_error`` is
    what its compiler says to every program (None: it builds)."""
    return SimpleNamespace(type=kind, platform=SimpleNamespace(name=platform), vendor=vendor,
                           name=name, double_fp_config=7 if float64 else 0,
                           compile_error=compile_error, version=version)


@pytest.mark.parametrize("kind,platform,vendor,classes", [
    # A CPU is refined by its runtime (the compiler recipes tune for), not by who made it:
    # PoCL reports the CPU's vendor, and PoCL on an Intel CPU is no cpu-intel.
    (cl.device_type.CPU, "Portable Computing Language", "AuthenticAMD",
     ["cpu-pocl", "cpu", "any"]),
    (cl.device_type.CPU, "Portable Computing Language", "GenuineIntel",
     ["cpu-pocl", "cpu", "any"]),
    (cl.device_type.CPU, "Intel(R) OpenCL", "Intel(R) Corporation", ["cpu-intel", "cpu", "any"]),
    (cl.device_type.CPU, "Intel(R) CPU Runtime for OpenCL(TM) Applications",
     "Intel(R) Corporation", ["cpu-intel", "cpu", "any"]),
    (cl.device_type.GPU, "NVIDIA CUDA", "NVIDIA Corporation", ["gpu-nvidia", "gpu", "any"]),
    (cl.device_type.GPU, "AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.",
     ["gpu-amd", "gpu", "any"]),
    (cl.device_type.GPU, "Intel(R) OpenCL Graphics", "Intel(R) Corporation",
     ["gpu-intel", "gpu", "any"]),
    (cl.device_type.GPU, "Apple", "Apple", ["gpu-apple", "gpu", "any"]),
    (cl.device_type.GPU | cl.device_type.DEFAULT, "Portable Computing Language", "NVIDIA",
     ["gpu-pocl", "gpu-nvidia", "gpu", "any"]),
    (cl.device_type.ACCELERATOR, "Some FPGA SDK", "Someone", ["accelerator", "any"]),
    (cl.device_type.CPU, "Another CPU platform", "Someone", ["cpu", "any"]),
])
def test_device_classes_from_type_platform_and_vendor(kind, platform, vendor, classes):
    assert device_classes(_fake_device(kind, platform, vendor)) == classes


def test_device_classes_of_this_device_follow_the_same_rule(device):
    """Whatever device the tests run on: type, then the refinements its platform and vendor
    give, from the most specific to ``any``."""
    classes = device_classes(device)
    kind = ("gpu" if device.type & cl.device_type.GPU
            else "cpu" if device.type & cl.device_type.CPU else "accelerator")
    assert classes[-2:] == [kind, "any"]
    assert all(specific.startswith(f"{kind}-") for specific in classes[:-2])
    pocl = "portable computing language" in device.platform.name.lower()
    assert (f"{kind}-pocl" in classes) == pocl
    intel_runtime = device.platform.name.startswith("Intel(R) OpenCL")
    assert ("cpu-intel" in classes) == (kind == "cpu" and intel_runtime)


# -- choose_device: the rule, on fake platforms --------------------------------------------------


@pytest.fixture
def fake_platforms(monkeypatch):
    """Replace the OpenCL platforms choose_device sees with fakes; returns a setter."""
    def install(*platforms):
        monkeypatch.setattr(cl, "get_platforms", lambda: list(platforms))
    monkeypatch.setattr(devices, "compiler_problem", lambda device: device.compile_error)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    return install


def _fake_platform(name: str, *devices):
    return SimpleNamespace(name=name, get_devices=lambda: list(devices))


def test_gpu_preferred_then_cpu_and_float32_only_devices_skipped(fake_platforms):
    cpu = _fake_device(cl.device_type.CPU, "Portable Computing Language", "x", "a cpu")
    gpu = _fake_device(cl.device_type.GPU, "NVIDIA CUDA", "NVIDIA", "a gpu")
    gpu32 = _fake_device(cl.device_type.GPU, "Some GPU", "y", "single gpu", float64=False)
    fake_platforms(_fake_platform("Portable Computing Language", cpu),
                   _fake_platform("Some GPU", gpu32), _fake_platform("NVIDIA CUDA", gpu))
    assert choose_device() is gpu and choose_device("") is gpu
    assert choose_device("cpu") is cpu and choose_device("cpu-pocl") is cpu
    assert choose_device("gpu-nvidia") is gpu and choose_device("A GPU") is gpu
    with pytest.raises(ValueError, match=r"no OpenCL device matches 'single gpu'; available: "
                                         r"\['a cpu \(cpu-pocl\)', 'a gpu \(gpu-nvidia\)'\]"):
        choose_device("single gpu")  # no float64: not offered at all
    fake_platforms(_fake_platform("Portable Computing Language", cpu))
    assert choose_device() is cpu


def test_the_environment_variable_names_the_default_device(fake_platforms, monkeypatch):
    cpu = _fake_device(cl.device_type.CPU, "Portable Computing Language", "x", "a cpu")
    gpu = _fake_device(cl.device_type.GPU, "NVIDIA CUDA", "NVIDIA", "a gpu")
    fake_platforms(_fake_platform("P", cpu, gpu))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert choose_device() is cpu and choose_device(None) is cpu
    assert choose_device("gpu") is gpu  # a spec given beats the variable
    monkeypatch.setenv(DEVICE_ENV, "no such thing")
    with pytest.raises(ValueError, match="no OpenCL device matches 'no such thing'"):
        choose_device()


def test_oclgrind_is_never_chosen(fake_platforms):
    simulator = _fake_device(cl.device_type.CPU, "Oclgrind", "University of Bristol",
                             "Oclgrind Simulator")
    cpu = _fake_device(cl.device_type.CPU, "Portable Computing Language", "x", "a cpu")
    fake_platforms(_fake_platform("Oclgrind", simulator),
                   _fake_platform("Portable Computing Language", cpu))
    assert choose_device() is cpu
    with pytest.raises(ValueError, match="no OpenCL device matches 'oclgrind'"):
        choose_device("oclgrind")


def test_no_platform_or_no_float64_device_says_what_to_install(fake_platforms, monkeypatch):
    fake_platforms(_fake_platform("Some GPU", _fake_device(cl.device_type.GPU, "Some GPU", "y",
                                                           float64=False)))
    with pytest.raises(RuntimeError, match=r"no OpenCL device with float64 support found; "
                                           r"install 'pyopencl\[pocl\]'"):
        choose_device()

    def no_platform():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")
    monkeypatch.setattr(cl, "get_platforms", no_platform)
    with pytest.raises(RuntimeError, match=r"no OpenCL platform found .*PLATFORM_NOT_FOUND_KHR"
                                           r".*; install 'pyopencl\[pocl\]'"):
        choose_device()


ZEN5 = "error: unknown target CPU 'generic'"  # PoCL 3.0 (LLVM 14) on a CPU it does not know


def test_a_device_whose_compiler_fails_is_passed_over_for_one_that_works(fake_platforms):
    broken = _fake_device(cl.device_type.CPU, "Portable Computing Language", "AuthenticAMD",
                          "pthread-AMD EPYC", compile_error=ZEN5)
    working = _fake_device(cl.device_type.CPU, "Portable Computing Language", "AuthenticAMD",
                           "pthread-skylake-avx512-AMD EPYC")
    fake_platforms(_fake_platform("Portable Computing Language", broken),
                   _fake_platform("Portable Computing Language", working))
    with pytest.warns(devices.DeviceFallbackWarning, match="passing over 'pthread-AMD EPYC'"):
        assert choose_device() is working and choose_device("cpu") is working
    assert choose_device("skylake") is working
    with pytest.raises(RuntimeError, match=r"no usable OpenCL device matches 'pthread-AMD': "
                                           r"'pthread-AMD EPYC' .*unknown target CPU 'generic'.*"
                                           r"apt-get install pocl-opencl-icd"):
        choose_device("pthread-AMD")


def test_only_broken_compilers_is_an_error_naming_each_device_and_the_fix(fake_platforms):
    broken = _fake_device(cl.device_type.CPU, "Portable Computing Language", "AuthenticAMD",
                          "pthread-AMD EPYC", compile_error=ZEN5)
    gpu = _fake_device(cl.device_type.GPU, "Some GPU", "y", "a gpu",
                       compile_error="error: no such builtin")
    fake_platforms(_fake_platform("Portable Computing Language", broken),
                   _fake_platform("Some GPU", gpu))
    with pytest.raises(RuntimeError) as raised:
        choose_device()
    message = str(raised.value)
    assert message.startswith("no usable OpenCL device: 'a gpu' (Some GPU): error: no such "
                              "builtin; 'pthread-AMD EPYC' (Portable Computing Language): "
                              + ZEN5)
    assert "Intel's CPU OpenCL runtime" in message and "pocl-opencl-icd" in message


def test_the_probe_verdict_decides_whether_a_device_is_usable(monkeypatch):
    """compiler_problem reports the first failure of the probe (run in a child process) at
    the narrowest width: a scalar program that fails makes the device unusable."""
    fake = _fake_device(cl.device_type.CPU, "Fake platform for the probe", "x", "probe test cpu")
    fake.preferred_vector_width_double = 8
    failing = {name: ZEN5 for name in devices.registered_programs()}
    monkeypatch.setattr(devices, "probe_verdict", lambda device: failing)
    assert devices.compiler_problem(fake).endswith(ZEN5)
    with pytest.raises(RuntimeError, match="OpenCL device 'probe test cpu' .*cannot compile a "
                                           "kernel: .*error: unknown target CPU"):
        devices.usable(fake)


def test_the_device_the_suite_runs_on_compiles(device):
    assert devices.compiler_problem(device) is None
    assert choose_device(device) is device


# -- keys across processes, and one context per device ------------------------------------------


def test_device_key_names_the_device_again(device):
    key = device_key(device)
    assert key == (device.platform.name, device.name)
    assert device_from_key(key) == device
    assert pickle.loads(pickle.dumps(key)) == key  # what a worker process receives
    with pytest.raises(ValueError, match="no OpenCL device 'no such device' on platform"):
        device_from_key((device.platform.name, "no such device"))
    with pytest.raises(ValueError, match="on platform 'no such platform'"):
        device_from_key(("no such platform", device.name))


def test_one_context_per_device(device):
    context = context_for(device)
    assert context_for(device) is context
    assert context.devices == [device]


# -- the vector width recipes see ---------------------------------------------------------------


@pytest.mark.parametrize("setting,lanes", [(None, 8), ("native", 8), (" 4 ", 4), ("8", 8),
                                           ("1", 1), ("64", 64)])
def test_the_vector_width_is_the_devices_unless_overridden(monkeypatch, setting, lanes):
    avx512 = SimpleNamespace(preferred_vector_width_double=8)
    if setting is None:
        monkeypatch.delenv(VECTOR_DOUBLES_ENV, raising=False)
    else:
        monkeypatch.setenv(VECTOR_DOUBLES_ENV, setting)
    assert devices.vector_doubles(avx512) == lanes


@pytest.mark.parametrize("setting", ["3", "0", "-4", "128", "wide", "4.0"])
def test_a_vector_width_that_is_no_power_of_two_is_refused_by_name(monkeypatch, setting):
    monkeypatch.setenv(VECTOR_DOUBLES_ENV, setting)
    with pytest.raises(ValueError, match=rf"\$FMMLOOPY_VECTOR_DOUBLES must be a power of two "
                                         rf"from 1 to 64 or 'native', got '{setting}'"):
        devices.vector_doubles(SimpleNamespace(preferred_vector_width_double=4))
