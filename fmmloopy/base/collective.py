"""Collective operations of a distributed FMM on numpy arrays, over an mpi4py communicator.

:class:`Collectives` wraps a communicator (``mpi4py.MPI.COMM_WORLD`` or any other) with the few
operations the distributed tree and evaluation need: sums and extrema over ranks, the union of
sorted keys, an all-to-all of rows of any dtype, and :meth:`Collectives.agree`, which turns an
error on some ranks into the same error on every rank (no rank is left waiting in a collective
for one that raised). The time each exchange waits for the slowest rank and the time and bytes
of the transfer itself are counted per phase (:attr:`Collectives.traffic`).

mpi4py is imported only here and only when a communicator is given (``pip install
"fmmloopy[mpi]"``); nothing else in the package needs it.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["Collectives", "RankError", "mpi_module"]

#: Exceptions another rank's error is raised as, by name; anything else is a RankError.
_RERAISED = {cls.__name__: cls for cls in (ValueError, TypeError, OverflowError, MemoryError,
                                           RuntimeError, NotImplementedError)}


class RankError(RuntimeError):
    """An error another rank raised in a collective phase, raised on this rank too."""


def mpi_module():
    """``mpi4py.MPI``, with a clear error where mpi4py is missing."""
    return optional_module("mpi4py.MPI", "mpi", "the distributed FMM",
                           " (mpi4py and MPICH from PyPI), or mpi4py built for a site's MPI")


class Collectives:
    """Numpy collectives over ``comm`` (an ``mpi4py.MPI.Comm``), with counted traffic."""

    def __init__(self, comm) -> None:
        self.MPI = mpi_module()
        if not isinstance(comm, self.MPI.Comm):
            raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        #: phase -> {"bytes": sent by this rank, "seconds": in transfers, "waiting": seconds
        #: waiting for the other ranks before them}.
        self.traffic: dict[str, dict[str, float]] = defaultdict(
            lambda: {"bytes": 0.0, "seconds": 0.0, "waiting": 0.0})

    # -- reductions ------------------------------------------------------------------------
    def _reduce(self, values, op) -> np.ndarray:
        values = np.ascontiguousarray(values)
        result = np.empty_like(values)
        self.comm.Allreduce(values, result, op=op)
        return result

    def sum(self, values) -> np.ndarray:
        """Elementwise sum over ranks (exact for integers)."""
        return self._reduce(values, self.MPI.SUM)

    def max(self, values) -> np.ndarray:
        """Elementwise maximum over ranks."""
        return self._reduce(values, self.MPI.MAX)

    def min(self, values) -> np.ndarray:
        """Elementwise minimum over ranks."""
        return self._reduce(values, self.MPI.MIN)

    def gather(self, value) -> list:
        """Every rank's ``value`` (any picklable object), in rank order."""
        return self.comm.allgather(value)

    def union(self, keys: np.ndarray, *aligned: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sorted distinct values of ``keys`` over all ranks, with the ``aligned`` arrays' value
        at the first occurrence of each (equal keys must carry equal aligned values)."""
        counts = np.array(self.comm.allgather(len(keys)), dtype=np.int64)
        columns = []
        for column in (keys, *aligned):
            column = np.ascontiguousarray(column)
            gathered = np.empty(int(counts.sum()), dtype=column.dtype)
            self.comm.Allgatherv(column, [gathered, counts])
            columns.append(gathered)
        unique, first = np.unique(columns[0], return_index=True)
        return (unique, *(column[first] for column in columns[1:]))

    def sleeping_barrier(self, comm=None, interval: float = 0.005) -> None:
        """A barrier over ``comm`` (default: all ranks) that waits asleep, not polling: ranks
        waiting while another computes (on the same node) leave it the cores."""
        request = (self.comm if comm is None else comm).Ibarrier()
        while not request.Test():
            time.sleep(interval)

    # -- all-to-all ------------------------------------------------------------------------
    def exchange(self, rows: np.ndarray, counts: np.ndarray, phase: str = "exchange"
                 ) -> tuple[np.ndarray, np.ndarray]:
        """All-to-all: ``rows`` (first axis) grouped by destination rank, ``counts[q]`` rows to
        rank ``q``; returns the rows received, grouped by source rank, and their counts."""
        rows = np.ascontiguousarray(rows)
        counts = np.asarray(counts, dtype=np.int64)
        clock = time.perf_counter()
        self.comm.Barrier()
        record = self.traffic[phase]
        record["waiting"] += time.perf_counter() - clock
        clock = time.perf_counter()
        received = np.empty(self.size, dtype=np.int64)
        self.comm.Alltoall(counts, received)
        row_bytes = rows.dtype.itemsize * int(np.prod(rows.shape[1:], dtype=np.int64))
        out = np.empty((int(received.sum()), *rows.shape[1:]), dtype=rows.dtype)
        send_bytes, recv_bytes = counts * row_bytes, received * row_bytes
        self.comm.Alltoallv(
            [rows.view(np.uint8).reshape(-1) if rows.size else np.empty(0, np.uint8),
             (send_bytes, _displacements(send_bytes)), self.MPI.BYTE],
            [out.view(np.uint8).reshape(-1) if out.size else np.empty(0, np.uint8),
             (recv_bytes, _displacements(recv_bytes)), self.MPI.BYTE])
        record["seconds"] += time.perf_counter() - clock
        record["bytes"] += float(send_bytes.sum() - send_bytes[self.rank])
        return out, received

    def evaluation_seconds(self, local_seconds: dict, compute: float, total: float) -> dict:
        """An evaluation's seconds from the local operators' (``local_seconds``), the
        computing time ``compute`` (the multipole exchange inside it taken out) and the
        ``total``: compute, communication and waiting over every phase, bytes sent."""
        seconds = {name: value for name, value in local_seconds.items()
                   if name not in ("total", "multipole exchange")}
        traffic = self.traffic
        exchange_in_compute = traffic["multipoles"]["seconds"] + traffic["multipoles"]["waiting"]
        return seconds | {
            "compute": compute - exchange_in_compute,
            "communication": sum(phase["seconds"] for phase in traffic.values()),
            "waiting": sum(phase["waiting"] for phase in traffic.values()),
            "bytes sent": sum(phase["bytes"] for phase in traffic.values()), "total": total}

    # -- errors ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def agree(self, what: str) -> Iterator[None]:
        """Run the block; if it raises on any rank, raise on every rank: the rank's own error
        where it has one, else the first failing rank's error type and message, naming that
        rank and ``what`` the ranks were doing."""
        error: BaseException | None = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - every error must reach the other ranks
            error = exc
        failures = self.comm.allgather(
            None if error is None else (type(error).__name__, str(error)))
        if error is not None:
            raise error
        failed = [(rank, failure) for rank, failure in enumerate(failures) if failure]
        if failed:
            rank, (name, message) = failed[0]
            cls = _RERAISED.get(name, RankError)
            raise cls(f"rank {rank} of {self.size} failed while {what} ({name}): {message}")


def _displacements(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def same_on_every_rank(values: list[tuple], names: tuple[str, ...]) -> None:
    """ValueError naming the first option whose value differs between ranks."""
    for index, name in enumerate(names):
        seen = {repr(value[index]) for value in values}
        if len(seen) > 1:
            per_rank = ", ".join(f"rank {rank}: {value[index]!r}"
                                 for rank, value in enumerate(values))
            raise ValueError(f"{name} must be the same on every rank, got {per_rank}")
