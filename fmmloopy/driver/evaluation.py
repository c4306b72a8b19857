"""One FMM evaluation, pass by pass: what every call runs on a plan (read top to bottom).

A plan (:mod:`fmmloopy.driver.plan`) holds every launch of one FMM on one tree, in order, each
tagged with its pass of the scheme (:class:`~fmmloopy.maths.scheme.Pass`). An evaluation:

1. uploads the strengths (tree order) and zeroes the buffers;
2. runs the **upward pass**: P2M at the leaves with sources, UC2E there, M2M level by level up
   (the multipoles of every box with sources);
3. calls the variant's hook between the passes (:attr:`PassHooks.between`): a distributed FMM
   sums the partial multipoles of the boxes its ranks share (an exchange between ranks), a
   periodic FMM copies the multipoles to the image boxes and adds its cell's children's charges'
   part of the far lattice;
4. runs the **downward pass**: a periodic FMM's far lattice first, then the compressed M2L
   class by class, P2L (X list), DC2E, L2L level by level down (the locals);
5. runs the **leaves**: L2P, M2P (W list) and P2P (U list, the near field) into the potentials;
6. reads the potentials back and calls the variant's hook after the passes
   (:attr:`PassHooks.after`: a periodic FMM's tin-foil constant).

On a profiling queue every launch is enqueued without a wait and each step's seconds come from
its launches' events (the device's time); otherwise each launch is waited for and timed on the
host. The seconds per step land in :attr:`~fmmloopy.driver.plan.Plan.eval_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from fmmloopy.driver.plan import Plan
from fmmloopy.maths.kifmm import POTENTIAL
from fmmloopy.maths.scheme import Pass

__all__ = ["NO_HOOKS", "PassHooks", "evaluate_plan"]


@dataclass(frozen=True)
class PassHooks:
    """What a variant of the FMM adds to an evaluation: ``before(plan)`` runs once the
    strengths are loaded (uploads a variant's own inputs); ``between(plan)`` runs once the
    upward pass is enqueued and before anything reads a multipole, and returns seconds to
    report by name; ``after(plan, potential)`` adds to the potentials read back (in place)."""

    between: Callable[[Plan], dict[str, float]] | None = None
    after: Callable[[Plan, np.ndarray], None] | None = None
    before: Callable[[Plan], None] | None = None


NO_HOOKS = PassHooks()


def evaluate_plan(plan: Plan, strengths: np.ndarray, hooks: PassHooks = NO_HOOKS
                  ) -> np.ndarray:
    """The potentials at the targets (tree order) of ``strengths`` (tree order) through every
    launch of ``plan`` (module docstring)."""
    start = time.perf_counter()
    plan.load(strengths)
    if hooks.before is not None:
        hooks.before(plan)
    seconds = {"setup_buffers": time.perf_counter() - start}
    # Profiled launches are timed by their events, read once all are done; else each alone.
    events: list[tuple[str, cl.Event]] | None = [] if plan.profiled else None
    _run_pass(plan, Pass.UPWARD, seconds, events)
    if hooks.between is not None:
        seconds |= hooks.between(plan)
    _run_pass(plan, Pass.DOWNWARD, seconds, events)
    _run_pass(plan, Pass.LEAVES, seconds, events)
    potential = plan.buffers[POTENTIAL].get(queue=plan.queue)  # waits for every launch
    for step, event in events or ():
        seconds[step] = seconds.get(step, 0.0) + 1e-9 * (
            event.get_profiling_info(cl.profiling_info.END)
            - event.get_profiling_info(cl.profiling_info.START))
    seconds["total"] = time.perf_counter() - start
    plan.eval_seconds = seconds
    if hooks.after is not None:
        hooks.after(plan, potential)
    return potential


def _run_pass(plan: Plan, which: Pass, seconds: dict[str, float],
              events: list[tuple[str, cl.Event]] | None) -> None:
    """Enqueue the launches of pass ``which`` in order; time them: their events into
    ``events`` (a profiling queue), else each waited for (module docstring)."""
    for index, launch in enumerate(plan.launches):
        if launch.evaluation_pass != which:
            continue
        clock = time.perf_counter()
        event = plan.enqueue(index)
        if events is not None:
            events.append((launch.step, event))
            continue
        plan.queue.finish()
        seconds[launch.step] = seconds.get(launch.step, 0.0) + time.perf_counter() - clock
