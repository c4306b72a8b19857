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
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from vs_exafmm import (
    CORES,
    _cpu_seconds,
    direct_potential,
    make_problem,
    relative_error,
    source_commit,
)

import fmmloopy
from fmmloopy.base.devices import choose_device, context_for

HERE = Path(__file__).resolve().parent
DRIVER_SOURCE = HERE / "pvfmm_driver" / "laplace_driver.cpp"
# The defines are those PVFMM's CMake build compiles libpvfmm with (its headers depend on them).
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-DSCTL_QUAD_T=__float128",
            "-DSCTL_HAVE_BLAS", "-DSCTL_HAVE_LAPACK", "-DSCTL_HAVE_FFTW")
LDFLAGS = "-lfftw3 -lfftw3f -lopenblas"


class Skipped(Exception):
    """PVFMM's source or build is missing or the driver does not build: nothing to compare."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmmloopy-benchmarks" / "pvfmm"


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
    digest = hashlib.sha256(DRIVER_SOURCE.read_bytes())
    for folder in (include, sctl, sctl / "sctl"):
        for header in sorted(folder.glob("*.*")):
            if header.is_file():
                digest.update(header.name.encode() + header.read_bytes())
    digest.update((build / "pvfmm_config.h").read_bytes() + library.read_bytes())
    digest.update(" ".join(command).encode())
    target = cache_dir / digest.hexdigest()[:16] / "laplace_driver"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"laplace_driver.{os.getpid()}.partial")
    command[command.index("OUT")] = str(partial)
    print(f"building the PVFMM driver: {shlex.join(command)}", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise Skipped(f"the PVFMM driver did not build ({shlex.join(command)}):\n"
                      f"{done.stderr[-3000:]}")
    os.replace(partial, target)
    return target


class PvfmmDriver:
    """One running ``laplace_driver --serve``: set up on start, one evaluation per call."""

    def __init__(self, driver: Path, problem_file: Path, workdir: Path, m: int, ncrit: int,
                 precomp_dir: Path, threads: int, launcher: list[str]):
        self.m, self.ncrit = m, ncrit
        self.output = workdir / f"potential_m{m}_ncrit{ncrit}.bin"
        self._log = open(workdir / f"driver_m{m}_ncrit{ncrit}.log", "w+")
        #: The stage times of the latest evaluation.
        self.last_stages: dict[str, float] = {}
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1",
                            "OMPI_ALLOW_RUN_AS_ROOT": "1",
                            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
        # PVFMM's max_pts counts sources and targets: the points are both.
        self.command = [*launcher, str(driver), "--input", str(problem_file),
                        "--output", str(self.output), "--m", str(m), "--max-pts", str(2 * ncrit),
                        "--precomp-dir", str(precomp_dir), "--serve"]
        clock = time.perf_counter()
        self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, text=True,
                                         env=env)
        #: The driver's set-up line (tree, precompute, SetupFMM seconds, depth, leaves...).
        self.setup = self._reply("setup")
        #: Wall seconds from start to set-up done, MPI's start and reading the input included.
        self.start_seconds = time.perf_counter() - clock

    @property
    def name(self) -> str:
        return f"pvfmm m={self.m} ncrit={self.ncrit}"

    def _reply(self, event: str) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._log.seek(0)
            raise RuntimeError(f"PVFMM driver (m {self.m}, ncrit {self.ncrit}) ended with "
                               f"status {self._process.returncode}: {self._log.read()[-2000:]}"
                               f"\ncommand: {shlex.join(self.command)}")
        reply = json.loads(line)
        if reply.get("event") != event:
            raise RuntimeError(f"PVFMM driver: expected {event!r}, got {line!r}")
        return reply

    def evaluate(self) -> dict:
        """One evaluation: the driver's JSON line (``seconds``, ``cpu_seconds``, ``stages``)."""
        self._process.stdin.write("eval\n")
        self._process.stdin.flush()
        return self._reply("eval")

    def potential(self) -> np.ndarray:
        return np.fromfile(self.output, dtype=np.float64)

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


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
        with open(problem_file, "wb") as file:
            np.ascontiguousarray(points).tofile(file)
            charges.tofile(file)

        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
        fmm_setup = time.perf_counter() - clock

        drivers: list[PvfmmDriver] = []
        try:
            for m in args.m:  # one after another: the first of each m may write its file
                for ncrit in args.ncrit:
                    drivers.append(PvfmmDriver(driver, problem_file, workdir, m, ncrit,
                                               precomp_dir, args.threads, args.launcher))
            names = ["fmmloopy"] + [d.name for d in drivers]

            def run_fmmloopy() -> tuple[float, float]:
                cpu, clock = _cpu_seconds(), time.perf_counter()
                fmm(charges)
                return time.perf_counter() - clock, _cpu_seconds() - cpu

            def run_driver(d: PvfmmDriver) -> tuple[float, float]:
                reply = d.evaluate()
                d.last_stages = reply["stages"]
                return reply["seconds"], reply["cpu_seconds"]

            runners = [run_fmmloopy] + [lambda d=d: run_driver(d) for d in drivers]
            errors = {"fmmloopy": relative_error(fmm(charges)[sample], reference)}  # warm-up
            for name, d in zip(names[1:], drivers, strict=True):
                run_driver(d)
                errors[name] = relative_error(d.potential()[sample], reference)
            times = {name: [] for name in names}
            cpu_times = {name: [] for name in names}
            for _ in range(args.repeats):  # alternating
                for name, run in zip(names, runners, strict=True):
                    seconds, cpu = run()
                    times[name].append(seconds)
                    cpu_times[name].append(cpu)
        finally:
            for d in drivers:
                d.close()

    chosen = " (auto)" if args.n_crit == "auto" else ""
    settings = f"order {args.order}, n_crit {fmm.n_crit}{chosen}"
    if fmm.setup_seconds.get("verify"):  # recipes not as shipped: first-use verification
        settings += f", set-up incl. {fmm.setup_seconds['verify']:.2f} s recipe verification"
    codes = {"fmmloopy": {
        "settings": settings,
        "setup_seconds": fmm_setup, "setup_stages": dict(fmm.setup_seconds),
        "eval_stages": dict(fmm.eval_seconds), "tree_depth": int(fmm.tree.nlevels) - 1}}
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
    for name, code in codes.items():
        code["eval_seconds"] = min(times[name])
        code["eval_seconds_all"] = times[name]
        code["cores_busy"] = sum(cpu_times[name]) / sum(times[name])
        code["relative_l2_error"] = errors[name]
    pvfmm_names = names[1:]
    best = min(pvfmm_names, key=lambda name: codes[name]["eval_seconds"])
    fastest = codes["fmmloopy"]["eval_seconds"]
    for name in pvfmm_names:
        codes[name]["eval_ratio_to_fmmloopy"] = codes[name]["eval_seconds"] / fastest
        codes[name]["setup_ratio_to_fmmloopy"] = (codes[name]["setup_seconds"]
                                                  / codes["fmmloopy"]["setup_seconds"])
    return {"distribution": dist, "n": n, "order": args.order, "repeats": args.repeats,
            "check_targets": len(sample), "best_pvfmm": best, "codes": codes}


