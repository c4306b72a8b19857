"""Real against ideal speed-up of the distributed FMM (clOpenCL's measure), on this machine.

    python benchmarks/scale_out.py --n 1000000 --ranks 2 --threads 1

runs, one after the other, on the same points (the global sequence of
:func:`fmmloopy.cli.distributed.rank_share`):

1. one process with ``--threads`` PoCL threads: ``fmmloopy.Fmm`` (the baseline, T1) and
   ``DistributedFmm`` on one rank;
2. ``mpiexec -n R`` ranks with ``--threads`` PoCL threads each: ``DistributedFmm``.

It prints the evaluation's wall time (median of ``--repeats``), the speed-up T1 / T_R and
real/ideal = T1 / (R T_R), each rank's compute, communication and waiting seconds and bytes
sent, the set-up times, and the largest difference between the R-rank and the one-process
potentials relative to the largest potential. ``--json FILE`` writes it all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def worker(args: argparse.Namespace) -> None:
    """One rank of a run (under mpiexec): time the FMMs, write JSON and potentials."""
    from mpi4py import MPI

    import fmmloopy
    from fmmloopy.cli.distributed import rank_share

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    indices, points, charges = rank_share(args.distribution, args.n, args.seed, rank, size)
    result: dict = {"ranks": size}
    if size == 1:
        clock = time.perf_counter()
        single = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
        result["single_setup"] = time.perf_counter() - clock
        seconds = []
        for _ in range(args.repeats):
            clock = time.perf_counter()
            reference = single(charges)
            seconds.append(time.perf_counter() - clock)
        result["single_eval"] = float(np.median(seconds))
        result["single_eval_all"] = seconds
        result["n_crit"] = single.n_crit
        result["single_steps"] = single.eval_seconds
        np.save(Path(args.output) / "single.npy", reference)
        del single
    comm.Barrier()
    clock = MPI.Wtime()
    fmm = fmmloopy.DistributedFmm(points, order=args.order, n_crit=args.n_crit)
    setup = comm.allreduce(MPI.Wtime() - clock, op=MPI.MAX)
    walls, reports = [], []
    for _ in range(args.repeats):
        comm.Barrier()
        clock = MPI.Wtime()
        potential = fmm(charges)
        walls.append(comm.allreduce(MPI.Wtime() - clock, op=MPI.MAX))
        reports.append(fmm.report())
    median = int(np.argsort(walls)[len(walls) // 2])
    result |= {"distributed_setup": setup, "distributed_eval": walls[median],
               "distributed_eval_all": walls, "per_rank": reports[median],
               "setup_per_rank": comm.gather(fmm.setup_seconds, root=0),
               "distributed_n_crit": fmm.n_crit}
    parts = comm.gather((indices, potential), root=0)
    if rank == 0:
        full = np.empty(args.n)
        for where, values in parts:
            full[where] = values
        np.save(Path(args.output) / f"distributed{size}.npy", full)
        (Path(args.output) / f"run{size}.json").write_text(json.dumps(result))


def launch(ranks: int, args: argparse.Namespace, folder: str) -> dict:
    """Run :func:`worker` under ``mpiexec -n ranks``; its JSON."""
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    environment = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(args.threads))
    environment.pop("PYTHONUNBUFFERED", None)
    command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker",
               "--output", folder, *sys.argv[1:]]
    subprocess.run(command, check=True, env=environment)
    return json.loads((Path(folder) / f"run{ranks}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="PoCL threads per rank")
    parser.add_argument("--distribution", default="sphere")
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--n-crit", type=lambda text: text if text == "auto" else int(text),
                        default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        one = launch(1, args, folder)
        many = launch(args.ranks, args, folder)
        single = np.load(Path(folder) / "single.npy")
        distributed = np.load(Path(folder) / f"distributed{args.ranks}.npy")
    difference = float(np.abs(distributed - single).max() / np.abs(single).max())
    t1, tr = one["single_eval"], many["distributed_eval"]
    summary = {"n": args.n, "distribution": args.distribution, "order": args.order,
               "ranks": args.ranks, "threads_per_rank": args.threads,
               "n_crit": one["n_crit"], "single_eval": t1,
               "distributed_eval_1_rank": one["distributed_eval"], "distributed_eval": tr,
               "speedup": t1 / tr, "real_over_ideal": t1 / (args.ranks * tr),
               "max_difference": difference, "single_setup": one["single_setup"],
               "distributed_setup": many["distributed_setup"], "per_rank": many["per_rank"],
               "setup_per_rank": many["setup_per_rank"]}
    print(f"{args.n} {args.distribution} points, order {args.order}, n_crit {one['n_crit']}, "
          f"{args.threads} PoCL thread(s) per process")
    print(f"one process, fmmloopy.Fmm:          {t1:.3f} s per evaluation "
          f"(set-up {one['single_setup']:.2f} s)")
    print(f"one rank, DistributedFmm:           {one['distributed_eval']:.3f} s")
    print(f"{args.ranks} ranks, DistributedFmm:          {tr:.3f} s "
          f"(set-up {many['distributed_setup']:.2f} s)")
    print(f"speed-up {t1 / tr:.3f}, real/ideal {t1 / (args.ranks * tr):.3f}; "
          f"largest difference from one process {difference:.2e} of the largest potential")
    print("rank  owned  ghosts  remote-M  compute s  comm s  waiting s  MB sent")
    for entry in many["per_rank"]:
        print(f"{entry['rank']:4d} {entry['owned sources']:7d} {entry['ghost sources']:7d} "
              f"{entry['remote multipoles']:9d} {entry['compute']:10.4f} "
              f"{entry['communication']:7.4f} {entry['waiting']:10.4f} "
              f"{entry['bytes sent'] / 1e6:8.2f}")
    steps = [step for step in one["single_steps"] if step in many["per_rank"][0]]
    print("step           one process   " + "  ".join(f"rank {entry['rank']}"
                                                     for entry in many["per_rank"])
          + "   sum of ranks / one process")
    for step in steps:
        values = [entry.get(step, 0.0) for entry in many["per_rank"]]
        print(f"{step:14s} {one['single_steps'][step]:10.4f}  "
              + "  ".join(f"{value:6.4f}" for value in values)
              + f"   {sum(values) / max(one['single_steps'][step], 1e-9):6.3f}")
    summary["single_steps"] = one["single_steps"]
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
