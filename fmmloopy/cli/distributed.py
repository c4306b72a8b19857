"""A distributed run: N points of a distribution spread over the ranks of ``mpiexec``, one
:class:`~fmmloopy.api.distributed.DistributedFmm`, its accuracy against direct summation and
each rank's times, traffic and balance (``fmmloopy distributed``, and
``examples/laplace_sphere.py`` under ``mpiexec -n R`` with R > 1).

No rank holds all the points: each generates its share of the global point sequence (blocks of
:data:`BLOCK` points, each drawn from its own seed, so the set is the same for any number of
ranks), and the reference sums each rank's sources at the sampled targets and adds the parts
over ranks.
"""

from __future__ import annotations

import os

import numpy as np

from fmmloopy.api.direct import DirectSum
from fmmloopy.api.distributed import DistributedFmm
from fmmloopy.api.error_estimate import ErrorEstimate, estimate_from_errors
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths.operators import OPERATORS
from fmmloopy.tree.lists import list_size_summary

__all__ = ["BLOCK", "launched_ranks", "print_distributed_report", "print_rank_table",
           "rank_share", "run_distributed"]

#: Points drawn from one seed: the global sequence is made of such blocks.
BLOCK = 1 << 16
#: Environment variables in which MPI launchers give the number of ranks.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")


