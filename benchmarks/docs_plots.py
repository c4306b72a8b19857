"""The figures of the documentation (docs/plots.md), made from real FMM evaluations.

Usage::

    pip install -e ".[docs]"                                    # matplotlib
    python benchmarks/docs_plots.py                             # the full set, into docs/plots/
    python benchmarks/docs_plots.py --quick --out /tmp/plots    # small sizes: a smoke test
    python benchmarks/docs_plots.py --figures accuracy batched  # some figures only

Each figure is written as ``NAME.png`` with its numbers beside it in ``NAME.csv`` (the docs page
shows both), and ``run.txt`` records the command that made each figure, the machine and the
versions. Points are on
the unit sphere's surface, charges uniform in [-1, 1) (seed 0); errors are relative L2 against
a numpy direct sum (:func:`fmmloopy.maths.reference.direct_sum`) on sampled targets. Times are
wall-clock seconds of calls ``fmm(charges)`` (the set-up of ``fmmloopy.Fmm`` is once per point
set and not counted), the best of ``--repeats`` calls after a warm-up call.

- ``accuracy_vs_order``: error against order for every built-in kernel.
- ``operator_times``: seconds per operator of one call (``Fmm.eval_seconds``), stacked, order 6.
- ``time_vs_n``: call time against N, beside FMM3D's ``lfmm3d`` (``fmm3dpy``, potential only,
  ``pg=1``, its tree included) where it is installed (``pip install -e ".[bench]"``); without
  it the figure shows fmmloopy alone and says so. The default eps 1e-6 is the tolerance of
  ``benchmarks/vs_fmm3d.py`` whose errors are below fmmloopy's at order 6 (docs/performance.md).
- ``batched``: one call with ``k`` charge vectors (charges ``(N, k)``) against one with one.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time

CORES = os.cpu_count() or 1
# fmm3dpy's OpenMP reads OMP_NUM_THREADS when it loads (benchmarks/vs_fmm3d.py does the same).
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

import numpy as np  # noqa: E402

import fmmloopy  # noqa: E402
from fmmloopy.base.distributions import sphere_surface  # noqa: E402
from fmmloopy.maths.green import get_kernel, kernel_names  # noqa: E402
from fmmloopy.maths.reference import direct_sum  # noqa: E402

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPOSITORY, "docs", "plots")

#: Parameters of the built-in kernels that need them: within the Helmholtz FMM's range at every
#: order plotted (the sphere's root box, side 2, is 0.32 wavelengths at k = 1; order 3 allows 1).
KERNEL_PARAMETERS = {"yukawa": "kappa=1", "helmholtz": "k=1"}
#: The figure (file name) each entry of ``--figures`` makes.
FIGURE_FILES = {"accuracy": "accuracy_vs_order", "operators": "operator_times",
                "scaling": "time_vs_n", "batched": "batched_vectors"}
FIGURES = tuple(FIGURE_FILES)
ORDER = 6  # the default order of fmmloopy.Fmm: figures operators, scaling and batched

#: Sizes of the full run and of --quick.
FULL = {"accuracy_n": 100_000, "orders": [3, 4, 5, 6, 7, 8],
        "operator_n": [100_000, 1_000_000],
        "scaling_n": [10_000, 30_000, 100_000, 300_000, 1_000_000],
        "batched_n": 1_000_000, "vectors": [1, 2, 4, 8, 16]}
QUICK = {"accuracy_n": 20_000, "orders": [3, 4, 5],
         "operator_n": [20_000, 50_000],
         "scaling_n": [20_000, 50_000],
         "batched_n": 20_000, "vectors": [1, 2, 4, 8, 16]}


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on the unit sphere, ``(n, 3)``, and charges uniform in [-1, 1)."""
    rng = np.random.default_rng(seed)
    return sphere_surface(n, rng), rng.uniform(-1.0, 1.0, n)


def sample(n: int, count: int, seed: int = 1) -> np.ndarray:
    """``count`` distinct target indices out of ``n`` (all of them if ``n <= count``)."""
    return np.random.default_rng(seed).choice(n, min(count, n), replace=False)


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def best_call(run, repeats: int) -> tuple[float, object]:
    """The shortest wall time of ``repeats`` calls of ``run`` and what that call returned
    (the caller makes the warm-up call)."""
    best, best_result = np.inf, None
    for _ in range(repeats):
        clock = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - clock
        if seconds < best:
            best, best_result = seconds, result
    return best, best_result


