"""fmmloopy.driver: the launches of a plan, the boxes each serves, the buffers they share."""

import functools

import numpy as np
import pytest

from fmmloopy.base.distributions import plummer
from fmmloopy.driver.buffers import evaluation_buffer_shapes
from fmmloopy.driver.builder import build_plan
from fmmloopy.driver.evaluation import evaluate_plan
from fmmloopy.driver.selection import launch_order, served_boxes
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.maths.geometry import M2L_CLASSES, transfer_class
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL, Boxes
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.scheme import KIFMM
from fmmloopy.tree.lists import build_interaction_lists
from fmmloopy.tree.octree import build_tree

ORDER = 4


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(11)
    sources = plummer(1500, rng)
    targets = plummer(700, rng)
    tree = build_tree(sources, targets, n_crit=20)
    return sources, targets, tree, build_interaction_lists(tree)


def _brute_force(tree, lists, boxes: Boxes) -> set[int]:
    """The boxes a selection means, box by box."""
    chosen = set()
    for box in range(tree.nboxes):
        counts = tree.box_source_counts if boxes.side == "sources" else tree.box_target_counts
        if counts[box] == 0 or tree.box_levels[box] < boxes.min_level:
            continue
        if boxes.leaves is not None and bool(tree.box_is_leaf[box]) != boxes.leaves:
            continue
        if boxes.listed is not None and box not in _listed(lists, boxes.listed, "targets"):
            continue
        if boxes.source_in is not None and box not in _listed(lists, boxes.source_in,
                                                              "sources"):
            continue
        chosen.add(box)
    return chosen


@functools.cache
def _listed(lists, name: str, side: str) -> frozenset[int]:
    """The target (row) or source (entry) boxes of list ``name`` (``v_<class>``: the V entries
    whose transfer vector is in the class), entry by entry."""
    base, _, kind = name.partition("_")
    starts, entries = getattr(lists, f"{base}_starts"), getattr(lists, f"{base}_lists")
    members = set(transfer_class(kind)) if kind else None
    found = set()
    for row in range(len(starts) - 1):
        for e in range(starts[row], starts[row + 1]):
            if members is None or int(lists.v_transfer[e]) in members:
                found.add(row if side == "targets" else int(entries[e]))
    return frozenset(found)


def test_served_boxes_match_their_definition(problem):
    _, _, tree, lists = problem
    for step in KIFMM.steps.values():
        mask = served_boxes(tree, lists, step.boxes)
        assert set(np.flatnonzero(mask)) == _brute_force(tree, lists, step.boxes), step.name


def test_launches_respect_the_dependencies(problem):
    """Parents after children going up, children after parents going down, every expansion
    written before it is read."""
    _, _, tree, lists = problem
    launches = [(step.name, boxes) for step, boxes in launch_order(KIFMM, tree, lists)
                if len(boxes)]
    names = [name for name, _ in launches]
    assert names[:2] == ["p2m", "uc2e"] and names[-3:] == ["l2p", "m2p", "p2p"]
    m2m_levels = [int(tree.box_levels[b[0]]) for n, b in launches if n == "m2m"]
    l2l_levels = [int(tree.box_levels[b[0]]) for n, b in launches if n == "l2l"]
    assert m2m_levels == sorted(m2m_levels, reverse=True)
    assert l2l_levels == sorted(l2l_levels) and min(l2l_levels) == FIRST_EXPANSION_LEVEL + 1
    written = {"strengths"}
    for name in names:
        step = KIFMM.steps[name]
        assert step.source in written, f"{name} reads {step.source} before it is written"
        written.add(step.target)


def test_plan_evaluates_the_sum_and_allocates_its_buffers(problem, queue):
    sources, targets, tree, lists = problem
    operators = get_operators(LAPLACE_3D, ORDER)
    plan = build_plan(tree, lists, operators, LAPLACE_3D, queue)
    shapes = evaluation_buffer_shapes(operators.expansion, operators.ranks(), tree.nboxes,
                                      tree.nsources, tree.ntargets)
    assert {name: buffer.shape for name, buffer in plan.buffers.items()} == shapes
    charges = np.random.default_rng(3).uniform(-1, 1, len(sources))
    potential = tree.targets_to_user(evaluate_plan(plan, tree.sources_to_tree(charges)))
    expected = direct_sum(LAPLACE_3D, sources, charges, targets)
    error = np.linalg.norm(potential - expected) / np.linalg.norm(expected)
    # Order 4 reaches 4.5e-5 on the sphere with charges in [-1, 1] (docs/fmm.md); the clustered
    # Plummer points with separate targets lose up to a few times that.
    assert error < 5e-4, error
    assert set(plan.eval_seconds) >= {step.operator for step in KIFMM.steps.values()} | {"total"}


def test_pooled_buffers_share_an_allocation_and_start_from_zero(problem, queue):
    """The compressed M2L's per-class buffers are views of two allocations (as large as the
    largest of each pool); each is zeroed just before the first launch that uses it, which
    comes after the last launch of the previous class that uses its pool-mate; and a second
    call, on buffers the first left full, gives the same potentials."""
    sources, _, tree, lists = problem
    plan = build_plan(tree, lists, get_operators(LAPLACE_3D, ORDER), LAPLACE_3D, queue)
    pools = KIFMM.buffer_pools()
    allocation = {name: buffer.base_data.int_ptr for name, buffer in plan.buffers.items()}
    for pool in set(pools.values()):
        members = [name for name in plan.buffers if pools.get(name) == pool]
        assert len(members) == len(M2L_CLASSES)
        assert len({allocation[name] for name in members}) == 1
        assert plan.buffers[members[0]].base_data.size == 8 * max(
            plan.buffers[name].size for name in members)
    others = [allocation[name] for name in plan.buffers if name not in pools]
    assert len(set(others)) == len(others)  # every other buffer its own allocation
    zeroed = [(index, name) for index, names in plan.zero_before.items() for name in names]
    assert sorted(name for _, name in zeroed) == sorted(pools)
    uses = {}  # buffer -> launch indices that read or write it
    for index, launch in enumerate(plan.launches):
        for name in launch.buffers.values():
            uses.setdefault(name, []).append(index)
    for index, name in zeroed:
        assert index == uses[name][0]  # zeroed at its first use
        for other in pools:  # no pool-mate is in use across that point
            if other != name and pools[other] == pools[name]:
                assert uses[other][-1] < index or uses[other][0] > index
    charges = np.random.default_rng(4).uniform(-1, 1, len(sources))
    first = evaluate_plan(plan, tree.sources_to_tree(charges))
    assert np.array_equal(evaluate_plan(plan, tree.sources_to_tree(charges)), first)


def test_shared_matrices_are_uploaded_once(problem, queue):
    """M2M and L2L run once per level with the same matrices: one device copy each."""
    _, _, tree, lists = problem
    plan = build_plan(tree, lists, get_operators(LAPLACE_3D, ORDER), LAPLACE_3D, queue)
    for operator in ("m2m", "l2l"):
        launches = [launch for launch in plan.launches if launch.step == operator]
        assert len(launches) >= 2
        # The matrix stacks as the layout takes them (not the lists of matrix indices).
        matrices = {"matrices", "transposed_matrices"} & set(launches[0].arguments)
        assert matrices
        for name in matrices:
            assert len({launch.arguments[name].base_data.int_ptr for launch in launches}) == 1
