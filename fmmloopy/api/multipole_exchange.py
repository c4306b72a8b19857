"""The partial multipoles a rank of a :class:`~fmmloopy.api.distributed.DistributedFmm` sends
and receives between the passes (docs/scale-out.md).

A box whose sources lie on several ranks has a partial multipole on each of them after their
upward passes; a rank that reads the box (its M2L, M2P or M2M sources) needs the sum. Which
parts go where is fixed by the tree and the ranks' shares (:class:`MultipoleExchange`, made
with the set-up); each evaluation then sends and adds the rows (:meth:`MultipoleExchange.
exchange`).
"""

from __future__ import annotations

import time

import numpy as np

from fmmloopy.base.collective import Collectives, RankError
from fmmloopy.execution.rows import add_rows, folded_rows, gather_rows
from fmmloopy.tree.csr import ranges_to_indices
from fmmloopy.tree.partition import contributors

__all__ = ["MultipoleExchange"]


class MultipoleExchange:
    """Which partial multipoles this rank sends and receives at each evaluation: for each box it
    reads (``essential.multipoles``), the parts of the ranks owning leaves with sources under it
    (``owners`` of the ``skeleton``'s leaves); ``local_ids``: each skeleton box's index in this
    rank's tree (-1 where it has none). Collective: every rank makes it together."""

    def __init__(self, collectives: Collectives, skeleton, owners: np.ndarray, essential,
                 local_ids: np.ndarray):
        self.collectives = collectives
        first, last = contributors(skeleton, owners)
        wanted = np.flatnonzero(essential.multipoles)
        spans = np.maximum(last[wanted] - first[wanted] + 1, 0)
        ranks = ranges_to_indices(first[wanted].astype(np.int64), spans)
        boxes = np.repeat(wanted, spans)
        remote = ranks != collectives.rank
        ranks, boxes = ranks[remote], boxes[remote]
        by_rank = np.argsort(ranks, kind="stable")
        #: This rank's boxes whose parts arrive, in the order they arrive.
        self.received = local_ids[boxes[by_rank]]
        asked, self.send_counts = collectives.exchange(
            boxes[by_rank].astype(np.int64), np.bincount(ranks, minlength=collectives.size),
            "multipole requests")
        #: This rank's boxes whose parts it sends, grouped by destination.
        self.sent = local_ids[asked]

    def exchange(self, plan, vectors: int, n_e: int, dtype,
                 failure: Exception | None = None) -> dict[str, float]:
        """Between the passes: send this rank's partial multipoles of the boxes others read
        (from ``plan``'s multipole buffer; None: a rank without a tree sends zeros) and add
        theirs into the boxes this rank reads. First the ranks learn whether one of them failed
        in its upward pass (``failure``): then none exchanges, every rank raises. ``vectors``:
        the far field's vectors (Stokes' four Laplace potentials), whose rows travel together;
        ``n_e`` and ``dtype``: a row's."""
        clock = time.perf_counter()
        collectives = self.collectives
        failures = collectives.gather(None if failure is None else repr(failure))
        # A synchronisation: its time is the wait for the slowest rank's upward pass.
        collectives.traffic["multipoles"]["waiting"] += time.perf_counter() - clock
        failed = [(rank, text) for rank, text in enumerate(failures) if text]
        if failed:
            if failure is not None:
                return {}
            raise RankError(f"rank {failed[0][0]} failed in its upward pass: {failed[0][1]}")
        # Box b's multipole of vector v is row b * vectors + v.
        sent = folded_rows(self.sent, vectors)
        present = sent >= 0  # -1: a box this rank does not have (its part is zero)
        rows = np.zeros((len(sent), n_e), dtype)
        if plan is not None:
            rows[present] = gather_rows(plan.queue, plan.buffers["multipole"], sent[present])
        received, _ = collectives.exchange(rows, self.send_counts * vectors, "multipoles")
        if plan is not None and len(received):
            boxes, where = np.unique(folded_rows(self.received, vectors), return_inverse=True)
            sums = np.zeros((len(boxes), received.shape[1]), received.dtype)
            np.add.at(sums, where, received)
            add_rows(plan.queue, plan.buffers["multipole"], boxes, sums)
        return {"multipole exchange": time.perf_counter() - clock}