def write_csv(path: str, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    print(f"  wrote {path}")


def save(figure, path: str) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    print(f"  wrote {path}")


def seconds_text(value: float) -> str:
    return f"{value:.4g}"


# {{{ (a) error against order, every built-in kernel

def builtin_kernel_specs() -> list[str]:
    """``"laplace"``, ``"yukawa:kappa=1"``, ...: each built-in kernel with its parameters."""
    specs = []
    for name in kernel_names():
        spec = f"{name}:{KERNEL_PARAMETERS[name]}" if name in KERNEL_PARAMETERS else name
        try:
            get_kernel(spec)
        except ValueError as error:  # a new built-in kernel that needs parameters
            print(f"  skipping kernel {name!r}: {error} (add it to KERNEL_PARAMETERS)")
            continue
        specs.append(spec)
    return specs


def accuracy_figure(sizes: dict, args: argparse.Namespace) -> None:
    n, orders = sizes["accuracy_n"], sizes["orders"]
    points, charges = problem(n)
    targets = sample(n, args.check_targets)
    specs = builtin_kernel_specs()
    print(f"(a) error against order: {n} points, orders {orders}, kernels {specs}")
    errors = {spec: [] for spec in specs}
    for spec in specs:
        reference = direct_sum(get_kernel(spec), points, charges, points[targets])
        for order in orders:
            potential = fmmloopy.Fmm(points, kernel=spec, order=order)(charges)
            errors[spec].append(relative_error(potential[targets], reference))
            print(f"  {spec:18s} order {order}: {errors[spec][-1]:.2e}")
    write_csv(os.path.join(args.out, "accuracy_vs_order.csv"),
              ["order", "N", "sampled targets", *specs],
              [[order, n, len(targets), *(f"{errors[spec][i]:.2e}" for spec in specs)]
               for i, order in enumerate(orders)])
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":")]
    for i, spec in enumerate(specs):
        marker, line = styles[i % len(styles)]
        axes.semilogy(orders, errors[spec], marker=marker, linestyle=line, label=spec)
    axes.set_xlabel("order (points per edge of the surfaces)")
    axes.set_ylabel("relative L2 error")
    axes.set_xticks(orders)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title(f"Error against order: {n:,} points on the sphere,\n"
                   f"{len(targets)} sampled targets, n_crit auto", fontsize=10)
    save(figure, os.path.join(args.out, "accuracy_vs_order.png"))

# }}}


# {{{ fmmloopy's timed calls, shared by (b) and (c)

def time_fmmloopy(n: int, args: argparse.Namespace) -> dict:
    """Set-up, warm-up (and error), then the best of ``args.repeats`` calls at order 6:
    its wall time and that call's seconds per operator."""
    points, charges = problem(n)
    targets = sample(n, args.check_targets)
    fmm = fmmloopy.Fmm(points, order=ORDER)
    error = relative_error(fmm(charges)[targets],
                           direct_sum(get_kernel("laplace"), points, charges, points[targets]))

    def run() -> dict[str, float]:
        fmm(charges)
        return dict(fmm.eval_seconds)

    seconds, operators = best_call(run, args.repeats)
    print(f"  fmmloopy N = {n}: {seconds:.3f} s (n_crit {fmm.n_crit}), error {error:.2e}")
    return {"n": n, "seconds": seconds, "operators": operators, "error": error,
            "n_crit": fmm.n_crit}


def time_fmm3d(n: int, eps: float, args: argparse.Namespace) -> dict:
    """The same for ``fmm3dpy.lfmm3d`` at ``eps`` (potential only; its tree is in its time)."""
    import fmm3dpy

    points, charges = problem(n)
    targets = sample(n, args.check_targets)
    sources = np.asfortranarray(points.T)

    def run():
        return fmm3dpy.lfmm3d(eps=eps, sources=sources, charges=charges, pg=1).pot

    error = relative_error(run()[targets],
                           direct_sum(get_kernel("laplace"), points, charges, points[targets]))
    seconds, _ = best_call(run, args.repeats)
    print(f"  lfmm3d eps={eps:g} N = {n}: {seconds:.3f} s, error {error:.2e}")
    return {"n": n, "seconds": seconds, "error": error}

# }}}


# {{{ (b) seconds per operator, stacked

