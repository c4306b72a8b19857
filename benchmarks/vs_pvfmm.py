"""fmmloopy against PVFMM (C++ KIFMM) on the same points and charges, side by side.

Usage::

    python benchmarks/vs_pvfmm.py --pvfmm-src ~/src/pvfmm [--pvfmm-build ~/src/pvfmm/build]
        [--n 1000000] [--dist sphere,cube] [--order 6] [--m 6] [--ncrit 64 128 256]
        [--repeats 3] [--json]
    PVFMM_SRC=~/src/pvfmm python benchmarks/vs_pvfmm.py --n 100000 --repeats 1

PVFMM (https://github.com/dmalhotra/pvfmm, with its SCTL submodule; measured at commit 07a67a6)
is not a dependency: give its source tree with ``--pvfmm-src`` or ``$PVFMM_SRC`` and its CMake
build folder (holding ``libpvfmm`` and the generated ``pvfmm_config.h``) with ``--pvfmm-build``
or ``$PVFMM_BUILD`` (default: ``build`` inside the source). Without them, or when the driver does
not build, the script says why and exits 0 (skipped). PVFMM needs MPI, FFTW3 and BLAS/LAPACK
(Debian: ``apt-get install libopenmpi-dev openmpi-bin libfftw3-dev libopenblas-dev``); its
library is built with e.g.::

    cmake -S $PVFMM_SRC -B $PVFMM_BUILD -DCMAKE_BUILD_TYPE=Release \\
        -DCMAKE_CXX_FLAGS="-O3 -march=native" && make -C $PVFMM_BUILD -j2 pvfmm

(at 07a67a6 the CMake file asks for C++14 while SCTL's headers use ``std::aligned_alloc``, a
C++17 function: set ``CMAKE_CXX_STANDARD`` to 17 in its ``CMakeLists.txt`` first). Our own
driver, ``benchmarks/pvfmm_driver/laplace_driver.cpp``, calls PVFMM's particle-FMM API on
points and charges read from a file and writes the potentials back in input order; the script
builds it once into ``--cache-dir`` (keyed by the driver's source, PVFMM's headers, the library
and the flags) with ``mpicxx`` (``--cxx``; the command is in the driver's header comment), or
``--driver`` names one already built. The driver runs as one MPI rank, started plainly (MPI's
singleton start) or under ``--launcher`` (e.g. ``"mpirun -n 1 --allow-run-as-root"``).

What is compared. ``--n`` points, ``sphere`` (uniform on the unit sphere's surface) or ``cube``
(uniform in [-1, 1]^3), charges uniform in [0, 1), the same seed for both codes; potentials at
the sources themselves, ``sum_{j != i} q_j / (4 pi |x_i - x_j|)``: PVFMM's Laplace potential
kernel (``LaplaceKernel<double>::potential()``, potential only, no gradient) includes the
1/(4 pi) and skips r = 0, as fmmloopy's does. PVFMM wants its points in the unit cube: the
driver maps them there (translation and one scale ``s``) and multiplies the potentials by
``1 / s``. fmmloopy: ``fmmloopy.Fmm(points, order=..., n_crit=...)`` (``--n-crit``, default
``auto``, the chosen value printed), its defaults otherwise. PVFMM: multipole order ``--m``
(even; its equivalent surfaces have ``6 (m - 1)^2 + 2`` points, as fmmloopy's of order ``m``
do) and, for each ``--ncrit`` (most points per leaf, as exafmm-t's ncrit), PVFMM's
``max_pts = 2 ncrit``, the fastest reported as "best": PVFMM splits a leaf while its sources and
targets together number more than ``max_pts``, and here every point is both. The default
``--m 6`` gives PVFMM an error close to fmmloopy's at order 6 (measured on 20,000 sphere
points: m 6 2.6e-7, m 4 4.9e-5, m 8 2.8e-9; see the ``relative_l2_error`` columns).

How it is timed. Set-up (tree, lists, precomputed operators; fmmloopy also its OpenCL kernels)
is done once per code and point set and reported apart. fmmloopy's operators and kernels come
from its disk caches when they are there; PVFMM saves part of its precomputed operators to
``precomputed/Precomp_laplace_m<m>.data`` in ``--cache-dir`` and loads it from there at later
starts (the settings column says "computed" or "loaded"; its M2L operators are computed at
every start).
PVFMM's set-up is tree (unit-cube mapping and ``PtFMM_CreateTree``) + precomputation
(``PtFMM::Initialize``) + ``SetupFMM`` (interaction lists and per-tree operator data).
Evaluation: one warm-up each (its potentials give the errors), then ``--repeats`` rounds
alternating fmmloopy and every PVFMM driver (kept running, fed "eval" on stdin), the table
giving the minimum. fmmloopy's evaluation is the wall time of ``Fmm(charges)`` (upload, passes,
download, back to user order); PVFMM's is timed inside the driver (std::chrono):
``ClearFMMData``, then ``PtFMM_Evaluate`` with the charges (charges into tree order, upward
and downward passes, potentials back to input order), then the ``1 / s`` rescaling; writing the
file and the pipe round trip are not counted. Threads: fmmloopy's OpenCL (PoCL) uses every core;
the driver gets ``OMP_NUM_THREADS=--threads`` (default: all cores) and
``OPENBLAS_NUM_THREADS=1``. "cores busy" is CPU time over wall time of the timed runs. Errors:
relative L2 against a direct sum in numpy (``1 / (4 pi r)``, self excluded) on
``--check-targets`` sampled targets.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
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
from vs_exafmm import (
    direct_potential,
    make_problem,
    source_commit,
)

import fmmloopy
from fmmloopy.base.devices import choose_device, context_for

HERE = Path(__file__).resolve().parent
SUPPORT_HEADER = HERE / "driver_support.hpp"  # included by the driver
DRIVER_SOURCE = HERE / "pvfmm_driver" / "laplace_driver.cpp"
# The defines are those PVFMM's CMake build compiles libpvfmm with (its headers depend on them).
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-DSCTL_QUAD_T=__float128",
            "-DSCTL_HAVE_BLAS", "-DSCTL_HAVE_LAPACK", "-DSCTL_HAVE_FFTW")
LDFLAGS = "-lfftw3 -lfftw3f -lopenblas"


def _library(build: Path) -> Path | None:
    for name in ("libpvfmm.so", "libpvfmm.a"):
        if (build / name).is_file():
            return build / name
    return None


def build_driver(source: Path | None, build: Path | None, cache_dir: Path, cxx: str,
                 ldflags: str) -> Path:
    """The driver built against PVFMM's ``source`` and ``build``, from ``cache_dir`` when built
    before; raises :class:`Skipped` with the reason when something is missing or it does not
    build."""
    if source is None:
        raise Skipped("no PVFMM source: give --pvfmm-src PATH or set PVFMM_SRC "
                      "(git clone --recursive https://github.com/dmalhotra/pvfmm)")
    include = source / "include"
    sctl = source / "SCTL" / "include"
    if not (include / "pvfmm.hpp").is_file():
        raise Skipped(f"{source} is not a PVFMM source tree (no include/pvfmm.hpp)")
    if not (sctl / "sctl.hpp").is_file():
        raise Skipped(f"{source} has no SCTL submodule (no SCTL/include/sctl.hpp): "
                      "git submodule update --init")
    build = build if build is not None else source / "build"
    library = _library(build)
    if library is None or not (build / "pvfmm_config.h").is_file():
        raise Skipped(f"{build} is not a PVFMM build folder (libpvfmm.so or .a and "
                      "pvfmm_config.h): build PVFMM with CMake and give --pvfmm-build")
    compiler = shutil.which(cxx)
    if compiler is None:
        raise Skipped(f"no MPI C++ compiler {cxx!r} (--cxx; Debian: libopenmpi-dev)")
    command = [compiler, *CXXFLAGS, f"-I{include}", f"-I{sctl}", f"-I{build}",
               str(DRIVER_SOURCE), "-o", "OUT", f"-L{build}", f"-Wl,-rpath,{build}", "-lpvfmm",
               *shlex.split(ldflags)]
    inputs = [DRIVER_SOURCE.read_bytes(), SUPPORT_HEADER.read_bytes(),
              (build / "pvfmm_config.h").read_bytes(),
              library.read_bytes()]
    for folder in (include, sctl, sctl / "sctl"):
        inputs += [header.name.encode() + header.read_bytes()
                   for header in sorted(folder.glob("*.*")) if header.is_file()]
    return build_cached(command, inputs, cache_dir, "PVFMM")


def pvfmm_driver(driver: Path, problem_file: Path, workdir: Path, m: int, ncrit: int,
                 precomp_dir: Path, threads: int, launcher: list[str]) -> ServedDriver:
    """One running ``laplace_driver --serve`` of PVFMM (``.m``, ``.ncrit`` and ``.name`` set).
    PVFMM's ``max_pts`` counts sources and targets, and the points are both: ``2 ncrit``."""
    output = workdir / f"potential_m{m}_ncrit{ncrit}.bin"
    command = [*launcher, str(driver), "--input", str(problem_file), "--output", str(output),
               "--m", str(m), "--max-pts", str(2 * ncrit), "--precomp-dir", str(precomp_dir),
               "--serve"]
    running = ServedDriver(f"PVFMM driver (m {m}, ncrit {ncrit})", command, output,
                           workdir / f"driver_m{m}_ncrit{ncrit}.log",
                           {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1",
                            "OMPI_ALLOW_RUN_AS_ROOT": "1",
                            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    running.m, running.ncrit = m, ncrit
    running.name = f"pvfmm m={m} ncrit={ncrit}"
    return running


def compare(dist: str, n: int, driver: Path, args: argparse.Namespace) -> dict:
    """Set-up, minimum evaluation time and error of fmmloopy and PVFMM (each m and ncrit)."""
    points, charges = make_problem(dist, n, args.seed)
    sample = np.random.default_rng(args.seed + 1).choice(n, min(args.check_targets, n),
                                                         replace=False)
    reference = direct_potential(points, charges, sample)
    precomp_dir = args.cache_dir / "precomputed"  # Laplace is scale invariant: one file per m
    precomp_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="vs_pvfmm_") as workdir:
        workdir = Path(workdir)
        problem_file = workdir / "problem.bin"
        write_problem(problem_file, points, charges)

        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
        fmm_setup = time.perf_counter() - clock

        drivers: list[ServedDriver] = []
        try:
            for m in args.m:  # one after another: the first of each m may write its file
                for ncrit in args.ncrit:
                    drivers.append(pvfmm_driver(driver, problem_file, workdir, m, ncrit,
                                               precomp_dir, args.threads, args.launcher))
            names = ["fmmloopy"] + [d.name for d in drivers]

            errors, times, cpu_times = time_alternated(fmm, charges, drivers, names, sample,
                                                       reference, args.repeats)
        finally:
            for d in drivers:
                d.close()

    codes = {"fmmloopy": fmmloopy_entry(fmm, args.order, args.n_crit, fmm_setup)}
    for name, d in zip(names[1:], drivers, strict=True):
        setup = d.setup
        stages = ("tree_seconds", "precompute_seconds", "setup_fmm_seconds")
        precompute = "loaded" if setup["precompute_loaded"] else "computed"
        codes[name] = {
            "settings": f"m {d.m}, ncrit {d.ncrit} (max_pts {setup['max_pts']}), "
                        f"precompute {precompute}",
            "m": d.m, "ncrit": d.ncrit, "max_pts": setup["max_pts"],
            "max_leaf_points": setup["max_leaf_points"],
            "setup_seconds": sum(setup[key] for key in stages),
            "setup_stages": {key: setup[key] for key in stages},
            "start_seconds": d.start_seconds,
            "precompute_loaded": setup["precompute_loaded"], "eval_stages": d.last_stages,
            "tree_depth": setup["depth"], "leaves": setup["leaves"],
            "omp_threads": setup["threads"], "unit_cube_scale": setup["scale"]}
    best = summarise(codes, times, cpu_times, errors, names[1:])
    return {"distribution": dist, "n": n, "order": args.order, "repeats": args.repeats,
            "check_targets": len(sample), "best_pvfmm": best, "codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pvfmm-src", type=Path, default=os.environ.get("PVFMM_SRC"),
                        help="PVFMM's source tree, SCTL submodule included "
                             "(default: $PVFMM_SRC)")
    parser.add_argument("--pvfmm-build", type=Path, default=os.environ.get("PVFMM_BUILD"),
                        help="PVFMM's CMake build folder (default: $PVFMM_BUILD, else build "
                             "inside the source)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir("pvfmm"),
                        help="where the driver and PVFMM's precomputed operators go "
                             "(default: %(default)s)")
    parser.add_argument("--cxx", default=os.environ.get("MPICXX", "mpicxx"))
    parser.add_argument("--ldflags", default=LDFLAGS,
                        help="libraries for the driver besides -lpvfmm (default: %(default)r)")
    parser.add_argument("--launcher", type=shlex.split, default=[],
                        help="command before the driver, e.g. 'mpirun -n 1' (default: none, "
                             "MPI's singleton start)")
    parser.add_argument("--m", type=int, nargs="+", default=[6],
                        help="PVFMM's multipole orders (even), each run (default: 6)")
    parser.add_argument("--ncrit", type=int, nargs="+", default=[64, 128, 256],
                        help="most points per PVFMM leaf (its max_pts is twice that), each run "
                             "(default: 64 128 256)")
    add_problem_arguments(parser, "PVFMM")
    args = parser.parse_args()
    dists = checked_distributions(parser, args)
    if min(args.m) < 2 or any(m % 2 for m in args.m):
        parser.error("--m takes even numbers >= 2 (PVFMM's multipole order)")

    driver = driver_or_skip(
        args, lambda: build_driver(args.pvfmm_src, args.pvfmm_build, args.cache_dir, args.cxx,
                                   args.ldflags),
        "vs_pvfmm")
    if driver is None:
        return

    context_for(choose_device())  # OpenCL's start-up is no part of fmmloopy's set-up
    rows = compare_all(args, dists, lambda dist, n: compare(dist, n, driver, args),
                       "PVFMM", "best_pvfmm")
    print_report(args, rows, driver, args.pvfmm_src, "pvfmm", "PVFMM",
                 "PVFMM computes potentials only, as fmmloopy", source_commit)


if __name__ == "__main__":
    main()