TABLE_HEADER = ("| distribution | N | code | settings | set-up s | evaluation s | rel. L2 error "
                "| cores busy | PVFMM / fmmloopy |\n"
                "|---|---:|---|---|---:|---:|---:|---:|---:|")


def table_rows(row: dict) -> list[str]:
    lines = []
    for name, code in row["codes"].items():
        label = name.split(" ")[0] + (" (best)" if name == row["best_pvfmm"] else "")
        ratio = code.get("eval_ratio_to_fmmloopy")
        lines.append(f"| {row['distribution']} | {row['n']} | {label} | {code['settings']} "
                     f"| {code['setup_seconds']:.3f} | {code['eval_seconds']:.3f} "
                     f"| {code['relative_l2_error']:.2e} | {code['cores_busy']:.2f} "
                     f"| {'' if ratio is None else f'{ratio:.2f}'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pvfmm-src", type=Path, default=os.environ.get("PVFMM_SRC"),
                        help="PVFMM's source tree, SCTL submodule included "
                             "(default: $PVFMM_SRC)")
    parser.add_argument("--pvfmm-build", type=Path, default=os.environ.get("PVFMM_BUILD"),
                        help="PVFMM's CMake build folder (default: $PVFMM_BUILD, else build "
                             "inside the source)")
    parser.add_argument("--driver", type=Path,
                        help="a laplace_driver already built (skips building)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="where the driver and PVFMM's precomputed operators go "
                             "(default: %(default)s)")
    parser.add_argument("--cxx", default=os.environ.get("MPICXX", "mpicxx"))
    parser.add_argument("--ldflags", default=LDFLAGS,
                        help="libraries for the driver besides -lpvfmm (default: %(default)r)")
    parser.add_argument("--launcher", type=shlex.split, default=[],
                        help="command before the driver, e.g. 'mpirun -n 1' (default: none, "
                             "MPI's singleton start)")
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dist", default="sphere,cube",
                        help="comma-separated: sphere, cube (default: %(default)s)")
    parser.add_argument("--order", type=int, default=6, help="fmmloopy's (default: 6)")
    parser.add_argument("--n-crit", type=lambda value: value if value == "auto" else int(value),
                        default="auto",
                        help="fmmloopy's: an integer or 'auto' (the default: chosen by cost)")
    parser.add_argument("--m", type=int, nargs="+", default=[6],
                        help="PVFMM's multipole orders (even), each run (default: 6)")
    parser.add_argument("--ncrit", type=int, nargs="+", default=[64, 128, 256],
                        help="most points per PVFMM leaf (its max_pts is twice that), each run "
                             "(default: 64 128 256)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=CORES,
                        help="OMP_NUM_THREADS of the PVFMM driver (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    dists = [d.strip() for d in args.dist.split(",") if d.strip()]
    if not dists or not set(dists) <= {"sphere", "cube"}:
        parser.error("--dist takes sphere and/or cube, comma-separated")
    if (min(args.n) < 1 or args.repeats < 1 or args.check_targets < 1 or args.threads < 1
            or min(args.ncrit) < 1):
        parser.error("--n, --ncrit, --repeats, --check-targets and --threads must be >= 1")
    if min(args.m) < 2 or any(m % 2 for m in args.m):
        parser.error("--m takes even numbers >= 2 (PVFMM's multipole order)")

    try:
        if args.driver is not None:
            if not args.driver.is_file():
                raise Skipped(f"--driver {args.driver} does not exist")
            driver = args.driver.resolve()
        else:
            driver = build_driver(args.pvfmm_src, args.pvfmm_build, args.cache_dir, args.cxx,
                                  args.ldflags)
    except Skipped as reason:
        if args.json:
            print(json.dumps({"skipped": str(reason)}))
        else:
            print(f"vs_pvfmm: skipped: {reason}")
        return

    context_for(choose_device())  # OpenCL's start-up is no part of fmmloopy's set-up
    rows = []
    if not args.json:
        print(TABLE_HEADER)
    for n in args.n:
        for dist in dists:
            row = compare(dist, n, driver, args)
            rows.append(row)
            if not args.json:
                print("\n".join(table_rows(row)), flush=True)
    if args.json:
        source = args.pvfmm_src
        print(json.dumps({"cores": CORES, "driver": str(driver),
                          "pvfmm_src": None if source is None else str(source),
                          "pvfmm_commit": None if source is None else source_commit(source),
                          "rows": rows}))
    else:
        print(f"\nminimum of {args.repeats} alternating runs after a warm-up; errors on "
              f"{rows[0]['check_targets']} sampled targets; PVFMM / fmmloopy: evaluation "
              f"time ratio (> 1: fmmloopy faster); PVFMM computes potentials only, as "
              f"fmmloopy; {CORES} cores, driver OMP_NUM_THREADS={args.threads}")


if __name__ == "__main__":
    main()
