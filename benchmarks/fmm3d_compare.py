"""``fmmloopy.fmm3d`` against FMM3D's own ``fmm3dpy`` (its PyPI wheel) and the direct sums.

Usage: ``python benchmarks/fmm3d_compare.py [--n 4000] [--eps 1e-3 1e-6 1e-9]`` with
``fmm3dpy`` installed (``pip install fmm3dpy``; not a dependency of fmmloopy). For uniform and
clustered sources with targets of their own, ``nd`` 1 and 3, each ``eps`` and every flag
combination of ``lfmm3d``, ``hfmm3d`` (``zk = 1.1``) and ``stfmm3d`` (Stokeslets and
stresslets), it calls both with the same arguments and prints, per call, the largest relative
L2 difference of any output from ``fmm3dpy``'s and from fmmloopy's direct sum (the sum of
``l3ddir``, ``h3ddir``, ``st3ddir``), each over ``eps``: at most 1 holds the outputs within
``eps``. A call fmmloopy refuses (an ``eps`` beyond its table) is printed as refused.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fmmloopy.fmm3d as ours

FIELDS = ("pot", "grad", "hess", "pottarg", "gradtarg", "hesstarg", "pre", "pretarg")


def points(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(3, n)`` sources: uniform in the unit cube or a Plummer-like cluster in it."""
    if kind == "uniform":
        return rng.random((3, n))
    radius = rng.random(n) ** 3 * 0.5
    direction = rng.standard_normal((3, n))
    return 0.5 + radius * direction / np.linalg.norm(direction, axis=0)


def difference(got, reference) -> float:
    """The largest relative L2 difference over the outputs both hold (nan: none)."""
    worst = np.nan
    for name in FIELDS:
        a, b = getattr(got, name), getattr(reference, name)
        if a is None or b is None:
            continue
        a, b = np.asarray(a), np.asarray(b)
        value = float(np.linalg.norm(a - b.reshape(a.shape)) / np.linalg.norm(b))
        worst = value if np.isnan(worst) else max(worst, value)
    return worst


def direct_reference(function: str, arguments: dict, flags: tuple[int, int]):
    """fmmloopy's direct sum of the same call, at the sources and at the targets."""
    out = ours.Output()
    sources, targets = arguments["sources"], arguments.get("targets")
    kind = {"lfmm3d": ours.l3ddir, "hfmm3d": ours.h3ddir, "stfmm3d": ours.st3ddir}[function]
    densities = {key: value for key, value in arguments.items()
                 if key not in ("eps", "sources", "targets")}
    level = "ifppregtarg" if function == "stfmm3d" else "pgt"
    names = ("pot", "pre", "grad") if function == "stfmm3d" else ("pot", "grad", "hess")
    for where, flag, suffix in ((sources, flags[0], ""), (targets, flags[1], "targ")):
        if flag:
            result = kind(sources=sources, targets=where, **{level: flag}, **densities)
            for name in names:
                setattr(out, name + suffix, getattr(result, name + "targ"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-6, 1e-9])
    args = parser.parse_args()
    import fmm3dpy

    rng = np.random.default_rng(0)
    worst = {"fmm3dpy": 0.0, "direct": 0.0}
    for kind in ("uniform", "clustered"):
        sources, targets = points(kind, args.n, rng), rng.random((3, args.n // 8))
        for nd in (1, 3):
            def draw(*shape, complex_values=False, nd=nd):
                shape = shape if nd == 1 else (nd, *shape)
                values = rng.uniform(-1, 1, shape)
                return values + 1j * rng.uniform(-1, 1, shape) if complex_values else values
            n = args.n
            calls = []
            for pg, pgt in ((1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (0, 3), (2, 2), (3, 3)):
                calls.append(("lfmm3d", {"charges": draw(n), "dipvec": draw(3, n)},
                              {"pg": pg, "pgt": pgt}))
            for pg, pgt in ((1, 0), (2, 0), (0, 1), (0, 2), (2, 2)):
                calls.append(("hfmm3d", {"zk": 1.1, "charges": draw(n, complex_values=True),
                                         "dipvec": draw(3, n, complex_values=True)},
                              {"pg": pg, "pgt": pgt}))
            for pg, pgt in ((1, 0), (2, 0), (3, 0), (0, 3), (3, 3)):
                calls.append(("stfmm3d", {"stoklet": draw(3, n), "strslet": draw(3, n),
                                          "strsvec": draw(3, n)},
                              {"ifppreg": pg, "ifppregtarg": pgt}))
            for eps in args.eps:
                for function, densities, flags in calls:
                    at_targets = list(flags.values())[1] > 0  # FMM3D: targets only with pgt
                    arguments = {"eps": eps, "sources": sources, "nd": nd, **densities} | (
                        {"targets": targets} if at_targets else {})
                    clock = time.perf_counter()
                    try:
                        got = getattr(ours, function)(**arguments, **flags)
                    except ValueError as error:
                        print(f"{kind:9s} nd={nd} eps={eps:g} {function} {flags}: refused: "
                              f"{str(error)[:90]}", flush=True)
                        continue
                    ours_seconds = time.perf_counter() - clock
                    theirs = getattr(fmm3dpy, function)(**arguments, **flags)
                    values = list(flags.values())
                    exact = direct_reference(function, {k: v for k, v in arguments.items()
                                                        if k != "nd"} | {"nd": nd},
                                             (values[0], values[1]))
                    against = {"fmm3dpy": difference(got, theirs) / eps,
                               "direct": difference(got, exact) / eps}
                    for name, value in against.items():
                        worst[name] = max(worst[name], value)
                    print(f"{kind:9s} nd={nd} eps={eps:g} {function} {flags}: "
                          f"vs fmm3dpy {against['fmm3dpy']:.2f} eps, vs direct "
                          f"{against['direct']:.2f} eps ({ours_seconds:.2f} s)", flush=True)
    print(f"largest difference over eps: from fmm3dpy {worst['fmm3dpy']:.2f}, from the direct "
          f"sums {worst['direct']:.2f}")


if __name__ == "__main__":
    main()
