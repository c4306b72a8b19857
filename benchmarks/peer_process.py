"""What the comparisons with other FMM codes share (``vs_exafmm.py``, ``vs_pvfmm.py``): the
peer's driver built once into a cache keyed by what it is built from, and a running driver
(``--serve``) fed ``eval`` lines, each answered by one JSON line."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class Skipped(Exception):
    """The peer's source or build is missing, or its driver does not build: nothing to
    compare with."""


def default_cache_dir(peer: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmmloopy-benchmarks" / peer


def build_cached(command: list[str], inputs: Iterable[bytes], cache_dir: Path,
                 peer: str) -> Path:
    """Run the compiler ``command`` (whose output is the placeholder ``"OUT"``) once: the
    binary lives in ``cache_dir`` under a digest of ``inputs`` (sources, headers, libraries)
    and the command; :class:`Skipped` with the compiler's message when it fails."""
    digest = hashlib.sha256()
    for part in inputs:
        digest.update(part)
    digest.update(" ".join(command).encode())
    target = cache_dir / digest.hexdigest()[:16] / "laplace_driver"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"laplace_driver.{os.getpid()}.partial")
    command = [str(partial) if part == "OUT" else part for part in command]
    print(f"building the {peer} driver: {shlex.join(command)}", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise Skipped(f"the {peer} driver did not build ({shlex.join(command)}):\n"
                      f"{done.stderr[-3000:]}")
    os.replace(partial, target)
    return target


class ServedDriver:
    """One running peer driver: set up on start (its ``setup`` line), one evaluation per
    :meth:`evaluate` (its ``eval`` line), potentials read from ``output``."""

    def __init__(self, label: str, command: list[str], output: Path, log: Path,
                 env: dict[str, str]):
        self.label, self.command, self.output = label, command, output
        self._log = open(log, "w+")
        #: The stage times of the latest evaluation.
        self.last_stages: dict[str, float] = {}
        clock = time.perf_counter()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, text=True, env=os.environ | env)
        #: The driver's set-up line (its stages' seconds, the tree's depth and leaves...).
        self.setup = self._reply("setup")
        #: Wall seconds from start to set-up done, reading the input file included.
        self.start_seconds = time.perf_counter() - clock

    def _reply(self, event: str) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._log.seek(0)
            raise RuntimeError(f"{self.label} ended with status {self._process.returncode}: "
                               f"{self._log.read()[-2000:]}\ncommand: {shlex.join(self.command)}")
        reply = json.loads(line)
        if reply.get("event") != event:
            raise RuntimeError(f"{self.label}: expected {event!r}, got {line!r}")
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


def summarise(codes: dict[str, dict], times: dict[str, list[float]],
              cpu_times: dict[str, list[float]], errors: dict[str, float],
              peer_names: list[str]) -> str:
    """Fill each code's evaluation seconds (the minimum and all), cores busy, error and, for
    the peer's settings, the ratios to fmmloopy's; returns the peer's fastest setting."""
    for name, code in codes.items():
        code["eval_seconds"] = min(times[name])
        code["eval_seconds_all"] = times[name]
        code["cores_busy"] = sum(cpu_times[name]) / sum(times[name])
        code["relative_l2_error"] = errors[name]
    ours = codes["fmmloopy"]
    for name in peer_names:
        codes[name]["eval_ratio_to_fmmloopy"] = codes[name]["eval_seconds"] / ours["eval_seconds"]
        codes[name]["setup_ratio_to_fmmloopy"] = (codes[name]["setup_seconds"]
                                                  / ours["setup_seconds"])
    return min(peer_names, key=lambda name: codes[name]["eval_seconds"])


def table_header(peer: str) -> str:
    return ("| distribution | N | code | settings | set-up s | evaluation s | rel. L2 error "
            f"| cores busy | {peer} / fmmloopy |\n"
            "|---|---:|---|---|---:|---:|---:|---:|---:|")


def table_rows(row: dict, best: str) -> list[str]:
    """Markdown rows of one comparison (``best``: the peer's fastest setting, marked)."""
    lines = []
    for name, code in row["codes"].items():
        label = name.split(" ")[0] + (" (best)" if name == best else "")
        ratio = code.get("eval_ratio_to_fmmloopy")
        lines.append(f"| {row['distribution']} | {row['n']} | {label} | {code['settings']} "
                     f"| {code['setup_seconds']:.3f} | {code['eval_seconds']:.3f} "
                     f"| {code['relative_l2_error']:.2e} | {code['cores_busy']:.2f} "
                     f"| {'' if ratio is None else f'{ratio:.2f}'} |")
    return lines


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def write_problem(path: Path, points: np.ndarray, charges: np.ndarray) -> None:
    """The drivers' input: the ``(n, 3)`` points, then the ``n`` charges, as float64."""
    with open(path, "wb") as file:
        np.ascontiguousarray(points).tofile(file)
        charges.tofile(file)


