"""What a set-up skips: small uploads copied at the buffer's creation (no command enqueued), and
kernels this process already launched with their work-group size not launched again to be built.
Both must leave every number as it was: uploads read back bit for bit, and an FMM whose plan
skipped its builds gives what the first FMM on the same points gave."""

import numpy as np
import pyopencl as cl
import pytest

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.driver.plan import Plan
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.launcher import Launcher, expression
from fmmloopy.execution.uploads import COPIED_AT_CREATION, upload
from fmmloopy.tuning.recipe import REFERENCE


@pytest.mark.parametrize("array", [
    np.zeros(0, dtype=np.int32),                            # empty: no buffer to create
    np.arange(7, dtype=np.int32),                           # small: copied at creation
    np.arange(COPIED_AT_CREATION // 8, dtype=np.float64),    # the largest copied at creation
    np.arange(COPIED_AT_CREATION // 8 + 1, dtype=np.float64),  # the smallest copied on the queue
    np.arange(60, dtype=np.int64).reshape(3, 20).T,          # not C-contiguous
], ids=["empty", "small", "largest-at-creation", "smallest-on-queue", "transposed"])
def test_uploads_read_back_bit_for_bit(queue, array):
    host_copy = array.copy()
    device_array = upload(queue, array)
    queue.finish()  # a large array's copy is enqueued: the caller keeps it until it is done
    array[...] = 0  # the device holds a copy, not the caller's memory
    assert device_array.shape == host_copy.shape and device_array.dtype == host_copy.dtype
    assert np.array_equal(device_array.get(queue=queue), host_copy)


def test_a_launcher_is_compiled_once_it_ran_its_work_group_size(device):
    p2p = compiled_operator("p2p", device, recipe=REFERENCE)
    launcher = Launcher(p2p.generated, cl.Context([device]))  # a context no launch has used
    assert not launcher.compiled
    launcher.launched_sizes.add(tuple(int(e) for e in launcher.group_size) or (1,))
    assert launcher.compiled
    # A work-group size that follows the arguments is never taken as compiled.
    launcher.group_size = (expression("ntargets"),)
    assert not launcher.compiled


def test_a_second_fmm_launches_no_kernel_to_build_it_and_gives_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(41)
    points = DISTRIBUTIONS["plummer"](3000, rng)
    charges = rng.uniform(-1, 1, len(points))
    first = fmmloopy.Fmm(points, order=4, n_crit=40)
    context = first.queue.context
    assert all(launch.kernel.compiled_for(context) for launch in first.plan.launches)
    expected = first(charges)

    runs = []
    original = Plan._run
    monkeypatch.setattr(Plan, "_run", lambda plan, launch, **overrides: (
        runs.append(launch), original(plan, launch, **overrides))[1])
    second = fmmloopy.Fmm(points, order=4, n_crit=40)
    assert runs == []  # its plan's build launched nothing: every kernel ran before
    assert np.array_equal(second(charges), expected)
    assert len(runs) == len(second.plan.launches)


def test_an_evaluation_waits_once_and_times_its_steps_from_the_events(device):
    """The FMM's queue is profiled: every launch is enqueued without a wait and each step's
    seconds are its launches' device times; the numbers are bitwise those of an evaluation
    that waits for every launch (a queue without profiling, timed on the host)."""
    points = DISTRIBUTIONS["plummer"](20000, np.random.default_rng(4))
    charges = np.random.default_rng(5).uniform(-1, 1, len(points))
    fmm = fmmloopy.Fmm(points, order=4, device=device)
    assert fmm.queue.properties & cl.command_queue_properties.PROFILING_ENABLE
    profiled = fmm(charges)
    steps = {launch.step for launch in fmm.plan.launches}
    seconds = fmm.eval_seconds
    assert steps <= set(seconds) and all(seconds[step] > 0 for step in steps)
    assert sum(seconds[step] for step in steps) <= seconds["total"]
    fmm.plan.queue = cl.CommandQueue(fmm.queue.context, fmm.queue.device)  # no profiling
    assert np.array_equal(fmm(charges), profiled)
    assert steps <= set(fmm.eval_seconds)


def test_a_launch_checks_its_arguments_once_and_stays_right(device, monkeypatch):
    """A plan's launch is bound at its first run (arguments checked, re-shaped) and enqueued
    as bound after: the second evaluation checks nothing, and every evaluation, with other
    charges, gives what a fresh FMM gives."""
    points = DISTRIBUTIONS["sphere"](8000, np.random.default_rng(6))
    rng = np.random.default_rng(7)
    first, second = rng.uniform(-1, 1, (2, len(points)))
    fmm = fmmloopy.Fmm(points, order=4, device=device)
    bound = []
    original = Launcher.bind
    monkeypatch.setattr(Launcher, "bind", lambda self, **arrays: bound.append(1)
                        or original(self, **arrays))
    out_first = fmm(first)
    assert 0 < len(bound) <= len(fmm.plan.launches)
    checked = len(bound)
    out_second = fmm(second)
    assert len(bound) == checked  # nothing checked again
    fresh = fmmloopy.Fmm(points, order=4, device=device)
    assert np.array_equal(out_first, fresh(first)) and np.array_equal(out_second, fresh(second))
