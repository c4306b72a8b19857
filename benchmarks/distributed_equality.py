"""The distributed FMM against the single-process one on the same points, for R ranks.

    python benchmarks/distributed_equality.py --n 200000 --ranks 1 2 3 4

For each R it starts ``mpiexec -n R`` ranks; each draws its share of the sources (and, for the
case with separate targets, of 0.4 n targets in a box around the unit cube) of the global point
sequence (:func:`fmmloopy.cli.distributed.rank_share`), runs ``fmmloopy.DistributedFmm``, and rank
0 gathers the potentials and compares them with ``fmmloopy.Fmm`` over all the points: the largest
difference relative to the largest potential and the relative L2 difference. Cases: sphere,
uniform cube, Plummer cluster (targets = sources) and cube sources with separate targets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

CASES = (("sphere", False), ("cube", False), ("plummer", False), ("cube", True))


def worker(args: argparse.Namespace) -> None:
    from mpi4py import MPI

    import fmmloopy
    from fmmloopy.cli.distributed import rank_share

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    for distribution, separate in CASES:
        _, sources, charges = rank_share(distribution, args.n, args.seed, rank, size)
        targets = None
        if separate:
            _, targets, _ = rank_share("cube", int(0.4 * args.n), args.seed + 1, rank, size)
            targets = 1.4 * targets - 0.2
        fmm = fmmloopy.DistributedFmm(sources, targets, order=args.order)
        potential = fmm(charges)
        parts = comm.gather((sources, targets, charges, potential), root=0)
        if rank == 0:
            all_sources = np.concatenate([part[0] for part in parts])
            all_targets = None if targets is None else np.concatenate([p[1] for p in parts])
            reference = fmmloopy.Fmm(all_sources, all_targets, order=args.order)(
                np.concatenate([part[2] for part in parts]))
            got = np.concatenate([part[3] for part in parts])
            largest = np.abs(got - reference).max() / np.abs(reference).max()
            l2 = np.linalg.norm(got - reference) / np.linalg.norm(reference)
            print(f"| {size} | {distribution}{' (targets != sources)' if separate else ''} "
                  f"| {fmm.n_crit} | {fmm.skeleton.nboxes} | {largest:.2e} | {l2:.2e} |",
                  flush=True)
        comm.Barrier()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    environment = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")
    print("| ranks | points | n_crit | boxes | largest difference / largest potential "
          "| relative L2 difference |\n|---|---|---|---|---|---|", flush=True)
    for ranks in args.ranks:
        subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker",
                        "--n", str(args.n), "--order", str(args.order),
                        "--seed", str(args.seed)], check=True, env=environment)


if __name__ == "__main__":
    main()
