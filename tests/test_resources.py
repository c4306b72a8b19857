"""Memory estimates and limits, and device errors: a problem that cannot fit is refused before
anything large is allocated, with the estimate in the message; OpenCL failures (allocation, out of
resources) are explained and name what failed. Limits are triggered cheaply: a ``memory_limit``,
or the functions that read the host's and the device's memory replaced by small numbers."""

import re
import threading
import warnings

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import fmmloopy
from fmmloopy.api import setup as set_up_pipeline
from fmmloopy.api import tree_operators
from fmmloopy.base.distributions import plummer, sphere_surface
from fmmloopy.cli.main import main
from fmmloopy.driver.memory import estimate_before_tree, estimate_memory
from fmmloopy.execution import resources
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.opencl_errors import explain_opencl_error
from fmmloopy.execution.precomputed import level_set
from fmmloopy.execution.resources import (
    ResourceLimitError,
    allocated_device_bytes,
    host_bytes_needed,
    uses_host_memory,
)
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.tuning.recipe import RecipeError

ORDER = 4
POINTS = np.random.default_rng(80).random((600, 3))


def _refuse_to_build(monkeypatch, tree=True):
    """Make precomputing operators and building the tree (``tree``), or else building the
    plan, fail the test: a refusal comes first. Before the tree the estimate is a lower bound
    (full leaves, no lists) that counts the operators in full."""
    def never(*args, **kwargs):
        raise AssertionError("the problem should have been refused before this")
    if tree:
        monkeypatch.setattr(set_up_pipeline, "sort_points", never)
        monkeypatch.setattr(set_up_pipeline, "build_tree_from", never)
        monkeypatch.setattr(set_up_pipeline, "get_operators", never)
    monkeypatch.setattr(set_up_pipeline, "build_plan", never)


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
    # Order 12: n_e = 728. Without the operators' ranks, the compressed M2L's are bounded by
    # n_e: 316 cores of 728**2 float64 in 18 classes, the largest (far_xp, far_xn: 40 vectors)
    # the largest single allocation (0.17 GB), its rows padded to whole vectors of 16 doubles
    # (728 -> 736) as the grouped layout may pad them on the device.
    assert higher.device["matrices"] > 316 * 728 ** 2 * 8
    assert higher.largest_buffer == ("M2L matrices", 40 * 736 * 728 * 8)


def test_memory_limit_refuses_with_the_estimate_before_building(monkeypatch, device):
    _refuse_to_build(monkeypatch)
    with pytest.raises(ResourceLimitError) as refused:
        fmmloopy.Fmm(POINTS, order=ORDER, memory_limit=1e6)
    message = str(refused.value)
    assert isinstance(refused.value, MemoryError)
    # A CPU device's buffers are host memory, and the refusal says they were counted; a GPU's
    # are not.
    including = (r", including the device buffers of '.*', which live in host memory"
                 if uses_host_memory(device) else "")
    assert re.search(r"the FMM of 600 sources and 600 targets at order 4 \(n_crit auto\) needs "
                     rf"an estimated [0-9.]+ GB of host memory{including}, more than the "
                     r"memory_limit given \(0\.001 GB\); lower the order, raise n_crit",
                     message), message
    assert "Estimate: host" in message and "operators" in message


def test_high_order_refused_when_the_host_has_too_little(monkeypatch):
    """Order 16: 316 M2L matrices of 1352**2 float64 are 4.6 GB on each side, and before the
    precomputation the compressed M2L's ranks are only known to be at most n_e: as much
    again."""
    _refuse_to_build(monkeypatch)
    monkeypatch.setattr(resources, "available_host_memory", lambda: 4e9)
    with pytest.raises(ResourceLimitError,
                       match=r"at order 16 \(n_crit auto\) needs an estimated "
                             r"(9\.\d+|1[0-4](\.\d+)?) GB of host memory.*more than the host "
                             r"memory available now \(4 GB\)"):
        fmmloopy.Fmm(POINTS, order=16)


