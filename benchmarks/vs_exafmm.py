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
import hashlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fmmloopy
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.distributions import sphere_surface, uniform_cube

CORES = os.cpu_count() or 1
HERE = Path(__file__).resolve().parent
DRIVER_SOURCE = HERE / "exafmm_driver" / "laplace_driver.cpp"
CXXFLAGS = ("-std=c++14", "-O3", "-march=native", "-fopenmp")
LDFLAGS = "-lfftw3 -lopenblas"


class Skipped(Exception):
    """exafmm-t's source is missing or the driver does not build: nothing to compare with."""


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


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmmloopy-benchmarks" / "exafmm-t"


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
    digest = hashlib.sha256(DRIVER_SOURCE.read_bytes())
    for header in sorted(include.glob("*.h")):
        digest.update(header.name.encode() + header.read_bytes())
    digest.update(" ".join(command).encode())
    target = cache_dir / digest.hexdigest()[:16] / "laplace_driver"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"laplace_driver.{os.getpid()}.partial")
    command[command.index("OUT")] = str(partial)
    print(f"building the exafmm-t driver: {shlex.join(command)}", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise Skipped(f"the exafmm-t driver did not build ({shlex.join(command)}):\n"
                      f"{done.stderr[-3000:]}")
    os.replace(partial, target)
    return target


class ExafmmDriver:
    """One running ``laplace_driver --serve``: set up on start, one evaluation per call."""

    def __init__(self, driver: Path, problem_file: Path, workdir: Path, order: int,
                 ncrit: int, matrix_file: Path, threads: int):
        self.ncrit = ncrit
        self.output = workdir / f"potential_ncrit{ncrit}.bin"
        self._log = open(workdir / f"driver_ncrit{ncrit}.log", "w+")
        #: The stage times of the latest evaluation.
        self.last_stages: dict[str, float] = {}
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
        self.command = [str(driver), "--input", str(problem_file), "--output", str(self.output),
                        "--order", str(order), "--ncrit", str(ncrit),
                        "--matrix-file", str(matrix_file), "--serve"]
        clock = time.perf_counter()
        self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, text=True,
                                         env=env)
        #: The driver's set-up line (tree, lists, precompute seconds, depth, leaves...).
        self.setup = self._reply("setup")
        #: Wall seconds from start to set-up done, reading the input file included.
        self.start_seconds = time.perf_counter() - clock

    def _reply(self, event: str) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._log.seek(0)
            raise RuntimeError(f"exafmm-t driver (ncrit {self.ncrit}) ended with status "
                               f"{self._process.returncode}: {self._log.read()[-2000:]}\n"
                               f"command: {shlex.join(self.command)}")
        reply = json.loads(line)
        if reply.get("event") != event:
            raise RuntimeError(f"exafmm-t driver: expected {event!r}, got {line!r}")
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
        with open(problem_file, "wb") as file:
            np.ascontiguousarray(points).tofile(file)
            charges.tofile(file)

        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, order=args.order, n_crit=args.n_crit)
        fmm_setup = time.perf_counter() - clock

        drivers: list[ExafmmDriver] = []
        try:
            for ncrit in args.ncrit:  # one after another: the first may write the matrices
                drivers.append(ExafmmDriver(driver, problem_file, workdir, args.order, ncrit,
                                            matrix_file, args.threads))
            names = ["fmmloopy"] + [f"exafmm-t ncrit={d.ncrit}" for d in drivers]

            def run_fmmloopy() -> tuple[float, float]:
                cpu, clock = _cpu_seconds(), time.perf_counter()
                fmm(charges)
                return time.perf_counter() - clock, _cpu_seconds() - cpu

            def run_driver(d: ExafmmDriver) -> tuple[float, float]:
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
    for name, code in codes.items():
        code["eval_seconds"] = min(times[name])
        code["eval_seconds_all"] = times[name]
        code["cores_busy"] = sum(cpu_times[name]) / sum(times[name])
        code["relative_l2_error"] = errors[name]
    exafmm_names = names[1:]
    best = min(exafmm_names, key=lambda name: codes[name]["eval_seconds"])
    fastest = codes["fmmloopy"]["eval_seconds"]
    for name in exafmm_names:
        codes[name]["eval_ratio_to_fmmloopy"] = codes[name]["eval_seconds"] / fastest
        codes[name]["setup_ratio_to_fmmloopy"] = (codes[name]["setup_seconds"]
                                                  / codes["fmmloopy"]["setup_seconds"])
    return {"distribution": dist, "n": n, "order": args.order, "repeats": args.repeats,
            "check_targets": len(sample), "best_exafmm": best, "codes": codes}