def launched_ranks() -> int:
    """The number of ranks an MPI launcher started this process among (1 when none did); read
    from the launcher's environment, so that mpi4py is imported only under one."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def rank_share(distribution: str, n: int, seed: int, rank: int, size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This rank's share of the global points ``0..n-1`` of ``distribution`` and their
    charges in [-1, 1): ``(global indices, points, charges)``, contiguous ranges of the global
    order (ranks ``< n % size`` hold one more)."""
    generate = DISTRIBUTIONS[distribution]
    start = rank * (n // size) + min(rank, n % size)
    stop = start + n // size + (rank < n % size)
    points, charges = [], []
    for block in range(start // BLOCK, (stop - 1) // BLOCK + 1 if stop > start else 0):
        rng = np.random.default_rng([seed, block])
        count = min(BLOCK, n - block * BLOCK)
        block_points, block_charges = generate(count, rng), rng.uniform(-1.0, 1.0, count)
        lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, count)
        points.append(block_points[lo:hi])
        charges.append(block_charges[lo:hi])
    indices = np.arange(start, stop)
    if not points:
        return indices, np.zeros((0, 3)), np.zeros(0)
    return indices, np.concatenate(points), np.concatenate(charges)


def run_distributed(n: int, distribution: str = "sphere", *, order: int | None = None,
                    n_crit: int | str = "auto", device=None, recipes=None,
                    check_targets: int = 1000, repeats: int = 2, seed: int = 0,
                    kernel: str = "laplace", w_x_direct: bool = True,
                    verify_recipes: bool = True, comm=None, eps: float | None = None
                    ) -> dict | None:
    """Set up and evaluate a :class:`DistributedFmm` over ``n`` points on every rank (at
    ``order``, or the order ``eps`` asks for); the report (rank 0; None on the others), shaped
    as ``examples/laplace_sphere.py``'s, with ``ranks``: every rank's counts, seconds and
    bytes."""
    from fmmloopy.base.collective import mpi_module

    mpi = mpi_module()
    comm = mpi.COMM_WORLD if comm is None else comm
    rank, size = comm.Get_rank(), comm.Get_size()
    _, points, charges = rank_share(distribution, n, seed, rank, size)
    comm.Barrier()
    clock = mpi.Wtime()
    fmm = DistributedFmm(points, comm=comm, kernel=kernel, order=order, eps=eps,
                         n_crit=n_crit, device=device, recipes=recipes,
                         w_x_direct=w_x_direct, verify_recipes=verify_recipes)
    setup = mpi.Wtime() - clock
    if fmm.kernel.is_complex:
        charges = charges + 1j * np.random.default_rng([seed, rank, 1]).uniform(
            -1.0, 1.0, len(charges))
    best, best_ranks = None, None
    for _ in range(repeats):
        comm.Barrier()
        clock = mpi.Wtime()
        potential = fmm(charges)
        wall = comm.allreduce(mpi.Wtime() - clock, op=mpi.MAX)
        ranks = fmm.report()
        if best is None or wall < best:
            best, best_ranks = wall, ranks
    error = _sampled_error(fmm, comm, points, charges, potential, check_targets, n, seed)
    skeleton = fmm.skeleton
    if rank != 0:
        return None
    steps = {step for entry in best_ranks for step in entry if step in OPERATORS}
    return {
        "kernel": fmm.kernel.label, "gradient": False, "distribution": distribution,
        "n": n, "order": fmm.order, "eps": eps, "n_crit": fmm.n_crit, "ranks_count": size,
        "device": ", ".join(sorted({entry["device"] for entry in best_ranks})),
        "depth": skeleton.nlevels - 1, "nleaves": int(skeleton.box_is_leaf.sum()),
        "list_sizes": list_size_summary(skeleton, fmm.lists),
        "w_x_direct": w_x_direct,
        "w_x_moved_to_direct": {name: len(getattr(fmm.lists, f"{name}_lists"))
                                - len(getattr(fmm.evaluated_lists, f"{name}_lists"))
                                for name in ("w", "x")},
        "recipes": None,
        "setup_seconds": {"total (all ranks)": setup, **fmm.setup_seconds},
        # per step: the slowest rank's seconds; the evaluation: the wall time of the slowest
        "eval_seconds": {**{step: max(entry.get(step, 0.0) for entry in best_ranks)
                            for step in sorted(steps)}, "total": best},
        "eval_work": {},
        "rel_l2_error": error.relative_l2,
        "rel_l2_error_interval": [error.low, error.high], "check_targets": error.samples,
        "ranks": best_ranks,
    }


def _sampled_error(fmm: DistributedFmm, comm, points, charges, potential, check_targets: int,
                   n: int, seed: int) -> ErrorEstimate:
    """The relative L2 error over all ``n`` targets (the points), estimated as
    :meth:`Fmm.estimate_error <fmmloopy.api.fmm.Fmm.estimate_error>` does from
    ``check_targets`` sampled ones (each rank samples its share) against a direct sum whose
    parts each rank adds over its own sources; the norm from every rank's results."""
    rng = np.random.default_rng([seed, comm.Get_rank(), 2])
    wanted = round(check_targets * len(points) / n)
    sample = rng.choice(len(points), size=min(wanted, len(points)), replace=False)
    targets = np.concatenate(comm.allgather(points[sample])).reshape(-1, 3)
    values = np.concatenate(comm.allgather(potential[sample]))
    # Each rank's part by the device's P2P kernel (DirectSum), with the rank's device.
    part = DirectSum(points, targets, kernel=fmm.kernel, device=fmm.device)(charges) \
        if len(points) else np.zeros(len(targets), values.dtype)
    expected = np.empty_like(part)
    comm.Allreduce(np.ascontiguousarray(part), expected)
    norm_squared = comm.allreduce(float((np.abs(potential) ** 2).sum()))
    norm_squared += float((np.abs(expected) ** 2).sum() - (np.abs(values) ** 2).sum())
    return estimate_from_errors(np.abs(values - expected) ** 2, norm_squared, n,
                                np.random.default_rng([seed, 3]))


def print_rank_table(ranks: list[dict]) -> None:
    """Each rank's points, essential tree, seconds and bytes, and the balance of compute."""
    print("rank  owned  ghosts  remote-M  leaves  compute s  comm s  waiting s  MB sent")
    for entry in ranks:
        print(f"{entry['rank']:4d} {entry['owned sources']:7d} {entry['ghost sources']:7d} "
              f"{entry['remote multipoles']:9d} {entry['owned leaves']:7d} "
              f"{entry.get('compute', 0.0):10.4f} {entry.get('communication', 0.0):7.4f} "
              f"{entry.get('waiting', 0.0):10.4f} {entry.get('bytes sent', 0.0) / 1e6:8.2f}")
    compute = np.array([entry.get("compute", 0.0) for entry in ranks])
    if compute.mean() > 0:
        print(f"balance: slowest rank's compute / mean = {compute.max() / compute.mean():.3f}")


def print_distributed_report(report: dict) -> None:
    """The report of :func:`run_distributed`, as ``fmmloopy distributed`` prints it."""
    print(f"{report['kernel']}: {report['n']} points ({report['distribution']}), order "
          f"{report['order']}, n_crit {report['n_crit']}, {report['ranks_count']} ranks on "
          f"{report['device']}")
    print(f"tree: depth {report['depth']}, {report['nleaves']} leaves")
    print("setup: " + ", ".join(f"{k} {v:.3f} s" for k, v in report["setup_seconds"].items()))
    seconds = report["eval_seconds"]
    print(f"evaluation: {seconds['total']:.3f} s (wall time); per step, the slowest rank: "
          + ", ".join(f"{step} {value:.4f}" for step, value in seconds.items()
                      if step != "total"))
    print_rank_table(report["ranks"])
    low, high = report["rel_l2_error_interval"]
    print(f"relative L2 error over all {report['n']} targets, estimated from "
          f"{report['check_targets']} sampled ones against direct summation: "
          f"{report['rel_l2_error']:.2e} (95 % interval {low:.2e} to {high:.2e})")
