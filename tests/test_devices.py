"""Device selection: what ``device=`` accepts, and a clear error for anything else."""

import numpy as np
import pyopencl as cl
import pytest

import fmmloopy
from fmmloopy.base.devices import choose_device, device_classes

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