def operators_figure(runs: dict[int, dict], sizes: dict, args: argparse.Namespace) -> None:
    ns = sizes["operator_n"]
    names = []  # every operator that ran, in the order of the first call that ran it
    for n in ns:
        names += [name for name in runs[n]["operators"] if name != "total" and name not in names]
    rows = [[name, *(seconds_text(runs[n]["operators"].get(name, 0.0)) for n in ns)]
            for name in names]
    rows.append(["total (eval_seconds)", *(seconds_text(runs[n]["operators"]["total"])
                                           for n in ns)])
    rows.append(["call (wall clock)", *(seconds_text(runs[n]["seconds"]) for n in ns)])
    write_csv(os.path.join(args.out, "operator_times.csv"),
              ["step", *(f"N={n}" for n in ns)], rows)
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    labels = [f"N = {n:,}\n(n_crit {runs[n]['n_crit']})" for n in ns]
    bottom = np.zeros(len(ns))
    for name, colour in zip(names, colours, strict=False):
        heights = np.array([runs[n]["operators"].get(name, 0.0) for n in ns])
        axes.bar(labels, heights, 0.55, bottom=bottom, label=name, color=colour)
        bottom += heights
    axes.set_ylabel(f"seconds (best of {args.repeats} calls)")
    axes.legend(loc="upper left", fontsize=8, ncol=2)
    axes.set_title(f"Seconds per step of one call, Laplace, order {ORDER},\n"
                   "points on the sphere (Fmm.eval_seconds)", fontsize=10)
    save(figure, os.path.join(args.out, "operator_times.png"))

# }}}


# {{{ (c) call time against N, beside FMM3D

def have_fmm3d() -> bool:
    try:
        import fmm3dpy  # noqa: F401
    except ImportError:
        return False
    return True


def scaling_figure(runs: dict[int, dict], sizes: dict, args: argparse.Namespace) -> None:
    ns = sizes["scaling_n"]
    fmm3d = have_fmm3d()
    if fmm3d:
        print(f"  FMM3D: fmm3dpy is installed; lfmm3d at eps {args.fmm3d_eps}")
        theirs = {eps: [time_fmm3d(n, eps, args) for n in ns] for eps in args.fmm3d_eps}
    else:
        print("  FMM3D: fmm3dpy is not installed (pip install -e \".[bench]\"): "
              "the figure shows fmmloopy alone")
        theirs = {}
    header = ["N", "fmmloopy (s)", "fmmloopy error"]
    for eps in theirs:
        header += [f"lfmm3d eps={eps:g} (s)", f"lfmm3d eps={eps:g} error"]
    rows = []
    for i, n in enumerate(ns):
        row = [n, seconds_text(runs[n]["seconds"]), f"{runs[n]['error']:.2e}"]
        for results in theirs.values():
            row += [seconds_text(results[i]["seconds"]), f"{results[i]['error']:.2e}"]
        rows.append(row)
    write_csv(os.path.join(args.out, "time_vs_n.csv"), header, rows)

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.6))
    ours = [runs[n]["seconds"] for n in ns]
    worst = max(runs[n]["error"] for n in ns)
    axes.loglog(ns, ours, marker="o", label=f"fmmloopy, order {ORDER} (errors <= {worst:.1e})")
    for eps, results in theirs.items():
        axes.loglog(ns, [r["seconds"] for r in results], marker="s",
                    label=f"FMM3D lfmm3d, eps {eps:g} "
                          f"(errors <= {max(r['error'] for r in results):.1e})")
    axes.loglog(ns, [ours[0] * n / ns[0] for n in ns], "k:", label="proportional to N")
    axes.set_xlabel("N (points on the sphere, sources = targets)")
    axes.set_ylabel(f"seconds per evaluation (best of {args.repeats})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    title = "Evaluation time against N, Laplace potential"
    title += (",\nbeside FMM3D (its time includes its tree)" if fmm3d
              else ",\nfmmloopy alone: fmm3dpy was not installed")
    axes.set_title(title, fontsize=10)
    save(figure, os.path.join(args.out, "time_vs_n.png"))

# }}}


# {{{ (d) several charge vectors in one call

def batched_figure(sizes: dict, args: argparse.Namespace) -> None:
    n, vectors = sizes["batched_n"], sizes["vectors"]
    points, _ = problem(n)
    rng = np.random.default_rng(2)
    fmm = fmmloopy.Fmm(points, order=ORDER)
    print(f"(d) charge vectors per call: N = {n}, k = {vectors}")
    seconds = {}
    for k in vectors:
        charges = rng.uniform(-1.0, 1.0, n if k == 1 else (n, k))
        fmm(charges)  # warm-up: builds the kernels of k vectors on first use
        seconds[k], _ = best_call(lambda charges=charges: fmm(charges), args.repeats)
        print(f"  k = {k:2d}: {seconds[k]:.3f} s")
    one = seconds[vectors[0]] if vectors[0] == 1 else None
    if one is None:
        raise SystemExit("--vectors must start at 1 (the single-vector call)")
    ratio = {k: seconds[k] / one for k in vectors}
    write_csv(os.path.join(args.out, "batched_vectors.csv"),
              ["k", "N", "seconds", "time / time(k=1)", "speed-up over k calls"],
              [[k, n, seconds_text(seconds[k]), f"{ratio[k]:.3f}", f"{k / ratio[k]:.2f}"]
               for k in vectors])
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.0, 4.0))
    left.plot(vectors, [ratio[k] for k in vectors], marker="o", label="one call, charges (N, k)")
    left.plot(vectors, vectors, "k:", label="k calls of one vector")
    left.set_xlabel("k (charge vectors)")
    left.set_ylabel("time / time of one vector")
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_xticks(vectors, [str(k) for k in vectors])
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)
    right.plot(vectors, [k / ratio[k] for k in vectors], marker="o")
    right.set_xlabel("k (charge vectors)")
    right.set_ylabel("speed-up over k separate calls")
    right.set_xscale("log", base=2)
    right.set_xticks(vectors, [str(k) for k in vectors])
    right.grid(True, alpha=0.3)
    figure.suptitle(f"Several charge vectors per call: N = {n:,}, Laplace, order {ORDER}, "
                    f"best of {args.repeats}", fontsize=10)
    save(figure, os.path.join(args.out, "batched_vectors.png"))