def test_refused_when_the_device_memory_is_too_small(monkeypatch):
    """n_crit 20: a tree of three levels with V lists, so the M2L matrices go to the device."""
    _refuse_to_build(monkeypatch, tree=False)
    monkeypatch.setattr(resources, "device_memory_limits", lambda device: (1e6, 1e9))
    with pytest.raises(ResourceLimitError, match=r"needs an estimated [0-9.]+ GB on device "
                                                 r"'.*', more than its global memory "
                                                 r"\(0\.001 GB\)"):
        fmmloopy.Fmm(POINTS, order=ORDER, n_crit=20)
    monkeypatch.setattr(resources, "device_memory_limits", lambda device: (1e12, 1e5))
    # The largest class of the compressed M2L at order 4 (middle_xp: 25 cores of 32 x 32
    # float64, 0.000205 GB), counted with its rows padded to whole vectors of 16 doubles, as a
    # grouped layout may pad them on the device.
    with pytest.raises(ResourceLimitError, match=r"needs a buffer of 0\.000246 GB \(M2L "
                                                 r"matrices\) on device '.*', more than it "
                                                 r"allocates at once \(max_mem_alloc_size "
                                                 r"0\.0001 GB\)"):
        fmmloopy.Fmm(POINTS, order=ORDER, n_crit=20)


def test_refused_after_the_tree_when_the_boxes_do_not_fit(monkeypatch, device):
    """Before the tree the estimate is a lower bound (full leaves, no lists); with the real
    tree and lists it is checked again before the plan."""
    points = plummer(3000, np.random.default_rng(83))
    before = host_bytes_needed(estimate_before_tree(3000, 3000, True, ORDER, 4), device)
    full = host_bytes_needed(fmmloopy.Fmm(points, order=ORDER, n_crit=4).memory_estimate, device)
    assert before < full
    limit = (before + full) / 2
    monkeypatch.setattr(set_up_pipeline, "build_plan", _fail)
    with pytest.raises(ResourceLimitError, match="needs an estimated"):
        fmmloopy.Fmm(points, order=ORDER, n_crit=4, memory_limit=limit)


def _fail(*args, **kwargs):
    raise AssertionError("refused too late")


def test_the_sets_per_level_of_a_kernel_without_homogeneity_are_checked_before_computing(
        monkeypatch, device):
    """Yukawa (and Helmholtz, complex) have a set of operators per level of the tree: the check
    before the tree counts one set (it does not know the levels), the one before the sets are
    computed counts every level's, complex values twice (a Helmholtz FMM of order 14 on 10^4
    points, three sets, was killed for memory where the check counted one real set)."""
    points = plummer(3000, np.random.default_rng(83))
    built = fmmloopy.Fmm(points, kernel="yukawa:kappa=2", order=ORDER, n_crit=16)
    sets = len(built.operators.sets)
    assert sets >= 3
    # Before they are computed the ranks are the first level's set's (the widest boxes').
    first = level_set(built.options.kernel, ORDER,
                      built.tree.level_half_widths[FIRST_EXPANSION_LEVEL])
    before = host_bytes_needed(estimate_before_tree(3000, 3000, True, ORDER, 16), device)
    every_level = host_bytes_needed(estimate_memory(
        nsources=3000, ntargets=3000, targets_are_sources=True, order=ORDER,
        nboxes=built.tree.nboxes, nlevels=built.tree.nlevels, operator_sets=sets,
        ranks=first.ranks()), device)
    assert before < every_level
    monkeypatch.setattr(tree_operators, "level_operators", _fail)
    with pytest.raises(ResourceLimitError, match=r"needs an estimated .*operators"):
        fmmloopy.Fmm(points, kernel="yukawa:kappa=2", order=ORDER, n_crit=16,
                     memory_limit=(before + every_level) / 2)
    # Complex values count twice before the tree: Helmholtz's one set against Yukawa's.
    real, complex_ = (host_bytes_needed(estimate_before_tree(
        3000, 3000, True, ORDER, 16, complex_values=values), device) for values in (False, True))
    assert complex_ > 1.5 * real


