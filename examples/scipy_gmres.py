"""The capacitance of the unit sphere by an integral equation, solved with SciPy's GMRES through
``fmmloopy.linear_operator``, and checked against a dense solve of the same system.

N quasi-uniform points (a Fibonacci lattice, spacing ``h = sqrt(4 pi / N)``) on the unit sphere
carry charges ``q`` whose potential is 1 at every point. Each point stands for a patch of area
``h**2``; its own charge's potential on it is the patch's (a disc of that area: ``q / (2 sqrt(pi)
h)``), the others' are point charges, so the system is ``(c I + G) q = 1`` with ``c = 1 / (2
sqrt(pi) h)`` and ``G`` the FMM's matrix. The total charge approximates the sphere's capacitance,
``4 pi`` in these units (potential ``sum q / (4 pi r)``).

``python examples/scipy_gmres.py --n 2000`` prints GMRES's iterations and time, the dense
solve's, the relative difference of the two solutions against the bound the FMM's accuracy and
GMRES's tolerance give (the system's condition number times their sum), and the total charge;
it exits 1 where the difference exceeds that bound. Needs SciPy (``pip install
"fmmloopy[scipy]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import fmmloopy

#: The FMM's relative error at order 6 on the sphere, with the example's margin (docs/fmm.md:
#: 5.2e-7 measured on 20 000 random charges; 10x allowed, as laplace_sphere.py does).
FMM_ERROR = 5.2e-6


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` quasi-uniform points on the unit sphere."""
    index = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * index
    return np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                            np.cos(polar)])


def run(n: int, order: int = 6, rtol: float = 1e-10) -> dict:
    """Solve the system both ways and compare; the report."""
    from scipy.sparse.linalg import LinearOperator, gmres

    points = fibonacci_sphere(n)
    self_term = 1.0 / (2.0 * np.sqrt(np.pi) * np.sqrt(4.0 * np.pi / n))
    fmm = fmmloopy.Fmm(points, order=order)
    field = fmmloopy.linear_operator(fmm)
    system = LinearOperator((n, n), matvec=lambda q: self_term * q + field.matvec(q),
                            dtype=np.float64)
    right = np.ones(n)
    iterations = []
    clock = time.perf_counter()
    solution, info = gmres(system, right, rtol=rtol, atol=0.0, restart=n,
                           callback=lambda residual: iterations.append(residual),
                           callback_type="pr_norm")
    gmres_seconds = time.perf_counter() - clock
    if info != 0:
        raise RuntimeError(f"GMRES did not converge (info {info})")

    clock = time.perf_counter()
    dense = _dense(points)
    dense[np.diag_indices(n)] = self_term
    reference = np.linalg.solve(dense, right)
    dense_seconds = time.perf_counter() - clock
    condition = float(np.linalg.cond(dense))
    difference = float(np.linalg.norm(solution - reference) / np.linalg.norm(reference))
    bound = condition * (FMM_ERROR + rtol)
    return {"n": n, "order": order, "self_term": self_term, "gmres_iterations": len(iterations),
            "gmres_seconds": gmres_seconds, "dense_seconds": dense_seconds,
            "condition": condition, "relative_difference": difference, "bound": bound,
            "total_charge": float(solution.sum()), "capacitance": 4.0 * np.pi}


def _dense(points: np.ndarray) -> np.ndarray:
    """``G_ij = 1 / (4 pi |x_i - x_j|)``, 0 on the diagonal (numpy; no FMM)."""
    distances = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    return 1.0 / (4.0 * np.pi * distances)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="points (dense needs n**2 doubles)")
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.n, args.order)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['n']} points, order {report['order']}: GMRES "
              f"{report['gmres_iterations']} iterations, {report['gmres_seconds']:.2f} s; "
              f"dense solve {report['dense_seconds']:.2f} s (condition number "
              f"{report['condition']:.1f})")
        print(f"relative difference of the solutions {report['relative_difference']:.2e} "
              f"(bound {report['bound']:.2e}); total charge {report['total_charge']:.5f}, "
              f"capacitance 4 pi = {report['capacitance']:.5f}")
    if not report["relative_difference"] <= report["bound"]:
        print("scipy_gmres.py: the GMRES solution through the FMM differs from the dense "
              "solution by more than the FMM's accuracy allows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
