"""Memory estimates and limits, and device errors: a problem that cannot fit is refused before
anything large is allocated, with the estimate in the message; OpenCL failures (allocation, out of
resources) are explained and name what failed. Limits are triggered cheaply: a ``memory_limit``,
or the functions that read the host's and the device's memory replaced by small numbers."""

import re
import warnings

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import fmmloopy
from fmmloopy import fmm as fmm_module
from fmmloopy import resources
from fmmloopy.cli import main
from fmmloopy.distributions import plummer, sphere_surface
from fmmloopy.execution import compiled_operator
from fmmloopy.recipes import RecipeError
from fmmloopy.resources import (
    ResourceLimitError,
    allocated_device_bytes,
    estimate_memory,
    explain_opencl_error,
)

ORDER = 4
POINTS = np.random.default_rng(80).random((600, 3))


def _refuse_to_build(monkeypatch, tree=True):
    """Make precomputing operators (and building the tree) fail the test: a refusal comes
    first. Before the tree the estimate is a lower bound (full leaves, no lists)."""
    def never(*args, **kwargs):
        raise AssertionError("the problem should have been refused before this")
    if tree:
        monkeypatch.setattr(fmm_module, "build_tree", never)
    monkeypatch.setattr(fmm_module, "get_operators", never)


@pytest.mark.parametrize("name,points,order,n_crit", [
    ("sphere", sphere_surface(4000, np.random.default_rng(81)), 6, 32),
    ("plummer", plummer(4000, np.random.default_rng(82)), 4, 16),
    ("coincident", np.full((300, 3), 0.5), 4, 16),
])
def test_device_estimate_matches_what_the_plan_allocates(name, points, order, n_crit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coincident: max_depth reached
        fmm = fmmloopy.Fmm(points, order=order, n_crit=n_crit)
    allocated = allocated_device_bytes(fmm.plan)
    estimate = fmm.memory_estimate
    assert allocated <= estimate.device_bytes < 1.3 * allocated, (allocated, estimate.describe())
    assert estimate.host_bytes > 0 and "operators" in estimate.host


def test_estimate_grows_with_boxes_entries_and_order():
    small = estimate_memory(nsources=1000, ntargets=1000, targets_are_sources=True, order=6,
                            nboxes=100, nlevels=4, list_entries={"v": 1000})
    more_boxes = estimate_memory(nsources=1000, ntargets=1000, targets_are_sources=True,
                                 order=6, nboxes=1000, nlevels=4, list_entries={"v": 1000})
    higher = estimate_memory(nsources=1000, ntargets=1000, targets_are_sources=True, order=12,
                             nboxes=100, nlevels=4, list_entries={"v": 1000})
    assert small.device_bytes < more_boxes.device_bytes < higher.device_bytes
    # Order 12: n_e = 728, 316 M2L matrices of 728**2 float64 = 1.34 GB, on each side.
    assert higher.device["matrices"] > 316 * 728 ** 2 * 8
    assert higher.largest_buffer == ("M2L matrices", 316 * 728 ** 2 * 8)


def test_memory_limit_refuses_with_the_estimate_before_building(monkeypatch):
    _refuse_to_build(monkeypatch)
    with pytest.raises(ResourceLimitError) as refused:
        fmmloopy.Fmm(POINTS, order=ORDER, memory_limit=1e6)
    message = str(refused.value)
    assert isinstance(refused.value, MemoryError)
    assert re.search(r"the FMM of 600 sources and 600 targets at order 4 \(n_crit 150\) needs "
                     r"an estimated [0-9.]+ GB of host memory, including the device buffers "
                     r"of '.*', which live in host memory, more than the memory_limit given "
                     r"\(0\.001 GB\); lower the order, raise n_crit", message), message
    assert "Estimate: host" in message and "operators" in message


def test_high_order_refused_when_the_host_has_too_little(monkeypatch):
    """Order 16: 316 M2L matrices of 1352**2 float64 are 4.6 GB on each side."""
    _refuse_to_build(monkeypatch)
    monkeypatch.setattr(resources, "available_host_memory", lambda: 4e9)
    with pytest.raises(ResourceLimitError, match=r"at order 16 \(n_crit 150\) needs an estimated "
                                                 r"[5-9]\.\d+ GB of host memory.*more than the "
                                                 r"host memory available now \(4 GB\)"):
        fmmloopy.Fmm(POINTS, order=16)


def test_refused_when_the_device_memory_is_too_small(monkeypatch):
    """n_crit 20: a tree of three levels with V lists, so the M2L matrices go to the device."""
    _refuse_to_build(monkeypatch, tree=False)
    monkeypatch.setattr(resources, "device_memory_limits", lambda device: (1e6, 1e9))
    with pytest.raises(ResourceLimitError, match=r"needs an estimated [0-9.]+ GB on device "
                                                 r"'.*', more than its global memory "
                                                 r"\(0\.001 GB\)"):
        fmmloopy.Fmm(POINTS, order=ORDER, n_crit=20)
    monkeypatch.setattr(resources, "device_memory_limits", lambda device: (1e12, 1e6))
    with pytest.raises(ResourceLimitError, match=r"needs a buffer of 0\.00793 GB \(M2L "
                                                 r"matrices\) on device '.*', more than it "
                                                 r"allocates at once \(max_mem_alloc_size "
                                                 r"0\.001 GB\)"):
        fmmloopy.Fmm(POINTS, order=ORDER, n_crit=20)


def test_refused_after_the_tree_when_the_boxes_do_not_fit(monkeypatch):
    """Before the tree the estimate is a lower bound (full leaves, no lists); with the real
    tree and lists it is checked again before the operators and the plan."""
    points = plummer(3000, np.random.default_rng(83))
    before = resources.estimate_before_tree(3000, 3000, True, ORDER, 4)
    full = fmmloopy.Fmm(points, order=ORDER, n_crit=4).memory_estimate
    assert before.host_bytes < full.host_bytes
    limit = (before.host_bytes + full.host_bytes + before.device_bytes + full.device_bytes) / 2
    monkeypatch.setattr(fmm_module, "get_operators", _fail)
    with pytest.raises(ResourceLimitError, match="needs an estimated"):
        fmmloopy.Fmm(points, order=ORDER, n_crit=4, memory_limit=limit)


def _fail(*args, **kwargs):
    raise AssertionError("refused too late")


def test_command_line_prints_the_refusal_in_one_line(monkeypatch, capsys):
    _refuse_to_build(monkeypatch)
    monkeypatch.setattr(resources, "available_host_memory", lambda: 1e9)
    assert main(["bench", "--n", "1000", "--order", "16", "--repeats", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("fmmloopy bench: error: the FMM of 1000 sources and 1000 targets at "
                            "order 16 (n_crit 150) needs an estimated")


def test_device_allocation_failure_is_explained_with_the_estimate(monkeypatch, device):
    """A real OpenCL failure: a buffer one byte over max_mem_alloc_size (refused at once)."""
    def build_plan_too_large(tree, lists, operators, kernel, queue, recipes, verify):
        cla.empty(queue, (device.max_mem_alloc_size // 8 + 1,), np.float64)

    monkeypatch.setattr(fmm_module, "build_plan", build_plan_too_large)
    with pytest.raises(ResourceLimitError) as failed:
        fmmloopy.Fmm(POINTS, order=ORDER)
    assert re.search(r"allocating the device buffers of the FMM of 600 sources .* on '.*' "
                     r"failed: a buffer is larger than the device allocates at once "
                     r"\([0-9.]+ GB\) \(OpenCL: .*INVALID_BUFFER_SIZE\); the estimate was host",
                     str(failed.value)), str(failed.value)


def test_out_of_resources_in_a_kernel_names_operator_and_recipe(monkeypatch, queue):
    """OUT_OF_RESOURCES cannot be provoked on PoCL's CPU device: the launch raises it here."""
    fmmloopy.Fmm(POINTS[:50], order=ORDER, recipes="cpu")  # builds the p2p executor
    p2p = compiled_operator("p2p", queue.device, recipe="cpu")

    def out_of_resources(*args, **kwargs):
        raise cl.RuntimeError(cl._cl._ErrorRecord(
            "clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES", cl.status_code.OUT_OF_RESOURCES,
            "clEnqueueNDRangeKernel"))

    monkeypatch.setitem(p2p._executors, queue.context.int_ptr, out_of_resources)
    with pytest.raises(RecipeError) as failed:
        fmmloopy.Fmm(POINTS, order=ORDER, recipes="cpu")
    assert re.search(r"running operator 'p2p' under recipe 'cpu' \(function pairwise_cpu in "
                     r".*transforms/cpu\.py\) on '.*' failed: the device ran out of resources "
                     r"for this kernel \(registers, local or private memory of a work-group, or "
                     r"memory\); try a recipe with smaller work-groups or less local memory "
                     r"\(OpenCL: clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES",
                     str(failed.value)), str(failed.value)


@pytest.mark.parametrize("status,words", [
    ("OUT_OF_RESOURCES", "ran out of resources"),
    ("MEM_OBJECT_ALLOCATION_FAILURE", "could not allocate"),
    ("OUT_OF_HOST_MEMORY", "out of host memory"),
    ("INVALID_WORK_GROUP_SIZE", "work-group size is not allowed"),
    ("INVALID_BUFFER_SIZE", "larger than the device allocates at once"),
    ("BUILD_PROGRAM_FAILURE", "compiler rejected"),
    ("INVALID_BUILD_OPTIONS", "build options"),
])
def test_opencl_statuses_are_explained(device, status, words):
    error = cl.RuntimeError(cl._cl._ErrorRecord(f"x failed: {status}",
                                                getattr(cl.status_code, status), "x"))
    assert words in explain_opencl_error(error, device)


def test_other_errors_get_no_explanation(device):
    assert explain_opencl_error(ValueError("no"), device) is None
    error = cl.RuntimeError(cl._cl._ErrorRecord("x failed", cl.status_code.INVALID_VALUE, "x"))
    assert explain_opencl_error(error, device) is None


def test_available_host_memory_is_read():
    available = resources.available_host_memory()
    assert available is not None and 0 < available