TABLE_HEADER = ("| distribution | N | code | settings | set-up s | evaluation s | rel. L2 error "
                "| cores busy | exafmm-t / fmmloopy |\n"
                "|---|---:|---|---|---:|---:|---:|---:|---:|")


def table_rows(row: dict) -> list[str]:
    lines = []
    for name, code in row["codes"].items():
        label = name.split(" ")[0] + (" (best)" if name == row["best_exafmm"] else "")
        ratio = code.get("eval_ratio_to_fmmloopy")
        lines.append(f"| {row['distribution']} | {row['n']} | {label} | {code['settings']} "
                     f"| {code['setup_seconds']:.3f} | {code['eval_seconds']:.3f} "
                     f"| {code['relative_l2_error']:.2e} | {code['cores_busy']:.2f} "
                     f"| {'' if ratio is None else f'{ratio:.2f}'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exafmm-src", type=Path, default=os.environ.get("EXAFMM_T_SRC"),
                        help="exafmm-t's source tree (default: $EXAFMM_T_SRC)")
    parser.add_argument("--driver", type=Path,
                        help="a laplace_driver already built (skips building)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="where the driver and exafmm-t's matrix files go "
                             "(default: %(default)s)")
    parser.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    parser.add_argument("--ldflags", default=LDFLAGS,
                        help="libraries for the driver (default: %(default)r)")
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dist", default="sphere,cube",
                        help="comma-separated: sphere, cube (default: %(default)s)")
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--n-crit", type=lambda value: value if value == "auto" else int(value),
                        default="auto",
                        help="fmmloopy's: an integer or 'auto' (the default: chosen by cost)")
    parser.add_argument("--ncrit", type=int, nargs="+", default=[150, 400],
                        help="exafmm-t's, each run (default: 150 400)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=CORES,
                        help="OMP_NUM_THREADS of the exafmm-t driver (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    dists = [d.strip() for d in args.dist.split(",") if d.strip()]
    if not dists or not set(dists) <= {"sphere", "cube"}:
        parser.error("--dist takes sphere and/or cube, comma-separated")
    if (min(args.n) < 1 or args.repeats < 1 or args.check_targets < 1 or args.threads < 1
            or min(args.ncrit) < 1):
        parser.error("--n, --ncrit, --repeats, --check-targets and --threads must be >= 1")

    try:
        if args.driver is not None:
            if not args.driver.is_file():
                raise Skipped(f"--driver {args.driver} does not exist")
            driver = args.driver.resolve()
        else:
            driver = build_driver(args.exafmm_src, args.cache_dir, args.cxx, args.ldflags)
    except Skipped as reason:
        if args.json:
            print(json.dumps({"skipped": str(reason)}))
        else:
            print(f"vs_exafmm: skipped: {reason}")
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
        source = args.exafmm_src
        print(json.dumps({"cores": CORES, "driver": str(driver),
                          "exafmm_src": None if source is None else str(source),
                          "exafmm_commit": None if source is None else source_commit(source),
                          "rows": rows}))
    else:
        print(f"\nminimum of {args.repeats} alternating runs after a warm-up; errors on "
              f"{rows[0]['check_targets']} sampled targets; exafmm-t / fmmloopy: evaluation "
              f"time ratio (> 1: fmmloopy faster); exafmm-t also computes gradients; "
              f"{CORES} cores, driver OMP_NUM_THREADS={args.threads}")


if __name__ == "__main__":
    main()
