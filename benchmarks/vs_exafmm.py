"""fmmloopy against exafmm-t (C++ KIFMM) on the same points and charges, side by side.

Usage::

    python benchmarks/vs_exafmm.py --exafmm-src ~/src/exafmm-t [--n 1000000]
        [--dist sphere,cube] [--order 6] [--ncrit 150 400] [--repeats 3] [--json]
    EXAFMM_T_SRC=~/src/exafmm-t python benchmarks/vs_exafmm.py --n 100000 --repeats 1

exafmm-t (https://github.com/exafmm/exafmm-t, header-only C++; measured at commit ed6d0ec) is
not a dependency: give its source tree with ``--exafmm-src`` or ``$EXAFMM_T_SRC``. Without one,
or when the driver does not build, the script says why and exits 0 (skipped). It needs FFTW3
and BLAS/LAPACK (Debian: ``apt-get install libfftw3-dev libopenblas-dev``). Our own driver,
``benchmarks/exafmm_driver/laplace_driver.cpp``, calls exafmm-t's API on points and charges read
from a file and writes the potentials back in input order; the script builds it once into
``--cache-dir`` (keyed by the driver's source, exafmm-t's headers and the flags)::

    g++ -std=c++14 -O3 -march=native -fopenmp -I$EXAFMM_T_SRC/include \\
        benchmarks/exafmm_driver/laplace_driver.cpp -o laplace_driver -lfftw3 -lopenblas

(double precision, exafmm-t's default; ``--cxx`` and ``--ldflags`` change compiler and
libraries), or ``--driver`` names one already built.

What is compared. ``--n`` points, ``sphere`` (uniform on the unit sphere's surface) or ``cube``
(uniform in [-1, 1]^3), charges uniform in [0, 1), the same seed for both codes; potentials at
the sources themselves, ``sum_{j != i} q_j / (4 pi |x_i - x_j|)``: exafmm-t's Laplace kernel
includes the 1/(4 pi) and skips r = 0, as fmmloopy's does. Both use KIFMM surfaces of
``6 (order - 1)^2 + 2`` points (fmmloopy's ``order``, exafmm-t's ``P``: the same number).
fmmloopy: ``fmmloopy.Fmm(points, order=..., n_crit=...)`` (``--n-crit``, default ``auto``, the
chosen value printed), its defaults otherwise; exafmm-t: each
``--ncrit`` (most points per leaf; its example uses 400), the fastest reported as "best".
exafmm-t always computes the gradient as well as the potential at every target (its P2P, M2P and
L2P use its gradient kernel; there is no potential-only evaluation in its API), so its evaluation
does more work than fmmloopy's; its P2P share is in the JSON (``stages``).

How it is timed. Set-up (tree, lists, precomputed operators; fmmloopy also its OpenCL kernels) is
done once per code and point set and reported apart. fmmloopy's operators and kernels come from
its disk caches when they are there (the first point set loads them, later ones find them in the
process; the OpenCL context is made before any timing); exafmm-t saves its precomputed matrices
to a file in ``--cache-dir`` and loads them when the bounding box matches exactly (the settings
column says "computed" or "loaded"). In a checkout whose recipes are not byte for byte as shipped,
fmmloopy's set-up includes first-use verification and kernels built anew (the settings column
gives the verification's share). Evaluation: one warm-up each (its potentials give the
errors), then ``--repeats`` rounds alternating fmmloopy and every exafmm-t driver (kept running,
fed "eval" on stdin), the table giving the minimum. fmmloopy's evaluation is the wall time of
``Fmm(charges)`` (upload, passes, download, back to user order); exafmm-t's is timed inside the
driver (std::chrono): zeroing its accumulators, the eight operators, potentials back to input
order; writing the file and the pipe round trip are not counted. Threads: fmmloopy's OpenCL
(PoCL) uses every core; the driver gets ``OMP_NUM_THREADS=--threads`` (default: all cores) and
``OPENBLAS_NUM_THREADS=1`` (exafmm-t calls BLAS inside its OpenMP loops). "cores busy" is CPU
time over wall time of the timed runs. Errors: relative L2 against a direct sum in numpy
(``1 / (4 pi r)``, self excluded) on ``--check-targets`` sampled targets.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from peer_process import (
    ServedDriver,
    Skipped,
    add_problem_arguments,
    build_cached,
    checked_distributions,
    compare_all,
    default_cache_dir,
    driver_or_skip,
    fmmloopy_entry,
    print_report,
    summarise,
    time_alternated,
    write_problem,
)

import fmmloopy
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.distributions import sphere_surface, uniform_cube

HERE = Path(__file__).resolve().parent
SUPPORT_HEADER = HERE / "driver_support.hpp"  # included by the driver
DRIVER_SOURCE = HERE / "exafmm_driver" / "laplace_driver.cpp"
CXXFLAGS = ("-std=c++14", "-O3", "-march=native", "-fopenmp")
LDFLAGS = "-lfftw3 -lopenblas"


def make_problem(dist: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of ``dist`` (``(n, 3)``) and charges uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    if dist == "sphere":
        points = sphere_surface(n, rng)
    elif dist == "cube":
        points = 2.0 * uniform_cube(n, rng) - 1.0  # [-1, 1]^3
    else:
        raise ValueError(f"unknown distribution {dist!r} (sphere, cube)")
    return points, rng.random(n)


def direct_potential(points: np.ndarray, charges: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``sum_{j, x_j != x_i} q_j / (4 pi |x_i - x_j|)`` at the points ``index``, in numpy."""
    result = np.empty(len(index))
    rows = max(1, 2 ** 21 // len(points))
    for start in range(0, len(index), rows):
        offsets = points[index[start:start + rows], None, :] - points[None, :, :]
        distance = np.sqrt(np.einsum("ijk,ijk->ij", offsets, offsets))
        with np.errstate(divide="ignore"):
            inverse = np.where(distance > 0, 1.0 / distance, 0.0)
        result[start:start + rows] = inverse @ charges
    return result / (4 * np.pi)


def source_commit(source: Path) -> str | None:
    """The git commit of exafmm-t's source tree, when it is a git work tree."""
    try:
        done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def build_driver(source: Path | None, cache_dir: Path, cxx: str, ldflags: str) -> Path:
    """The driver built against ``source``, from ``cache_dir`` when built before; raises
    :class:`Skipped` with the reason when there is no source or it does not build."""
    if source is None:
        raise Skipped("no exafmm-t source: give --exafmm-src PATH or set EXAFMM_T_SRC "
                      "(git clone https://github.com/exafmm/exafmm-t)")
    include = source / "include"
    if not (include / "laplace.h").is_file():
        raise Skipped(f"{source} is not an exafmm-t source tree (no include/laplace.h)")
    compiler = shutil.which(cxx)
    if compiler is None:
        raise Skipped(f"no C++ compiler {cxx!r} (--cxx)")
    command = [compiler, *CXXFLAGS, f"-I{include}", str(DRIVER_SOURCE), "-o", "OUT",
               *shlex.split(ldflags)]
    headers = [header.name.encode() + header.read_bytes()
               for header in sorted(include.glob("*.h"))]
    sources = [DRIVER_SOURCE.read_bytes(), SUPPORT_HEADER.read_bytes(), *headers]
    return build_cached(command, sources, cache_dir, "exafmm-t")


def exafmm_driver(driver: Path, problem_file: Path, workdir: Path, order: int, ncrit: int,
                  matrix_file: Path, threads: int) -> ServedDriver:
    """One running ``laplace_driver --serve`` of exafmm-t (``.ncrit`` set)."""
    command = [str(driver), "--input", str(problem_file),
               "--output", str(workdir / f"potential_ncrit{ncrit}.bin"), "--order", str(order),
               "--ncrit", str(ncrit), "--matrix-file", str(matrix_file), "--serve"]
    running = ServedDriver(f"exafmm-t driver (ncrit {ncrit})", command,
                           workdir / f"potential_ncrit{ncrit}.bin",
                           workdir / f"driver_ncrit{ncrit}.log",
                           {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"})
    running.ncrit = ncrit
    return running


def compare(dist: str, n: int, driver: Path, args: argparse.Namespace) -> dict:
    """Set-up, minimum evaluation time and error of fmmloopy and exafmm-t (each ncrit)."""
    points, charges = make_problem(dist, n, args.seed)
    sample = np.random.default_rng(args.seed + 1).choice(n, min(args.check_targets, n),
                                                         replace=False)
    reference = direct_potential(points, charges, sample)
    matrix_dir = driver.parent / "matrices"
    matrix_dir.mkdir(exist_ok=True)
    # exafmm-t's matrices depend on the bounding box's radius: one file per point set.
    matrix_file = matrix_dir / f"laplace_d_p{args.order}_{dist}_n{n}_seed{args.seed}.dat"

    with tempfile.TemporaryDirectory(prefix="vs_exafmm_") as workdir:
        workdir = Path(workdir)
        problem_file = workdir / "problem.bin"
        write_problem(problem_file, points, charges)

        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
        fmm_setup = time.perf_counter() - clock

        drivers: list[ServedDriver] = []
        try:
            for ncrit in args.ncrit:  # one after another: the first may write the matrices
                drivers.append(exafmm_driver(driver, problem_file, workdir, args.order, ncrit,
                                            matrix_file, args.threads))
            names = ["fmmloopy"] + [f"exafmm-t ncrit={d.ncrit}" for d in drivers]

            errors, times, cpu_times = time_alternated(fmm, charges, drivers, names, sample,
                                                       reference, args.repeats)
        finally:
            for d in drivers:
                d.close()

    codes = {"fmmloopy": fmmloopy_entry(fmm, args.order, args.n_crit, fmm_setup)}
    for name, d in zip(names[1:], drivers, strict=True):
        setup = d.setup
        seconds = setup["tree_seconds"] + setup["lists_seconds"] + setup["precompute_seconds"]
        precompute = "loaded" if setup["precompute_loaded"] else "computed"
        codes[name] = {
            "settings": f"P {args.order}, ncrit {d.ncrit}, precompute {precompute}",
            "setup_seconds": seconds,
            "setup_stages": {key: setup[key] for key in
                             ("tree_seconds", "lists_seconds", "precompute_seconds")},
            "precompute_loaded": setup["precompute_loaded"], "eval_stages": d.last_stages,
            "tree_depth": setup["depth"], "leaves": setup["leaves"],
            "omp_threads": setup["threads"], "simd_bytes": setup["simd_bytes"]}
    best = summarise(codes, times, cpu_times, errors, names[1:])
    return {"distribution": dist, "n": n, "order": args.order, "repeats": args.repeats,
            "check_targets": len(sample), "best_exafmm": best, "codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exafmm-src", type=Path, default=os.environ.get("EXAFMM_T_SRC"),
                        help="exafmm-t's source tree (default: $EXAFMM_T_SRC)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir("exafmm-t"),
                        help="where the driver and exafmm-t's matrix files go "
                             "(default: %(default)s)")
    parser.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    parser.add_argument("--ldflags", default=LDFLAGS,
                        help="libraries for the driver (default: %(default)r)")
    parser.add_argument("--ncrit", type=int, nargs="+", default=[150, 400],
                        help="exafmm-t's, each run (default: 150 400)")
    add_problem_arguments(parser, "exafmm-t")
    args = parser.parse_args()
    dists = checked_distributions(parser, args)

    driver = driver_or_skip(
        args, lambda: build_driver(args.exafmm_src, args.cache_dir, args.cxx, args.ldflags),
        "vs_exafmm")
    if driver is None:
        return

    context_for(choose_device())  # OpenCL's start-up is no part of fmmloopy's set-up
    rows = compare_all(args, dists, lambda dist, n: compare(dist, n, driver, args),
                       "exafmm-t", "best_exafmm")
    print_report(args, rows, driver, args.exafmm_src, "exafmm", "exafmm-t",
                 "exafmm-t also computes gradients", source_commit)


if __name__ == "__main__":
    main()