@pytest.mark.parametrize("stage", ["sort_points", "build_interaction_lists"])
def test_host_memory_running_out_in_any_stage_is_a_resource_limit_error(monkeypatch, stage):
    """A MemoryError anywhere in the set-up (sorting the points, before the kernel thread
    starts, or building the lists, with it running) comes out as ResourceLimitError with the
    estimate, and the kernel thread is stopped."""
    def out_of_memory(*args, **kwargs):
        raise MemoryError("planted")
    monkeypatch.setattr(set_up_pipeline, stage, out_of_memory)
    with pytest.raises(ResourceLimitError, match="ran out of host memory.*planted.*estimate"):
        fmmloopy.Fmm(plummer(2000, np.random.default_rng(5)), order=ORDER, n_crit=40)
    assert not [thread for thread in threading.enumerate()
                if thread.name == "fmmloopy kernel preparation"]


def test_command_line_prints_the_refusal_in_one_line(monkeypatch, capsys):
    _refuse_to_build(monkeypatch)
    monkeypatch.setattr(resources, "available_host_memory", lambda: 1e9)
    assert main(["bench", "--n", "1000", "--order", "16", "--repeats", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("fmmloopy bench: error: the FMM of 1000 sources and 1000 targets at "
                            "order 16 (n_crit auto) needs an estimated")


def test_device_allocation_failure_is_explained_with_the_estimate(monkeypatch, device):
    """A real OpenCL failure: a buffer one byte over max_mem_alloc_size, refused at once by
    PoCL. NVIDIA's OpenCL creates it (its memory is taken at first use): there the failure PoCL
    reports is raised by hand, so that the explanation is tested on every device."""
    def build_plan_too_large(tree, lists, operators, kernel, queue, recipes, verify, **options):
        cla.empty(queue, (device.max_mem_alloc_size // 8 + 1,), np.float64)
        raise cl.MemoryError(cl._cl._ErrorRecord(
            "clCreateBuffer failed: INVALID_BUFFER_SIZE", cl.status_code.INVALID_BUFFER_SIZE,
            "clCreateBuffer"))

    monkeypatch.setattr(set_up_pipeline, "build_plan", build_plan_too_large)
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


def test_a_build_log_refusing_the_options_is_explained_as_such(device):
    """NVIDIA's OpenCL reports an unknown build option as a failed build whose log (part of
    the error's text) names the option; a failed build whose log does not stays a build
    failure."""
    def build_failure(log):
        return cl.RuntimeError(cl._cl._ErrorRecord(
            f"clBuildProgram failed: BUILD_PROGRAM_FAILURE\n{log}",
            cl.status_code.BUILD_PROGRAM_FAILURE, "clBuildProgram"))
    refused = build_failure('Error in processing command line: Don\'t understand command line '
                            'argument "-cl-no-such-option"!')
    assert explain_opencl_error(refused, device) == (
        "the recipe added build options this OpenCL compiler does not accept (build log below)")
    broken = build_failure("<source>:3:1: error: unknown type name 'this'")
    assert explain_opencl_error(broken, device).startswith(
        "the OpenCL compiler rejected the code generated")


def test_other_errors_get_no_explanation(device):
    assert explain_opencl_error(ValueError("no"), device) is None
    error = cl.RuntimeError(cl._cl._ErrorRecord("x failed", cl.status_code.INVALID_VALUE, "x"))
    assert explain_opencl_error(error, device) is None


def test_available_host_memory_is_read():
    available = resources.available_host_memory()
    assert available is not None and 0 < available


UNLIMITED_V1 = "9223372036854771712"  # what cgroup v1 reports for "no limit"


def _cgroup_available(tmp_path, proc_lines, files):
    """``_cgroup_available`` on a fake ``/sys/fs/cgroup`` holding ``files`` (path -> content, a
    directory where the content is None) and a fake ``/proc/self/cgroup`` of ``proc_lines``
    (no such file if None)."""
    root = tmp_path / "cgroup"
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            (root / path).mkdir()
        else:
            (root / path).write_text(f"{content}\n")
    proc = tmp_path / "proc_self_cgroup"
    if proc_lines is not None:
        proc.write_text("".join(f"{line}\n" for line in proc_lines))
    return resources._cgroup_available(root=root, proc_cgroup=proc)


V2_JOB = ["0::/user.slice/job.scope"]


@pytest.mark.parametrize("files,expected", [
    ({"user.slice/job.scope/memory.max": 4000, "user.slice/job.scope/memory.current": 1000,
      "user.slice/memory.max": "max", "user.slice/memory.current": 5000}, 3000.0),
    ({"user.slice/job.scope/memory.max": "max", "user.slice/job.scope/memory.current": 1000,
      "user.slice/memory.max": 10000, "user.slice/memory.current": 8000}, 2000.0),
    ({"user.slice/job.scope/memory.max": 5000, "user.slice/job.scope/memory.current": 1000,
      "user.slice/memory.max": 10000, "user.slice/memory.current": 8000,
      "memory.max": 100000, "memory.current": 9000}, 2000.0),
    ({"user.slice/job.scope/memory.max": 1000, "user.slice/job.scope/memory.current": 1500},
     0.0),
    ({"user.slice/job.scope/memory.max": "max", "user.slice/job.scope/memory.current": 1000,
      "user.slice/memory.max": "max", "user.slice/memory.current": 8000,
      "memory.max": "max", "memory.current": 9000}, None),
    ({"user.slice/job.scope/memory.max": 4000, "user.slice/job.scope/memory.current": None,
      "memory.max": 8000, "memory.current": 3000}, 4000.0),
], ids=["limit at the leaf", "limit only at a parent", "smallest headroom wins", "over the limit",
        "max everywhere", "usage unreadable: the limit bounds the headroom"])
def test_cgroup_v2_limits_along_the_process_path_apply(tmp_path, files, expected):
    """(only /sys/fs/cgroup/memory.max was read, not the process's own cgroup or its parents)"""
    assert _cgroup_available(tmp_path, V2_JOB, files) == expected


def test_cgroup_v1_memory_controller_path_is_read(tmp_path):
    proc = ["9:name=systemd:/", "5:cpu,cpuacct:/other", "4:memory:/process_api/b24",
            "0::/"]
    files = {"memory/process_api/b24/memory.limit_in_bytes": 6000,
             "memory/process_api/b24/memory.usage_in_bytes": 1000,
             "memory/process_api/memory.limit_in_bytes": UNLIMITED_V1,
             "memory/process_api/memory.usage_in_bytes": 3000,
             "memory/memory.limit_in_bytes": UNLIMITED_V1,
             "memory/memory.usage_in_bytes": 9000,
             "other/memory.max": 10}  # not the memory controller's path
    assert _cgroup_available(tmp_path, proc, files) == 5000.0
    files["memory/process_api/b24/memory.limit_in_bytes"] = UNLIMITED_V1
    assert _cgroup_available(tmp_path, proc, files) is None


TOP_LEVEL = {"memory.max": 8000, "memory.current": 3000}


@pytest.mark.parametrize("proc,files", [
    (None, TOP_LEVEL),
    (["0::/docker/abc"], TOP_LEVEL),
    (["0::/../elsewhere"], TOP_LEVEL | {"elsewhere/memory.max": 10,
                                        "elsewhere/memory.current": 0}),
    (V2_JOB, TOP_LEVEL | {"user.slice/job.scope/memory.max": None,
                          "user.slice/job.scope/memory.current": 1}),
    (V2_JOB, TOP_LEVEL | {"user.slice/job.scope/memory.max": "junk",
                          "user.slice/job.scope/memory.current": 1}),
    (["0:", "garbage", "4:memory"], {"memory/memory.limit_in_bytes": 8000,
                                    "memory/memory.usage_in_bytes": 3000}),
], ids=["no /proc/self/cgroup", "path not mounted here", "path outside the namespace",
        "limit file unreadable", "limit not a number", "garbled lines"])
def test_cgroup_files_missing_or_unreadable_fall_back_to_the_top_level(tmp_path, proc, files):
    assert _cgroup_available(tmp_path, proc, files) == 5000.0


def test_cgroup_nothing_readable_is_no_limit(tmp_path):
    assert _cgroup_available(tmp_path, None, {}) is None
    (tmp_path / "proc_self_cgroup").write_bytes(b"0::/\xff\xfe\n")
    assert resources._cgroup_available(root=tmp_path / "absent",
                                       proc_cgroup=tmp_path / "proc_self_cgroup") is None
