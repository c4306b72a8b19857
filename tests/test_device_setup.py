"""The set-up's device kernels equal the numpy set-up. Morton keys: bit for bit, on every point
set, depth and edge (faces, outside the cube). The V list by class: array for array, the
per-box counts and the boxes each class reads against the host's cut by class, the grouped
lists against :func:`~fmmloopy.maths.layouts.grouped_arguments` of the host's target-major
lists (any block size, any ascending target boxes), and a plan made with them evaluates
bitwise as the host's (the same kernels on the same lists)."""

import functools

import numpy as np
import pyopencl as cl
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer, sphere_surface, uniform_cube
from fmmloopy.checking.problems import check_problems
from fmmloopy.driver.builder import build_plan
from fmmloopy.driver.evaluation import evaluate_plan
from fmmloopy.execution import device_setup, kernel_cache
from fmmloopy.execution.device_setup import DeviceVClasses, device_point_keys
from fmmloopy.execution.kernel_arguments import box_list, box_list_arguments
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.maths.geometry import M2L_CLASSES
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.layouts import Grouped, grouped_arguments
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.setup_kernels import v_source_codes
from fmmloopy.tree.lists import _v_table, build_interaction_lists
from fmmloopy.tree.octree import MAX_DEPTH_LIMIT, build_tree, sort_points
from fmmloopy.tree.refinement import point_keys


def _two_clusters(rng):
    """An adaptive set: a dense cluster beside a sparse one (balance adds empty boxes)."""
    return np.vstack([0.01 * rng.standard_normal((1500, 3)),
                      rng.uniform(-1, 1, (300, 3)) + [3.0, 0.0, 0.0]])


@functools.cache
def _check_trees():
    return [problem.tree for problem in check_problems()]


TREES = {
    "cube": lambda rng: (build_tree(uniform_cube(4000, rng), n_crit=16)),
    "sphere": lambda rng: build_tree(sphere_surface(4000, rng), n_crit=16),
    "plummer, separate targets": lambda rng: build_tree(plummer(2500, rng), plummer(900, rng),
                                                        n_crit=12),
    "two clusters": lambda rng: build_tree(_two_clusters(rng), n_crit=8),
    "one box": lambda rng: build_tree(uniform_cube(5, rng), n_crit=16),
    # The five trees of `fmmloopy check` (adaptive, 3-6 levels, empty boxes, targets apart, a
    # periodic cell with its images).
    **{f"check problem {index}": (lambda rng, index=index: _check_trees()[index])
       for index in range(5)},
}


@pytest.fixture(scope="module", params=list(TREES))
def built(request, queue):
    tree = TREES[request.param](np.random.default_rng(5))
    lists = build_interaction_lists(tree)
    return tree, lists, DeviceVClasses(tree, lists, queue)


def test_source_codes_are_the_lists_transfer_table():
    """Each (octant, vector) code names the parent colleague slot and child octant that
    :mod:`fmmloopy.tree.lists` finds the vector at (its own table, built the other way)."""
    codes = v_source_codes()
    table = _v_table()  # (octant, slot, child octant) -> vector, -1 adjacent
    for octant in range(8):
        slots, children = np.nonzero(table[octant] >= 0)
        vectors = table[octant][slots, children]
        assert np.array_equal(codes[octant, vectors], 8 * slots + children)
        assert (codes[octant] >= 0).sum() == len(vectors)  # no other vector is in V
    assert (codes[8] == -1).all()


def test_counts_and_read_boxes_are_the_host_classes(built):
    tree, lists, device_v = built
    for name in M2L_CLASSES:
        starts, entries, _ = box_list(tree, lists, f"v_{name}")
        assert np.array_equal(device_v.entries_per_box(name), np.diff(starts)), name
        read = np.zeros(tree.nboxes, dtype=bool)
        read[entries] = True
        assert np.array_equal(device_v.source_boxes(name), read), name


@pytest.mark.parametrize(("block", "every", "ahead"), [
    *((block, every, "alone") for block in (1, 7, None, 100_000) for every in (1, 3)),
    (None, 1, "prepared"), (None, 3, "prepared"), (7, 1, "prepared otherwise")])
