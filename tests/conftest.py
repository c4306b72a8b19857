"""Shared fixtures: the OpenCL device every test runs on (PoCL's CPU device on CI)."""

import pyopencl as cl
import pytest

from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.tuning import registry


@pytest.fixture(scope="session")
def device() -> cl.Device:
    return choose_device()


@pytest.fixture(scope="session")
def queue(device) -> cl.CommandQueue:
    return cl.CommandQueue(context_for(device))


@pytest.fixture(scope="session", autouse=True)
def operator_cache_in_a_temporary_directory(tmp_path_factory):
    """Precomputed operators go to a throw-away cache, not the user's (subprocesses too)."""
    import os

    from fmmloopy.execution.cache_files import CACHE_ENV
    from fmmloopy.execution.precomputed import forget_operators

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("fmmloopy-cache"))
    forget_operators()
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(autouse=True)
def isolated_registry():
    """Recipes a test registers or loads do not leak into the next test."""
    registry.ensure_loaded()
    recipes, sources = list(registry.REGISTRY), dict(registry._LOADED)
    yield
    registry.REGISTRY[:] = recipes
    registry._LOADED.clear()
    registry._LOADED.update(sources)
