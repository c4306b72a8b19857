"""``fmmloopy bench``: time every FMM step on a real tree, per recipe, against the sequential one.

Work is counted on the host from the lists (:meth:`fmmloopy.driver.plan.Plan.work`): target-source
pairs for pairwise operators, ``2 n_out n_in`` flops per list entry for matvecs. Each step is set
against the device's roofline (:mod:`fmmloopy.execution.roofline`): its flops (a matvec's work; a
pairwise step's pairs times the Green's function's flops per pair,
:meth:`fmmloopy.maths.green.GreenKernel.flops_per_pair`) over the fewest bytes it must move
(:meth:`fmmloopy.maths.operators.OperatorSpec.traffic`) give its arithmetic intensity, and the
share printed is its flop rate over ``min(peak, intensity x bandwidth)``, both ceilings *measured*
on the device (an FMA-bound and a streaming kernel), not derived from its properties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fmmloopy.api.error_estimate import ErrorEstimate
from fmmloopy.api.fmm import MAX_ORDER, MIN_ORDER, Fmm
from fmmloopy.base.devices import choose_device
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.base.validation import validate_integer
from fmmloopy.driver.memory import describe_problem, estimate_before_tree
from fmmloopy.execution.resources import check_memory
from fmmloopy.execution.roofline import Peaks, measure_peaks, roofline
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.operators import OPERATORS, PAIRWISE
from fmmloopy.tree.cost import AUTO, CANDIDATES, validate_n_crit


@dataclass(frozen=True)
class BenchRow:
    """One step of the FMM under one recipe."""

    step: str
    recipe: str
    seconds: float  # median of the timed repeats
    work: int
    unit: str  # "pairs" or "flops"
    rate: float  # work per second
    flops: float  # floating-point operations of the step (pairs x flops per pair if pairwise)
    intensity: float  # flops per byte of the step's least traffic
    roof: float  # attainable flops per second: min(measured peak, intensity x bandwidth)
    roof_share: float  # (flops / seconds) / roof
    speedup: float | None  # sequential seconds / seconds


def step_roofline(flops: float, traffic: int, seconds: float, peaks: Peaks) -> tuple:
    """(intensity, attainable rate, share of it reached) of a step of ``flops`` moving at least
    ``traffic`` bytes in ``seconds``."""
    intensity = flops / max(traffic, 1)
    roof = roofline(peaks, intensity)
    return intensity, roof, flops / seconds / roof


def _time_steps(plan, steps: list[str], repeats: int) -> dict[str, float]:
    seconds = {}
    for step in steps:
        plan.run_step(step)  # warm-up (outputs accumulate: only the time matters here)
        seconds[step] = float(np.median([plan.run_step(step) for _ in range(repeats)]))
    return seconds


def run_bench(*, n: int = 100_000, order: int = 6, n_crit: int | str = "auto",
              distribution: str = "sphere", recipe: str | None = None,
              operators: list[str] | None = None, repeats: int = 3, device=None,
              seed: int = 0, verify_recipes: bool = True,
              peaks: Peaks | None = None, kernel: str = "laplace", gradient: bool = False,
              dipoles: bool = False, sequential: bool = True, eps: float | None = None,
              error_samples: int = 500) -> tuple[list[BenchRow], dict]:
    """Bench the steps of ``operators`` (default: all) under ``recipe`` and ``sequential``,
    for the potential of charges of Green's function ``kernel`` (with ``gradient``: and its
    gradient; with ``dipoles``: of charges and dipoles).

    With ``operators`` named, ``recipe`` applies to those only (the other steps run under the
    device's own recipes), so a recipe written for one operator can be benched alone. A recipe
    that is not shipped is compared with ``sequential`` on the bench's tree first (``Fmm``'s
    first-use verification), unless ``verify_recipes`` is False. ``peaks`` default: measured on
    the device now (:func:`fmmloopy.execution.roofline.measure_peaks`, a few seconds).
    ``sequential`` False: the steps are not timed under ``sequential`` too (no speedup; on a GPU
    its kernels run a box, or a whole launch, on one work-item). ``eps``: the order chosen for
    that error instead of ``order``. The call's error is estimated against a direct sum on
    ``error_samples`` targets (:meth:`fmmloopy.Fmm.estimate_error`; 0: not estimated).
    """
    n = validate_integer(n, "n (points to bench on)", 1)
    repeats = validate_integer(repeats, "repeats", 1)
    order = validate_integer(order, "order", MIN_ORDER, MAX_ORDER)
    error_samples = validate_integer(error_samples, "error_samples", 0)
    n_crit = validate_n_crit(n_crit)
    # Refuse what cannot fit before the points are drawn (the FMM checks it again, in detail).
    leaf = CANDIDATES[-1] if n_crit == AUTO else n_crit  # "auto": the fewest boxes it may make
    check_memory(estimate_before_tree(n, n, True, order, leaf), choose_device(device),
                 describe_problem(n, n, order, n_crit))
    rng = np.random.default_rng(seed)
    points = DISTRIBUTIONS[distribution](n, rng)
    fields = {"charges": rng.uniform(-1, 1, n),
              "dipoles": rng.uniform(-1, 1, (n, 3)) if dipoles else None, "gradient": gradient}
    if get_kernel(kernel).is_complex:  # complex strengths: real and imaginary parts random
        fields["charges"] = fields["charges"] + 1j * rng.uniform(-1, 1, n)
        if dipoles:
            fields["dipoles"] = fields["dipoles"] + 1j * rng.uniform(-1, 1, (n, 3))
    recipes = {operator: recipe for operator in operators} if recipe and operators else recipe
    # M2P and P2L for every W and X entry (no small boxes summed directly): every operator runs.
    accuracy = dict(order=order) if eps is None else dict(
        eps=eps, eps_for=("charges",) + ("dipoles",) * dipoles + ("gradient",) * gradient)
    fmm = Fmm(points, kernel=kernel, n_crit=n_crit, device=device, recipes=recipes,
              w_x_direct=False, verify_recipes=verify_recipes, **accuracy)
    order = fmm.order
    result = fmm(**fields)
    estimates = {} if not error_samples else fmm.estimate_error(
        **fields, samples=error_samples, result=result)
    plan = fmm.last_plan
    present = {launch.step for launch in plan.launches}
    steps = [step for step in (operators or [*OPERATORS]) if step in present]
    timed = _time_steps(plan, steps, repeats)
    baseline = {}
    if sequential:
        reference = Fmm(points, kernel=kernel, order=order, n_crit=fmm.n_crit,
                        device=fmm.device, recipes="sequential", w_x_direct=False)
        reference(**fields)
        baseline = _time_steps(reference.last_plan, steps, repeats)
    peaks = peaks or measure_peaks(fmm.queue)
    rows = []
    for step in steps:
        work = plan.work(step)
        pairwise = OPERATORS[step].template == PAIRWISE
        flops = plan.flops(step)
        chosen = {launch.kernel.recipe.name for launch in plan.launches
                  if launch.step == step}
        rows.append(BenchRow(step, "/".join(sorted(chosen)), timed[step], work,
                             "pairs" if pairwise else "flops", work / timed[step], flops,
                             *step_roofline(flops, plan.traffic(step), timed[step], peaks),
                             baseline[step] / timed[step] if baseline else None))
    flops_per_pair = {step: round(plan.flops(step) / max(plan.work(step), 1))
                      for step in steps if OPERATORS[step].template == PAIRWISE}
    info = {"n": n, "order": order, "n_crit": fmm.n_crit, "n_crit_chosen": n_crit == AUTO,
            "root_scale": fmm.root_scale,
            "distribution": distribution,
            "kernel": fmm.fields_kernel(dipoles=dipoles, gradient=gradient).label,
            "device": fmm.device.name, "peak_gflops": peaks.flops / 1e9,
            "bandwidth_gbytes": peaks.bandwidth / 1e9, "peak_source": peaks.source,
            "flops_per_pair": flops_per_pair, "repeats": repeats, "sequential": sequential,
            "eps": eps, "error_estimate": {field: estimate._asdict()
                                           for field, estimate in estimates.items()},
            "verified_recipes": sorted(fmm.verified_recipes),
            "unverified_recipes": sorted(fmm.plan.unverified_recipes)}
    return rows, info


def format_table(rows: list[BenchRow], info: dict) -> str:
    """A readable table of :func:`run_bench`'s result."""
    chosen = " (chosen by cost)" if info.get("n_crit_chosen") else ""
    if info.get("root_scale", 1.0) != 1.0:
        chosen += f" in a root cube {info['root_scale']:.3g} times the points' bounding cube"
    lines = [f"{info['kernel']}: "
             f"{info['n']} points ({info['distribution']}), order {info['order']}, n_crit "
             f"{info['n_crit']}{chosen}, device {info['device']}, median of {info['repeats']}; "
             "M2P/P2L on every W/X entry (Fmm's w_x_direct=False)",
             f"roofline: fp64 peak {info['peak_gflops']:.1f} GFLOP/s, bandwidth "
             f"{info['bandwidth_gbytes']:.1f} GB/s ({info['peak_source']}); flops per pair: "
             + ", ".join(f"{step} {flops}" for step, flops in info["flops_per_pair"].items()),
             f"{'step':6s} {'recipe':12s} {'seconds':>9s} {'work':>11s} {'rate':>16s} "
             f"{'GFLOP/s':>8s} {'flop/B':>7s} {'of roof':>8s} {'vs sequential':>13s}"]
    if info.get("verified_recipes"):
        lines.append(f"recipes {', '.join(info['verified_recipes'])}: compared with "
                     "'sequential' on this tree before timing (first-use verification)")
    if info.get("unverified_recipes"):
        lines.append(f"recipes {', '.join(info['unverified_recipes'])}: NOT verified against "
                     "'sequential' (--no-verify-recipes); their numbers may be wrong")
    for row in rows:
        rate = (f"{row.rate / 1e6:9.0f} Mpair/s" if row.unit == "pairs"
                else f"{row.rate / 1e9:8.2f} GFLOP/s")
        lines.append(f"{row.step:6s} {row.recipe:12s} {row.seconds:9.4f} {row.work:11.3e} "
                     f"{rate:>16s} {row.flops / row.seconds / 1e9:8.2f} {row.intensity:7.1f} "
                     f"{100 * row.roof_share:7.1f}% "
                     + (f"{row.speedup:12.1f}x" if row.speedup is not None else f"{'-':>13s}"))
    if info.get("error_estimate"):
        estimates = {field: ErrorEstimate(**values)
                     for field, values in info["error_estimate"].items()}
        lines.insert(2, "relative L2 error, estimated against a direct sum on sampled "
                     "targets: " + "; ".join(f"{field} {estimate}"
                                             for field, estimate in estimates.items())
                     + (f" (eps {info['eps']:g})" if info.get("eps") else ""))
    return "\n".join(lines)


def as_json(rows: list[BenchRow], info: dict) -> dict:
    """The result as plain data."""
    return {"info": info, "steps": [asdict(row) for row in rows]}
