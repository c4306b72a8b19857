"""Shared fixtures: the OpenCL device every test runs on (PoCL's CPU device on CI)."""

import pyopencl as cl
import pytest

from fmmloopy.devices import choose_device, context_for


@pytest.fixture(scope="session")
def device() -> cl.Device:
    return choose_device()


@pytest.fixture(scope="session")
def queue(device) -> cl.CommandQueue:
    return cl.CommandQueue(context_for(device))
