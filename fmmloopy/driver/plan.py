"""A plan: every kernel launch of one FMM evaluation, in order, with the buffers they share.

:func:`fmmloopy.driver.builder.build_plan` makes one per tree (lists cut to the boxes each launch
serves, device arrays uploaded, kernels compiled); an evaluation
(:func:`fmmloopy.driver.evaluation.evaluate_plan`) then only uploads the charges and runs the
launches, pass by pass.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.driver.buffers import base_buffer
from fmmloopy.execution.compiled import CompiledOperator
from fmmloopy.maths.layouts import empty_launch_arguments
from fmmloopy.maths.scheme import Pass


def zero_buffer(queue: cl.CommandQueue, array: cla.Array) -> None:
    """Set ``array`` to 0 with the runtime's buffer fill (``clEnqueueFillBuffer``).

    ``Array.fill`` runs a generated kernel instead, which on PoCL took a large share of a
    10^6-point evaluation (docs/history.md, 2026-11-23, "Against exafmm-t, and the compressed
    M2L").
    """
    if array.nbytes:
        cl.enqueue_fill_buffer(queue, array.base_data, np.zeros(1, array.dtype), array.offset,
                               array.nbytes)


@dataclass
class Launch:
    """One kernel launch: a transformed operator and its fixed arguments (device arrays)."""

    step: str  # the name its time is reported under
    kernel: CompiledOperator
    arguments: dict[str, object]
    buffers: dict[str, str]  # kernel argument -> name of a per-evaluation buffer
    work: int  # pairs (pairwise) or flops (matvec), counted from the lists
    #: The fewest bytes of values it moves (OperatorSpec.traffic), or a function that counts
    #: them from device arrays when first asked (:meth:`Plan.traffic`).
    traffic: int | Callable[[], int] = 0
    #: Its floating-point operations: the work of a matvec; a pairwise launch's pairs times
    #: its kernel's flops per pair (GreenKernel.flops_per_pair: more for a gradient).
    flops: float = 0.0
    #: What makes two plans' launches of one tree the same launch: the step, its target boxes
    #: (first and count), the factor of its chain and, for a pairwise step, the kernel it sums
    #: (for a matvec step, the strength vectors folded into its boxes).
    key: tuple = ()
    #: The pass it belongs to (a distributed FMM exchanges multipoles after the upward one).
    evaluation_pass: Pass = Pass.DOWNWARD
    #: Its target boxes, where its kernel loops over their points up to ``max_box_targets``
    #: (the largest box's count: what :meth:`Plan.refresh_points` sets again).
    target_boxes: np.ndarray | None = None

    @property
    def upward(self) -> bool:
        return self.evaluation_pass == Pass.UPWARD


#: The launch arguments a tree's points determine; the others follow from its boxes and lists.
POINT_ARGUMENTS = ("sources", "targets", "box_source_starts", "box_source_counts",
                   "box_target_starts", "box_target_counts")


def traffic_rows(rows: dict) -> dict:
    """The arrays of a launch's list arguments ``rows`` that
    :meth:`~fmmloopy.maths.operators.OperatorSpec.traffic` reads: what a plan keeps to count a
    launch's traffic when the roofline asks for it (``fmmloopy bench``), not in every set-up."""
    return {name: rows[name] for name in ("target_boxes", "source_box_lists", "matrix_indices")
            if name in rows}


@dataclass
class Plan:
    """Every launch of one FMM evaluation, in order, with the buffers they share."""

    queue: cl.CommandQueue
    launches: list[Launch]
    buffers: dict[str, cla.Array]
    eval_seconds: dict[str, float] = field(default_factory=dict)
    #: Seconds spent getting the transformed kernels while the plan was made (the disk kernel
    #: cache, or code generation); :meth:`build` adds the OpenCL builds.
    kernel_seconds: float = 0.0
    #: Seconds spent verifying recipes that are not shipped against ``sequential``.
    verify_seconds: float = 0.0
    #: Names of the recipes that were compared with ``sequential`` on this tree.
    verified_recipes: frozenset[str] = frozenset()
    #: Names of the recipes that needed that comparison and ran without it (verify=False).
    unverified_recipes: frozenset[str] = frozenset()
    #: Launch index -> buffers zeroed just before it: those that share an allocation with
    #: others (:func:`fmmloopy.maths.kifmm.buffer_pools`) start from zero at their first use
    #: instead of with the call.
    zero_before: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Host arrays that buffers are read back into (:meth:`read_back`), kept between
    #: evaluations: a new array of a 10^6-point buffer is page-faulted in at every call.
    _host_copies: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: id of a launch -> (the queue, the launch, its bound enqueue): :meth:`_run`.
    _bound: dict[int, tuple] = field(default_factory=dict, repr=False)

    @property
    def profiled(self) -> bool:
        """Whether the queue profiles: launches are then enqueued without a wait and timed
        from their events (:mod:`fmmloopy.driver.evaluation`)."""
        return bool(self.queue.properties & cl.command_queue_properties.PROFILING_ENABLE)

    def load(self, strengths: np.ndarray) -> None:
        """Upload ``strengths`` (tree order) and zero every other buffer but those zeroed just
        before their first launch (:attr:`zero_before`); wait for both."""
        buffer = self.buffers["strengths"]
        buffer.set(np.asarray(strengths, dtype=buffer.dtype), queue=self.queue)
        zeroed_later = {name for names in self.zero_before.values() for name in names}
        for name, buffer in self.buffers.items():  # views (names with a colon) by their base
            if name != "strengths" and name not in zeroed_later and base_buffer(name) == name:
                zero_buffer(self.queue, buffer)
        self.queue.finish()

    def host_array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A host array of ``shape`` this plan keeps under ``name`` between evaluations (its
        values are the last user's: overwrite them)."""
        host = self._host_copies.get(name)
        if host is None or host.shape != tuple(shape) or host.dtype != np.dtype(dtype):
            host = self._host_copies[name] = np.empty(shape, dtype)
        return host

    def read_back(self, name: str) -> np.ndarray:
        """Buffer ``name``'s values, read into a host array this plan keeps (overwritten by the
        next read of the buffer: copy what must outlive it)."""
        buffer = self.buffers[name]
        return buffer.get(queue=self.queue,
                          ary=self.host_array(f"buffer {name}", buffer.shape, buffer.dtype))

    def refresh_points(self, arguments: dict[str, np.ndarray], box_target_counts: np.ndarray,
                       written: set[int] | None = None) -> None:
        """The points moved within the same boxes (:func:`fmmloopy.tree.rebin.rebinned_tree`):
        write their new :data:`POINT_ARGUMENTS` (``arguments``, as
        :func:`~fmmloopy.execution.kernel_arguments.tree_arguments` gives them) into the
        device arrays the launches hold, and set each launch's ``max_box_targets`` from
        ``box_target_counts``. Lists, matrices and kernels stay; :attr:`Launch.work` keeps the
        first tree's counts. ``written``: ids of device arrays written already (by another plan
        sharing launches), added to."""
        written = set() if written is None else written
        for launch in self.launches:
            for name in POINT_ARGUMENTS:
                array = launch.arguments.get(name)
                if isinstance(array, cla.Array) and id(array) not in written:
                    array.set(np.ascontiguousarray(arguments[name], dtype=array.dtype),
                              queue=self.queue, async_=True)
                    written.add(id(array))
            if launch.target_boxes is not None and "max_box_targets" in launch.arguments:
                launch.arguments["max_box_targets"] = int(
                    box_target_counts[launch.target_boxes].max())
        self._bound.clear()  # bound with the old max_box_targets

    def enqueue(self, index: int) -> cl.Event:
        """Enqueue launch ``index`` (its buffers zeroed first where it is their first user);
        its event."""
        self._start_from_zero(index)
        return self._run(self.launches[index])

    def run_step(self, step: str) -> float:
        """Run only the launches of ``step`` (on the current buffers); their seconds."""
        clock = time.perf_counter()
        for index, launch in enumerate(self.launches):
            if launch.step == step:
                self._start_from_zero(index)
                self._run(launch)
        self.queue.finish()
        return time.perf_counter() - clock

    def _start_from_zero(self, index: int) -> None:
        for name in self.zero_before.get(index, ()):
            zero_buffer(self.queue, self.buffers[name])

    def work(self, step: str) -> int:
        """Pairs (pairwise steps) or flops (matvec steps) of ``step``, counted from the lists."""
        return sum(launch.work for launch in self.launches if launch.step == step)

    def flops(self, step: str) -> float:
        """Floating-point operations of the launches of ``step`` (:attr:`Launch.flops`)."""
        return sum(launch.flops for launch in self.launches if launch.step == step)

    def traffic(self, step: str) -> int:
        """The fewest bytes of values the launches of ``step`` move (the roofline's traffic)."""
        total = 0
        for launch in self.launches:
            if launch.step == step:
                if callable(launch.traffic):
                    launch.traffic = launch.traffic()
                total += launch.traffic
        return total

    def build(self) -> None:
        """Compile every kernel now: run each once for one target box with an empty list.

        (PoCL compiles a kernel for its work-group size at the first launch that runs a group;
        kernels this process has launched with their work-group size are left alone.)
        The seconds are added to :attr:`kernel_seconds`.
        """
        clock = time.perf_counter()
        for launch in self.launches:
            if launch.kernel.compiled_for(self.queue.context):
                continue
            empty = empty_launch_arguments(launch.kernel.layout)
            self._run(launch, **{name: cla.to_device(self.queue, value)
                                 if isinstance(value, np.ndarray) else value
                                 for name, value in empty.items()})
        self.queue.finish()
        self.kernel_seconds += time.perf_counter() - clock

    def _run(self, launch: Launch, **overrides) -> cl.Event:
        """Enqueue ``launch`` with its fixed arguments, the shared buffers and ``overrides``;
        its event. Without overrides, its arguments are checked at its first run on this
        plan's queue and bound for the next (:meth:`CompiledOperator.bind`)."""
        bound = None if overrides else self._bound.get(id(launch))
        if bound is not None and bound[0] is self.queue:
            return bound[2]()
        buffers = {arg: self.buffers[name] for arg, name in launch.buffers.items()}
        arguments = launch.arguments | buffers | overrides
        enqueue = None if overrides else launch.kernel.bind(self.queue, **arguments)
        if enqueue is None:  # arguments for this run only, or loopy's executor runs it
            return launch.kernel.launch(self.queue, **arguments)[0]
        self._bound[id(launch)] = (self.queue, launch, enqueue)
        return enqueue()


def merged_plans(far: Plan, near: Plan, renamed: dict[str, str]) -> Plan:
    """One plan of ``far``'s launches (its buffers ``renamed``: a far field summed with another
    kernel reads and writes point buffers of its own) and then ``near``'s, on ``far``'s queue:
    evaluated pass by pass, the near field's leaves run after the far field's."""
    def moved(launch: Launch) -> Launch:
        return dataclasses.replace(launch, buffers={
            argument: renamed.get(name, name) for argument, name in launch.buffers.items()})
    buffers = {renamed.get(name, name): array for name, array in far.buffers.items()}
    offset = len(far.launches)
    return Plan(far.queue, [moved(launch) for launch in far.launches] + near.launches,
                buffers | near.buffers,
                kernel_seconds=far.kernel_seconds + near.kernel_seconds,
                verify_seconds=far.verify_seconds + near.verify_seconds,
                verified_recipes=far.verified_recipes | near.verified_recipes,
                unverified_recipes=far.unverified_recipes | near.unverified_recipes,
                zero_before={**{index: tuple(renamed.get(name, name) for name in names)
                                for index, names in far.zero_before.items()},
                             **{index + offset: names
                                for index, names in near.zero_before.items()}})
