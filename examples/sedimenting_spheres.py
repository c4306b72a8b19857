"""A cloud of sedimenting spheres stepped in time: Rotne-Prager-Yamakawa mobilities by
``fmmloopy.Fmm(..., kernel="rpy")``, ``Fmm.update`` at every step, against a new ``Fmm`` per
step, against direct sums, and against the settling of a viscous drop.

``N`` spheres of radius ``a`` lie at random in a ball of radius ``R`` (some overlap: the RPY
tensor has a form for that), each pulled down by the same force ``F`` through fluid of
viscosity ``mu``. Their velocities are the mobility times the forces,
``v_i = sum_j M(x_i - x_j) F`` (with each sphere's own ``F / (6 pi mu a)``); a step moves
them by ``v dt`` (forward Euler), then ``fmm.update(positions)`` sorts the new positions into
the tree's boxes where they fit them (the boxes follow the cloud as it falls; else it rebuilds
the tree), keeping the kernels and operators.

What it measures, per step: the update's seconds (and whether it kept the boxes), the
evaluation's, and those of a new ``Fmm`` of the same positions with the same ``n_crit`` (what
a step costs without ``update``); every ``--check-every`` steps the velocities of
``--check-targets`` sampled spheres against a direct sum over all spheres. A small copy of
the cloud (``--small`` spheres, same volume fraction) is stepped too, with the FMM and with a
direct sum of all pairs at every step on the same positions: their difference and their
seconds.

What users of suspensions check: many small spheres in a ball settle like a drop of the
suspension (a fluid sphere of the same viscosity), whose speed is Hadamard and Rybczynski's
``U = (6 / 5) N F / (6 pi mu R)``; the mean velocity of the spheres in a translating drop is
the drop's (the volume integral of a divergence-free flow is fixed by its normal velocity on
the boundary), and each sphere adds its own ``F / (6 pi mu a)`` (the dilute limit: a lone
sphere's Stokes velocity). The continuum is approached as ``N`` grows (here within a few per
cent at the first step); as the cloud falls it leaks spheres into a tail and slows a little.

Usage::

    python examples/sedimenting_spheres.py [--n 100000] [--steps 100] [--small 2000]
        [--fraction 0.05] [--plot sedimentation.png] [--json]

Exits with status 1 where an FMM error exceeds ``--tolerance`` (1e-6) or the first step's mean
velocity misses the drop's by more than ``--drop-tolerance`` (5 per cent).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import fmmloopy
from fmmloopy.api.fmm import KEPT_BOXES


def random_ball(rng, n: int, radius: float) -> np.ndarray:
    """``n`` points uniform in the ball of ``radius`` about 0."""
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * radius * rng.random((n, 1)) ** (1.0 / 3.0)


def relative(value, reference) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


class Cloud:
    """``n`` spheres at volume fraction ``fraction`` in a ball of radius 1, each pulled down
    by the force ``(0, 0, -1)`` through fluid of viscosity ``mu``."""

    def __init__(self, n: int, fraction: float, mu: float, seed: int):
        self.n, self.mu = n, mu
        self.radius = (fraction / n) ** (1.0 / 3.0)
        self.points = random_ball(np.random.default_rng(seed), n, 1.0)
        self.forces = np.broadcast_to(np.array([0.0, 0.0, -1.0]), (n, 3)).copy()
        self.kernel = f"rpy:mu={mu},radius={self.radius}"
        #: A lone sphere's Stokes velocity (the dilute limit) and the drop's (module docstring).
        self.stokes = 1.0 / (6 * np.pi * mu * self.radius)
        self.drop = 1.2 * n / (6 * np.pi * mu) + self.stokes


def timed(call, *args, **kwargs):
    clock = time.perf_counter()
    result = call(*args, **kwargs)
    return time.perf_counter() - clock, result


def run_large(cloud: Cloud, steps: int, dt: float, order, check_every: int,
              check_targets: int, compare_new: bool) -> dict:
    """The cloud stepped with ``Fmm.update``; per step the seconds of the update, of the
    evaluation and of a new ``Fmm``, and every ``check_every`` steps the sampled error."""
    rng = np.random.default_rng(1)
    setup_s, fmm = timed(fmmloopy.Fmm, cloud.points, kernel=cloud.kernel, order=order)
    records = []
    for step in range(steps + 1):
        record = {"step": step, "time": step * dt}
        if step:
            record["update_seconds"], _ = timed(fmm.update, cloud.points)
            record["kept_boxes"] = fmm.last_update == KEPT_BOXES
            if not record["kept_boxes"]:
                record["rebuilt_because"] = fmm.last_update
        else:
            record["setup_seconds"] = setup_s
        if compare_new:
            record["new_fmm_seconds"], fresh = timed(
                fmmloopy.Fmm, cloud.points, kernel=cloud.kernel, order=fmm.order,
                n_crit=fmm.n_crit)
            del fresh
        record["evaluation_seconds"], velocity = timed(fmm, cloud.forces)
        if step % check_every == 0 or step == steps:
            sample = rng.choice(cloud.n, min(check_targets, cloud.n), replace=False)
            direct = fmmloopy.DirectSum(cloud.points, cloud.points[sample],
                                        kernel=cloud.kernel)(cloud.forces)
            record["error"] = relative(velocity[sample], direct)
        record["mean_velocity"] = velocity.mean(axis=0).tolist()
        records.append(record)
        cloud.points = cloud.points + dt * velocity
    return {"order": fmm.order, "n_crit": fmm.n_crit, "tree_levels": fmm.tree.nlevels,
            "steps": records}


def run_small(cloud: Cloud, steps: int, dt: float, order) -> dict:
    """The small copy stepped with the FMM's velocities, a direct sum of every pair on the
    same positions at every step: their difference and seconds."""
    fmm = fmmloopy.Fmm(cloud.points, kernel=cloud.kernel, order=order)
    records = []
    for step in range(steps + 1):
        update_s = timed(fmm.update, cloud.points)[0] if step else 0.0
        fmm_s, velocity = timed(fmm, cloud.forces)
        direct_s, direct = timed(lambda: fmmloopy.DirectSum(
            cloud.points, kernel=cloud.kernel)(cloud.forces))
        records.append({"step": step, "fmm_seconds": update_s + fmm_s,
                        "direct_seconds": direct_s, "error": relative(velocity, direct),
                        "mean_velocity": velocity.mean(axis=0).tolist()})
        cloud.points = cloud.points + dt * velocity
    return {"spheres": cloud.n, "radius": cloud.radius, "drop_velocity": cloud.drop,
            "steps": records}


def summary(large: dict, small: dict, cloud: Cloud, dt: float) -> dict:
    steps = large["steps"]
    moved = [step for step in steps if step["step"]]
    median = {name: statistics.median(step[name] for step in moved if name in step)
              for name in ("update_seconds", "evaluation_seconds", "new_fmm_seconds")
              if any(name in step for step in moved)}
    first_mean = -steps[0]["mean_velocity"][2]
    return {
        "spheres": cloud.n, "radius": cloud.radius, "mu": cloud.mu, "dt": dt,
        "order": large["order"], "n_crit": large["n_crit"],
        "tree_levels": large["tree_levels"],
        "stokes_velocity": cloud.stokes, "drop_velocity": cloud.drop,
        "median_seconds": median,
        "kept_boxes": sum(step.get("kept_boxes", False) for step in moved),
        "updates": len(moved),
        "rebuilt_because": sorted({step["rebuilt_because"] for step in moved
                                   if "rebuilt_because" in step}),
        "max_error": max(step["error"] for step in steps if "error" in step),
        "first_drop_error": abs(first_mean - cloud.drop) / cloud.drop,
        "small_copy": {
            "spheres": small["spheres"],
            "max_error": max(step["error"] for step in small["steps"]),
            "median_fmm_seconds": statistics.median(
                step["fmm_seconds"] for step in small["steps"]),
            "median_direct_seconds": statistics.median(
                step["direct_seconds"] for step in small["steps"]),
        },
        "steps": steps, "small_steps": small["steps"],
    }


def plot(report: dict, path: str, first: np.ndarray, last: np.ndarray) -> None:
    """Mean sedimentation velocity against time over the drop's; the cloud's slice through
    its axis at the first and the last step (``first``, ``last``: the positions)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (axes, shape) = plt.subplots(1, 2, figsize=(10.0, 4.0),
                                         gridspec_kw={"width_ratios": [3, 2]})
    for steps, drop, label in (
            (report["steps"], report["drop_velocity"], f"{report['spheres']} spheres (FMM)"),
            (report["small_steps"], report["small_drop_velocity"],
             f"{report['small_copy']['spheres']} spheres (FMM and direct sums)")):
        fallen = [step["step"] * report["step_fraction"] for step in steps]
        axes.plot(fallen, [-step["mean_velocity"][2] / drop for step in steps], label=label)
    axes.axhline(1.0, color="black", linestyle="--",
                 label="drop (Hadamard-Rybczynski) + own Stokes velocity")
    axes.set_xlabel("time (the cloud's radii fallen at the drop's velocity)")
    axes.set_ylabel("mean settling velocity / the drop's")
    axes.set_title("Sedimenting cloud of RPY spheres: mean velocity")
    values = [-step["mean_velocity"][2] / drop
              for steps, drop in ((report["steps"], report["drop_velocity"]),
                                  (report["small_steps"], report["small_drop_velocity"]))
              for step in steps]
    axes.set_ylim(min(0.97, min(values) - 0.01), 1.01)
    axes.legend(fontsize=8, loc="lower left")
    for positions, label in ((first, "first step"), (last, "last step")):
        thin = np.abs(positions[:, 1] - positions[:, 1].mean()) < 0.05
        shape.scatter(positions[thin, 0], positions[thin, 2], s=0.3, label=label)
    shape.set_aspect("equal")
    shape.set_xlabel("x")
    shape.set_ylabel("z (gravity: -z)")
    shape.set_title("slice |y - mean| < 0.05 of the cloud", fontsize=9)
    shape.legend(fontsize=8, markerscale=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    with open(str(path).rsplit(".", 1)[0] + ".csv", "w", encoding="utf-8") as table:
        table.write("step,radii_fallen,spheres,mean_velocity_over_drop,error\n")
        for steps, drop, spheres in (
                (report["steps"], report["drop_velocity"], report["spheres"]),
                (report["small_steps"], report["small_drop_velocity"],
                 report["small_copy"]["spheres"])):
            for step in steps:
                table.write(f"{step['step']},{step['step'] * report['step_fraction']:.4f},"
                            f"{spheres},{-step['mean_velocity'][2] / drop:.6f},"
                            f"{step.get('error', '')}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=lambda text: int(float(text)), default=100_000,
                        help="spheres (default 100000)")
    parser.add_argument("--small", type=lambda text: int(float(text)), default=2000,
                        help="spheres of the copy stepped with direct sums too (default 2000)")
    parser.add_argument("--fraction", type=float, default=0.05,
                        help="the spheres' volume fraction of the cloud (default 0.05)")
    parser.add_argument("--mu", type=float, default=1.0, help="viscosity (default 1)")
    parser.add_argument("--steps", type=int, default=100, help="time steps (default 100)")
    parser.add_argument("--step-fraction", type=float, default=0.02,
                        help="how far the cloud falls a step, in radii (default 0.02)")
    parser.add_argument("--order", type=int, default=None,
                        help="the FMM's order (default: a Stokes FMM's, 9)")
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--check-targets", type=int, default=300)
    parser.add_argument("--no-new-fmm", action="store_true",
                        help="do not time a new Fmm at every step")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--drop-tolerance", type=float, default=0.05)
    parser.add_argument("--plot", default=None,
                        help="write the plot here (PNG; its numbers beside it, .csv)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.n, args.small, args.check_every, args.check_targets) < 1 or args.steps < 0:
        parser.error("--n, --small, --check-every and --check-targets must be >= 1, "
                     "--steps >= 0")
    cloud = Cloud(args.n, args.fraction, args.mu, seed=0)
    first_positions = cloud.points
    dt = args.step_fraction / cloud.drop  # the cloud falls step_fraction of its radius
    small_cloud = Cloud(args.small, args.fraction, args.mu, seed=2)
    small_dt = args.step_fraction / small_cloud.drop
    large = run_large(cloud, args.steps, dt, args.order, args.check_every,
                      args.check_targets, not args.no_new_fmm)
    small = run_small(small_cloud, args.steps, small_dt, args.order)
    report = summary(large, small, cloud, dt)
    report["small_drop_velocity"] = small_cloud.drop
    report["step_fraction"] = args.step_fraction
    report["ok"] = bool(max(report["max_error"], report["small_copy"]["max_error"])
                        <= args.tolerance and report["first_drop_error"] <= args.drop_tolerance)
    if args.plot:
        plot(report, args.plot, first_positions, cloud.points)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        median, copy = report["median_seconds"], report["small_copy"]
        print(f"{args.n} sedimenting spheres (radius {cloud.radius:.4g}, volume fraction "
              f"{args.fraction}, mu = {args.mu}) in a ball of radius 1: RPY, order "
              f"{report['order']}, n_crit {report['n_crit']}, {report['tree_levels']} levels; "
              f"{args.steps} steps of {args.step_fraction} radii")
        print(f"  per step (medians): update {median.get('update_seconds', 0):.3f} s, "
              f"evaluation {median.get('evaluation_seconds', 0):.3f} s"
              + (f"; a new Fmm {median['new_fmm_seconds']:.3f} s" if "new_fmm_seconds"
                 in median else ""))
        print(f"  kept the boxes at {report['kept_boxes']} of {report['updates']} updates"
              + (f" (rebuilt: {'; '.join(report['rebuilt_because'])})"
                 if report["rebuilt_because"] else ""))
        print(f"  largest error against direct sums on sampled spheres: "
              f"{report['max_error']:.1e}")
        for step in report["steps"][:: max(1, args.steps // 10)]:
            print(f"    step {step['step']:4d}: mean velocity "
                  f"{-step['mean_velocity'][2] / cloud.drop:.4f} of the drop's"
                  + (f", error {step['error']:.1e}" if "error" in step else ""))
        print(f"  first step's mean velocity {100 * report['first_drop_error']:.1f}% from the "
              f"drop's ({cloud.drop:.4g}; a lone sphere's {cloud.stokes:.4g})")
        print(f"  small copy ({copy['spheres']} spheres): FMM {copy['median_fmm_seconds']:.4f}"
              f" s a step, direct sum {copy['median_direct_seconds']:.4f} s; largest "
              f"difference {copy['max_error']:.1e}")
        print("ok" if report["ok"] else "FAILED: an error above its tolerance")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