def test_grouped_lists_are_the_host_grouped_lists(built, block, every, ahead):
    """Made one class at a time, all at once ahead (``prepare``), or ahead for another block
    size (then made again alone): the host's arrays every time."""
    tree, lists, device_v = built
    requests = {}
    for name in M2L_CLASSES:
        starts = box_list(tree, lists, f"v_{name}")[0]
        targets = np.flatnonzero(np.diff(starts) > 0)[::every]  # a rank's part: a subset
        if len(targets):
            requests[name] = targets, block or -(-len(targets) // 4)
    if ahead != "alone":
        device_v.prepare({name: (targets, size + (ahead == "prepared otherwise"))
                          for name, (targets, size) in requests.items()})
    for name, (targets, size) in requests.items():
        starts, entries, indices = box_list(tree, lists, f"v_{name}")
        host = grouped_arguments(box_list_arguments(starts, entries, targets, indices), size)
        device = device_v.grouped(name, targets, size)
        for key in ("block_group_starts", "group_matrices", "group_pair_starts", "nblocks",
                    "ngroups", "npairs"):
            assert np.array_equal(device[key], host[key]), (name, key)
        for key in ("pair_targets", "pair_sources"):
            assert np.array_equal(device[key].get(), host[key]), (name, key)
        read = np.count_nonzero(device["source_marks"].get())
        assert read == len(np.unique(host["pair_sources"])), name
    assert requests or tree.nlevels <= 2


def test_a_plan_with_the_device_lists_evaluates_as_the_host_one(queue):
    rng = np.random.default_rng(8)
    sources = plummer(3000, rng)
    charges = rng.standard_normal(len(sources))
    tree = build_tree(sources, n_crit=24)
    lists = build_interaction_lists(tree)
    operators = get_operators(LAPLACE_3D, 4)
    device_v = DeviceVClasses(tree, lists, queue)
    results = []
    for given in (None, device_v):
        plan = build_plan(tree, lists, operators, LAPLACE_3D, queue, device_v=given)
        potential = tree.targets_to_user(evaluate_plan(plan, tree.sources_to_tree(charges)))
        results.append((potential, plan.traffic("m2l"),
                        sum(launch.work for launch in plan.launches if launch.step == "m2l")))
    (host, host_traffic, host_work), (device, device_traffic, device_work) = results
    assert np.array_equal(device, host)
    assert (device_traffic, device_work) == (host_traffic, host_work) and device_work > 0
    # And both are the FMM's sum: order 4 on Plummer points, as tests/test_driver.py bounds it.
    expected = direct_sum(LAPLACE_3D, sources, charges, sources)
    assert np.linalg.norm(device - expected) / np.linalg.norm(expected) < 5e-4


def test_a_corrupted_cached_set_up_kernel_is_rejected_and_made_again(queue, monkeypatch,
                                                                     no_shipped_kernels):
    """The set-up kernels' cache files get the kernel cache's checks: a corrupted one is
    rejected with a warning, generated again, and the lists are still the host's."""
    monkeypatch.setattr(device_setup, "_LAUNCHERS", {})
    device_setup._launcher("v_class_counts", queue.context)  # stored once generated
    path = kernel_cache.kernel_path(kernel_cache.setup_kernel_key("v_class_counts",
                                                                  queue.device))
    assert path.is_file()
    path.write_bytes(path.read_bytes().replace(b"counts", b"COUNTS", 1))
    monkeypatch.setattr(device_setup, "_LAUNCHERS", {})
    # A new context: nothing of this process's kernels is reused either.
    context = cl.Context([queue.device])
    tree = build_tree(plummer(2000, np.random.default_rng(2)), n_crit=12)
    lists = build_interaction_lists(tree)
    with pytest.warns(kernel_cache.KernelCacheWarning):
        device_v = DeviceVClasses(tree, lists, cl.CommandQueue(context))
    for name in M2L_CLASSES:
        starts = box_list(tree, lists, f"v_{name}")[0]
        assert np.array_equal(device_v.entries_per_box(name), np.diff(starts))
    assert kernel_cache.load(kernel_cache.setup_kernel_key("v_class_counts", queue.device))


def test_every_check_problem_is_among_the_trees():
    assert sum(name.startswith("check problem") for name in TREES) == len(_check_trees())


def test_an_fmm_with_the_device_lists_never_makes_the_host_v_list():
    """The host's V list is made at first use: a Laplace FMM (one strength vector, shipped
    recipes) whose M2L walks the grouped layout (the CPU recipes') takes every V launch from
    the device and never asks for it; its sum is right. The device builds the grouped layout
    only: a recipe of the target-major layout (the GPU recipes') takes the host's lists."""
    rng = np.random.default_rng(9)
    sources = uniform_cube(3000, rng)
    charges = rng.standard_normal(len(sources))
    fmm = fmmloopy.Fmm(sources, order=4, n_crit=24)
    potential = fmm(charges)
    m2l_layouts = {type(launch.kernel.layout) for launch in fmm.plan.launches
                   if launch.kernel.operator == "m2l"}
    assert len(m2l_layouts) == 1
    assert fmm.lists.v.made == (m2l_layouts != {Grouped})
    expected = direct_sum(LAPLACE_3D, sources, charges, sources)
    # Order 4: a few 1e-5 on uniform points (docs/fmm.md); the bound leaves room.
    assert np.linalg.norm(potential - expected) / np.linalg.norm(expected) < 5e-4
    # Asked for, it is made; its size is what the memory estimate counted from the device.
    assert int(np.diff(fmm.lists.v_starts).sum()) == fmm.points_setup.sizes["list_entries"]["v"]
    assert fmm.lists.v.made


@pytest.mark.parametrize("depth", [0, 1, 9, 20, MAX_DEPTH_LIMIT])
def test_device_keys_are_the_host_keys(queue, depth):
    rng = np.random.default_rng(depth)
    keys_of = device_point_keys(queue)
    lo, half_width = np.array([-1.0, -1.0, -1.0]), 1.0
    edges = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0],
                      [-1.5, 0.3, 2.0], [np.nextafter(1.0, 0), -np.nextafter(1.0, 0), 0.5]])
    for points in (uniform_cube(20_000, rng), sphere_surface(20_000, rng),
                   0.01 * plummer(20_000, rng), _two_clusters(rng) / 4, edges):
        assert np.array_equal(keys_of(points, lo, half_width, depth),
                              point_keys(points, lo, half_width, depth))
    assert keys_of(np.zeros((0, 3)), lo, half_width, depth).shape == (0,)


def test_points_sorted_with_device_keys_are_sorted_as_on_the_host(queue):
    rng = np.random.default_rng(4)
    sources, targets = plummer(5000, rng), uniform_cube(3000, rng)
    host = sort_points(sources, targets)
    device = sort_points(sources, targets, keys_of=device_point_keys(queue))
    assert np.array_equal(device.source_order, host.source_order)
    assert np.array_equal(device.target_order, host.target_order)
    assert np.array_equal(device.builder.all_keys, host.builder.all_keys)
