"""The plan's kernels, loaded and built while the host builds the tree.

Which transformed kernels a plan launches depends on the operators (their sizes, the matrices'
shapes), the kernel summed, the recipes and the device, not on the tree: so an FMM can load them
from the disk kernel cache and build their OpenCL programs on a thread of its own while it sorts
the points and builds the tree and lists, instead of after (the OpenCL builds then overlap the
tree: docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled"). The plan asks for
the same kernels and finds them built; a kernel the disk cache does not hold is left to the
plan, which generates it (loopy runs on the calling thread only).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pyopencl as cl

from fmmloopy.base.precision import Precision
from fmmloopy.driver.selection import recipe_for
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.device_setup import prepare_setup_kernels
from fmmloopy.maths.scheme import KernelRequest

__all__ = ["KernelPreparation"]

#: Operators whose lists are often empty or all summed directly (W and X: small boxes): not
#: prepared, but built when a plan launches them. PoCL builds one program at a time, so their
#: builds on the thread delayed the kernels every plan launches (a cold set-up is shorter
#: without them: docs/history.md, 2026-11-27, "Cold start").
NOT_PREPARED = ("m2p", "p2l")


class KernelPreparation:
    """Loads the kernels of ``requests`` from the disk kernel cache (or the shipped kernels) and
    builds them for ``queue``'s context on a thread: the set-up's own kernels first (the V list
    by class), then the operators' but those of :data:`NOT_PREPARED`. :meth:`stop` asks it to
    build no more (the plan has built what it launches), :meth:`join` waits for it. Failures
    are left to the plan, which asks for the same kernels and reports them."""

    def __init__(self, requests: list[KernelRequest], queue: cl.CommandQueue,
                 recipes: str | Mapping[str, str] | None, precision: Precision):
        requests = [request for request in requests if request[0] not in NOT_PREPARED]
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._prepare, args=(requests, queue, recipes, precision),
            name="fmmloopy kernel preparation", daemon=True)
        self._thread.start()

    def _prepare(self, requests: list[KernelRequest], queue: cl.CommandQueue,
                 recipes: str | Mapping[str, str] | None, precision: Precision) -> None:
        try:
            prepare_setup_kernels(queue.context)
        except Exception:  # the set-up builds them again and reports it
            pass
        for operator, green, sizes in requests:
            if self._stopped.is_set():
                return
            try:
                kernel = compiled_operator(operator, queue.device,
                                           recipe=recipe_for(recipes, operator), kernel=green,
                                           dtype=precision.dtype, only_cached=True, **sizes)
            except Exception:  # the plan asks again and reports it
                continue
            if kernel is not None:
                kernel.prepare(queue.context)

    def stop(self) -> None:
        """Build no kernel after the one in progress."""
        self._stopped.set()

    def join(self) -> None:
        self._thread.join()