def time_alternated(fmm, charges: np.ndarray, drivers: list[ServedDriver], names: list[str],
                    sample: np.ndarray, reference: np.ndarray, repeats: int):
    """One warm-up each (its potentials give the errors on ``sample``), then ``repeats``
    rounds alternating fmmloopy and every driver: ``(errors, times, cpu_times)`` by name
    (``names``: fmmloopy's, then the drivers')."""
    def run_fmmloopy() -> tuple[float, float]:
        cpu, clock = cpu_seconds(), time.perf_counter()
        fmm(charges)
        return time.perf_counter() - clock, cpu_seconds() - cpu

    def run_driver(driver: ServedDriver) -> tuple[float, float]:
        reply = driver.evaluate()
        driver.last_stages = reply["stages"]
        return reply["seconds"], reply["cpu_seconds"]

    runners = [run_fmmloopy] + [lambda d=d: run_driver(d) for d in drivers]
    errors = {names[0]: relative_error(fmm(charges)[sample], reference)}
    for name, driver in zip(names[1:], drivers, strict=True):
        run_driver(driver)
        errors[name] = relative_error(driver.potential()[sample], reference)
    times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    for _ in range(repeats):
        for name, run in zip(names, runners, strict=True):
            seconds, cpu = run()
            times[name].append(seconds)
            cpu_times[name].append(cpu)
    return errors, times, cpu_times


def fmmloopy_entry(fmm, order: int, n_crit, setup_seconds: float) -> dict:
    """fmmloopy's row: its settings (the ``n_crit`` chosen, a first-use verification's share of
    the set-up), set-up seconds and stages, evaluation stages, tree depth."""
    chosen = " (auto)" if n_crit == "auto" else ""
    settings = f"order {order}, n_crit {fmm.n_crit}{chosen}"
    if fmm.setup_seconds.get("verify"):  # recipes not as shipped: first-use verification
        settings += f", set-up incl. {fmm.setup_seconds['verify']:.2f} s recipe verification"
    return {"settings": settings, "setup_seconds": setup_seconds,
            "setup_stages": dict(fmm.setup_seconds), "eval_stages": dict(fmm.eval_seconds),
            "tree_depth": int(fmm.tree.nlevels) - 1}


def add_problem_arguments(parser, peer: str) -> None:
    """The options both comparisons take: the problems, fmmloopy's settings, timing, output."""
    parser.add_argument("--driver", type=Path,
                        help="a laplace_driver already built (skips building)")
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dist", default="sphere,cube",
                        help="comma-separated: sphere, cube (default: %(default)s)")
    parser.add_argument("--order", type=int, default=6, help="fmmloopy's (default: 6)")
    parser.add_argument("--n-crit", type=lambda value: value if value == "auto" else int(value),
                        default="auto",
                        help="fmmloopy's: an integer or 'auto' (the default: chosen by cost)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help=f"OMP_NUM_THREADS of the {peer} driver (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def checked_distributions(parser, args) -> list[str]:
    """``--dist`` as a list; the parser's error for it or for counts below 1."""
    dists = [d.strip() for d in args.dist.split(",") if d.strip()]
    if not dists or not set(dists) <= {"sphere", "cube"}:
        parser.error("--dist takes sphere and/or cube, comma-separated")
    if (min(args.n) < 1 or args.repeats < 1 or args.check_targets < 1 or args.threads < 1
            or min(args.ncrit) < 1):
        parser.error("--n, --ncrit, --repeats, --check-targets and --threads must be >= 1")
    return dists


def driver_or_skip(args, build, script: str) -> Path | None:
    """``--driver`` or ``build()``; None after printing why it is skipped."""
    try:
        if args.driver is not None:
            if not args.driver.is_file():
                raise Skipped(f"--driver {args.driver} does not exist")
            return args.driver.resolve()
        return build()
    except Skipped as reason:
        print(json.dumps({"skipped": str(reason)}) if args.json
              else f"{script}: skipped: {reason}")
        return None


def compare_all(args, dists: list[str], compare, peer: str, best_key: str) -> list[dict]:
    """``compare(dist, n)`` for every ``--n`` and distribution, rows printed as they come
    (unless ``--json``)."""
    rows = []
    if not args.json:
        print(table_header(peer))
    for n in args.n:
        for dist in dists:
            row = compare(dist, n)
            rows.append(row)
            if not args.json:
                print("\n".join(table_rows(row, row[best_key])), flush=True)
    return rows


def print_report(args, rows: list[dict], driver: Path, source: Path | None, key: str,
                 peer: str, remark: str, commit) -> None:
    """The JSON object (``--json``: cores, the driver, the peer's source ``<key>_src`` and its
    commit ``<key>_commit``, the rows) or the table's closing line (``remark``: what the peer
    computes beside the potentials)."""
    cores = os.cpu_count() or 1
    if args.json:
        print(json.dumps({"cores": cores, "driver": str(driver),
                          f"{key}_src": None if source is None else str(source),
                          f"{key}_commit": None if source is None else commit(source),
                          "rows": rows}))
    else:
        print(f"\nminimum of {args.repeats} alternating runs after a warm-up; errors on "
              f"{rows[0]['check_targets']} sampled targets; {peer} / fmmloopy: evaluation "
              f"time ratio (> 1: fmmloopy faster); {remark}; {cores} cores, driver "
              f"OMP_NUM_THREADS={args.threads}")