# }}}


def write_run(args: argparse.Namespace) -> None:
    """``run.txt`` (the docs page includes it): per figure, the command that made it and when;
    then the machine and versions of the latest run. A run of some ``--figures`` keeps the
    lines of the others from the file already there."""
    from importlib.metadata import PackageNotFoundError, version

    from fmmloopy.base.devices import choose_device

    path = os.path.join(args.out, "run.txt")
    command = " ".join(["python", "benchmarks/docs_plots.py", *sys.argv[1:]])
    when = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    made = {}
    if os.path.exists(path):
        with open(path) as file:
            for line in file:
                name, _, rest = line.partition(": ")
                if name in FIGURE_FILES.values():
                    made[name] = rest.rstrip("\n")
    for figure in args.figures:
        made[FIGURE_FILES[figure]] = f"{command}  ({when})"
    device = choose_device(None)
    fmm3d = "fmm3dpy not installed"
    if have_fmm3d():
        try:
            fmm3d = f"fmm3dpy {version('fmm3dpy')}"
        except PackageNotFoundError:  # importable without a distribution's metadata
            fmm3d = "fmm3dpy (version unknown)"
    lines = [f"{name}: {made[name]}" for name in FIGURE_FILES.values() if name in made]
    lines += [
        f"latest run: {platform.processor() or platform.machine()}, {CORES} cores; OpenCL "
        f"device {device.name.strip()} ({device.platform.name.strip()})",
        f"  fmmloopy {fmmloopy.__version__}, numpy {np.__version__}, {fmm3d}, "
        f"Python {platform.python_version()}",
    ]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    print(f"  wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few orders, for a smoke test (about a minute)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="folder for the PNG and CSV files (default: docs/plots)")
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up")
    parser.add_argument("--check-targets", type=int, default=200,
                        help="sampled targets of the errors")
    parser.add_argument("--fmm3d-eps", type=float, nargs="+", default=[1e-6],
                        help="lfmm3d tolerances of figure time_vs_n (default: 1e-6)")
    args = parser.parse_args()
    if args.repeats < 1 or args.check_targets < 1:
        parser.error("--repeats and --check-targets must be at least 1")
    sizes = QUICK if args.quick else FULL
    os.makedirs(args.out, exist_ok=True)
    clock = time.perf_counter()
    if "accuracy" in args.figures:
        accuracy_figure(sizes, args)
    wanted = (set(sizes["operator_n"]) if "operators" in args.figures else set()) | (
        set(sizes["scaling_n"]) if "scaling" in args.figures else set())
    if wanted:
        print(f"(b, c) fmmloopy's calls at N = {sorted(wanted)}, order {ORDER}")
        runs = {n: time_fmmloopy(n, args) for n in sorted(wanted)}
        if "operators" in args.figures:
            operators_figure(runs, sizes, args)
        if "scaling" in args.figures:
            scaling_figure(runs, sizes, args)
    if "batched" in args.figures:
        batched_figure(sizes, args)
    write_run(args)
    print(f"done in {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
