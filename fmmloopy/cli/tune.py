"""``fmmloopy tune``: search the declared parameters of the recipes the device runs, on an FMM
of production size, and keep the fastest values for this device.

What it does, in order:

1. An FMM of ``n`` points (``Fmm``'s defaults: ``n_crit`` by cost, the device's own recipes)
   under the recipes' declared defaults, one evaluation to see what each step costs. The
   operators whose step takes at least :data:`MIN_SHARE` of it, under a recipe that declares
   parameters, are tuned; the others keep their defaults.
2. Per operator, the candidates: each declared value of each parameter, the others at their
   defaults, under each value of a parameter that chooses a code path (:func:`one_at_a_time`);
   then, where several parameters gained, the winners together.
3. Every candidate's kernels are first compared with ``sequential`` on the FMM's own tree and
   lists, launch by launch (the plan's first-use verification, forced for the operator): a
   candidate that differs is refused and never timed. A candidate whose generated code is the
   defaults', on the lists of the same layout (a parameter of a path this device does not
   take), is not timed either.
4. Timing: the operator's step under the candidate and under the defaults, alternated,
   ``repeats`` times each (after a warm-up); medians compared. The noise is the spread of the
   defaults' own times (half the range over the median): a candidate wins only by more than
   that, and by at least :data:`MIN_GAIN`; the best is then timed again against the defaults,
   three times as long, and kept only if it wins again (of a dozen candidates timed against
   noise, one may win by chance).
5. The winners (or the defaults, where nothing won) are written to the device's tuning record
   (:mod:`fmmloopy.execution.tuning_records`) with the report, and used by default from then
   on; ``fmmloopy recipes`` shows them, ``fmmloopy tune --reset`` drops them. With them, the
   rates measured in step 1 (:func:`rates_of`): what a P2P pair costs in matvec flops
   on this device, which the ``n_crit`` cost model takes from then on instead of the constant
   of the device's kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fmmloopy.api.fmm import Fmm
from fmmloopy.base.devices import choose_device
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.base.validation import validate_integer
from fmmloopy.driver.builder import build_plan
from fmmloopy.driver.selection import recipe_for
from fmmloopy.execution.tuning_records import (
    declared_device_facts,
    drop_record,
    entry_name,
    read_record,
    recipe_digest,
    store_record,
    trying,
)
from fmmloopy.maths.operators import OPERATORS
from fmmloopy.tuning.recipe import Recipe
from fmmloopy.tuning.registry import select_recipe

__all__ = ["MIN_GAIN", "MIN_SHARE", "Trial", "one_at_a_time", "rates_of", "run_tune"]

#: Steps below this share of the evaluation keep their defaults.
MIN_SHARE = 0.03
#: The least relative gain a candidate must show over the defaults to be kept.
MIN_GAIN = 0.03


@dataclass
class Trial:
    """One candidate's outcome."""

    operator: str
    recipe: str
    settings: dict[str, Any]
    #: "defaults", "timed", "confirmation", "refused: ...", "same code as the defaults" (or as
    #: another candidate's settings)
    status: str
    seconds: float | None = None  # median of its step
    default_seconds: float | None = None  # median of the defaults' step, alternated with it
    noise: float | None = None  # relative spread of the defaults' times

    @property
    def gain(self) -> float | None:
        """Default time over this candidate's, where both were timed."""
        if self.seconds and self.default_seconds:
            return self.default_seconds / self.seconds
        return None


@dataclass
class OperatorResult:
    """The tuning of one operator: its trials and the values kept."""

    operator: str
    recipe: str
    share: float
    defaults: dict[str, Any]
    kept: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)

    @property
    def gain(self) -> float:
        """The kept values' gain over the defaults (1.0: the defaults kept)."""
        confirmed = [trial.gain for trial in self.trials
                     if trial.status == "confirmation" and trial.settings == self.kept]
        return confirmed[-1] if confirmed else 1.0


def one_at_a_time(recipe: Recipe, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates of :func:`run_tune`'s first round: each declared value of each
    parameter with the others at ``defaults``; under each value of a parameter that chooses a
    path (:attr:`~fmmloopy.tuning.recipe.Parameter.chooses_path`), the others' values again
    (their defaults may suit only the default path)."""
    paths = [{}]
    for name, parameter in recipe.parameters:
        if parameter.chooses_path:
            paths = [{**path, name: value} for path in paths for value in parameter.values]
    candidates = []
    for path in paths:
        base = {**defaults, **path}
        if base != defaults and base not in candidates:
            candidates.append(base)
        for name, parameter in recipe.parameters:
            if parameter.chooses_path:
                continue
            for value in parameter.values:
                candidate = {**base, name: value}
                if value != base[name] and candidate not in candidates:
                    candidates.append(candidate)
    return candidates


#: The steps whose flop rate is the cost model's "matvec flops" (the far field's matrices).
MATVEC_STEPS = ("m2m", "l2l", "m2l", "m2l_compress", "m2l_expand", "c2e")


def rates_of(plan, seconds: Mapping[str, float]) -> dict[str, float] | None:
    """P2P's pairs per second, the matvec steps' flops per second and their ratio (a pair's
    cost in matvec flops, ``pair_flops``) from ``plan``'s work and the steps' ``seconds``;
    None where the plan has no P2P or no matvec step."""
    pairs, pair_seconds = plan.work("p2p"), seconds.get("p2p", 0.0)
    steps = [step for step in MATVEC_STEPS if seconds.get(step, 0.0) > 0]
    flops, flop_seconds = (sum(plan.flops(step) for step in steps),
                           sum(seconds[step] for step in steps))
    if not (pairs and pair_seconds > 0 and flops and flop_seconds > 0):
        return None
    pair_rate, flop_rate = pairs / pair_seconds, flops / flop_seconds
    return {"pair_flops": flop_rate / pair_rate, "p2p_pairs_per_second": pair_rate,
            "matvec_flops_per_second": flop_rate}


def _codes(plan, operator: str) -> list[tuple[str, str]]:
    """What makes ``operator``'s launches in ``plan`` run as they do: each kernel's generated
    code and the list layout its arguments were cut for."""
    return [(launch.kernel.device_code(), repr(launch.kernel.layout))
            for launch in plan.launches if launch.step == operator]


def _alternated(default_plan, plan, operator: str, repeats: int
                ) -> tuple[float, float, float]:
    """Medians of ``operator``'s step under the defaults and under ``plan``, run alternately
    ``repeats`` times each after a warm-up, and the defaults' relative spread."""
    default_plan.run_step(operator)
    plan.run_step(operator)
    defaults, candidate = [], []
    for _ in range(repeats):
        defaults.append(default_plan.run_step(operator))
        candidate.append(plan.run_step(operator))
    median = float(np.median(defaults))
    spread = 0.5 * (max(defaults) - min(defaults)) / median if median > 0 else 0.0
    return median, float(np.median(candidate)), spread


def run_tune(*, n: int = 100_000, order: int = 6, distribution: str = "sphere",
             repeats: int = 5, device=None, seed: int = 0,
             operators: Iterable[str] | None = None, min_share: float = MIN_SHARE,
             recipes: str | Mapping[str, str] | None = None, store: bool = True,
             rates_only: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune the recipes' parameters on an FMM of ``n`` ``distribution`` points (module
    docstring); returns the report (also stored in the record with the values kept, unless
    ``store`` is False). ``operators``: tune these only (default: every step of at least
    ``min_share`` of the evaluation). ``recipes``: as :class:`~fmmloopy.Fmm` takes them (a
    recipe for every operator, or one per operator; default: the device's own), the recipes
    whose parameters are tuned.

    ``rates_only``: the quick probe: step 1 only, under the values in force (a record's tuned
    values, else the defaults), nothing searched; the record keeps its tuned values and takes
    the rates measured (what the ``n_crit`` cost model reads)."""
    n = validate_integer(n, "n (points to tune on)", 1)
    repeats = validate_integer(repeats, "repeats", 1)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}: one of "
                         f"{sorted(DISTRIBUTIONS)}")
    if rates_only and operators:
        raise ValueError("rates_only measures the rates and tunes nothing: give no operators")
    wanted = [] if rates_only else None if operators is None else list(operators)
    for name in wanted or ():
        if name not in OPERATORS:
            raise ValueError(f"unknown operator {name!r}: one of {sorted(OPERATORS)}")
    device = choose_device(device)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    points = DISTRIBUTIONS[distribution](n, rng)
    charges = rng.uniform(-1, 1, n)

    # The recipe of each operator on this device, and its declared defaults.
    chosen_recipes = {name: select_recipe(name, spec.template, device,
                                          recipe_for(recipes, name))
                      for name, spec in OPERATORS.items()}
    defaults = {name: recipe.settings_for(device) for name, recipe in chosen_recipes.items()
                if recipe.parameters}
    in_force = {} if rates_only else {entry_name(chosen_recipes[name].name, name): values
                                      for name, values in defaults.items()}
    with trying(in_force):
        log(f"tune: {device.name}: an FMM of {n} {distribution} points, order {order}, under "
            + ("the values in force (rates only)" if rates_only
               else "the recipes' declared defaults"))
        fmm = Fmm(points, order=order, device=device, recipes=recipes)
        steps: dict[str, float] = {}
        for _ in range(3):  # each step's best of three evaluations
            fmm(charges)
            steps = {step: min(seconds, steps.get(step, seconds))
                     for step, seconds in fmm.eval_seconds.items()}
        total = sum(seconds for step, seconds in steps.items() if step in OPERATORS)
        rates = rates_of(fmm.last_plan, steps)
        declared = declared_device_facts(device)
        if rates is not None:
            log(f"tune: P2P {rates['p2p_pairs_per_second']:.3g} pairs/s, matvec steps "
                f"{rates['matvec_flops_per_second']:.3g} flop/s: a pair costs "
                f"{rates['pair_flops']:.3g} matvec flops here (the n_crit cost model's "
                "constant for this kind of device: "
                f"{declared.pair_flops:g})")

        def plan(check: Iterable[str] = ()):
            return build_plan(fmm.tree, fmm.evaluated_lists, fmm.operators, fmm.kernel,
                              fmm.queue, recipes, check_operators=check)

        default_plan = plan()
        shares = {step: steps.get(step, 0.0) / total for step in OPERATORS if total > 0}
        chosen = [step for step in OPERATORS if step in defaults and step in shares
                  and (step in wanted if wanted is not None else shares[step] >= min_share)]
        skipped = sorted(step for step in shares if step not in chosen and shares[step] > 0)
        log(f"tune: n_crit {fmm.n_crit}; evaluation {total:.3f} s; tuning "
            f"{', '.join(f'{step} ({shares[step]:.0%})' for step in chosen) or 'nothing'}"
            + (f"; defaults kept for {', '.join(skipped)}" if skipped else ""))
        results = []
        for operator in chosen:
            results.append(_tune_operator(operator, chosen_recipes[operator], defaults[operator],
                                          shares[operator], default_plan, plan, in_force,
                                          repeats, log))
    report = {
        "device": device.name, "n": n, "order": order, "distribution": distribution,
        "n_crit": fmm.n_crit, "repeats": repeats, "seconds": time.perf_counter() - started,
        "rates": rates,
        "operators": [{**{key: value for key, value in asdict(result).items()
                          if key != "trials"},
                       "gain": result.gain,
                       "trials": [{**asdict(trial), "gain": trial.gain}
                                  for trial in result.trials]}
                      for result in results],
    }
    if store:
        entries = {entry_name(result.recipe, result.operator):
                   (result.kept, recipe_digest(chosen_recipes[result.operator]) or "")
                   for result in results}
        if rates_only:  # the values tuned before stay
            entries = dict(read_record(device))
        path = store_record(device, entries, report, rates)
        log(f"tune: record written to {path}")
    log(f"tune: done in {report['seconds']:.0f} s")
    return report


def _tune_operator(operator: str, recipe: Recipe, defaults: dict[str, Any], share: float,
                   default_plan, plan, in_force: dict, repeats: int,
                   log: Callable[[str], None]) -> OperatorResult:
    """The trials of one operator and the values kept (:func:`run_tune`)."""
    name = entry_name(recipe.name, operator)
    result = OperatorResult(operator, recipe.name, share, dict(defaults), dict(defaults))
    result.trials.append(Trial(operator, recipe.name, dict(defaults), "defaults"))
    default_codes = _codes(default_plan, operator)
    #: Code and layout of each candidate timed so far -> its settings (the same code is not
    #: timed twice: a parameter of a path the candidate does not take).
    timed_codes: dict[tuple, dict[str, Any]] = {}

    def attempt(settings: dict[str, Any], times: int = repeats,
                status: str = "timed") -> Trial:
        with trying({**in_force, name: settings}):
            try:
                candidate = plan(check=[operator])
            except Exception as error:  # a candidate that differs or does not build
                trial = Trial(operator, recipe.name, settings,
                              f"refused: {type(error).__name__}: {error}")
                log(f"tune: {operator} {settings}: refused (differs from 'sequential' or "
                    "does not build)")
                return trial
        codes = _codes(candidate, operator)
        if codes == default_codes:
            return Trial(operator, recipe.name, settings, "same code as the defaults")
        if status == "timed" and tuple(codes) in timed_codes:
            return Trial(operator, recipe.name, settings,
                         f"same code as {timed_codes[tuple(codes)]}")
        timed_codes.setdefault(tuple(codes), settings)
        default_seconds, seconds, noise = _alternated(default_plan, candidate, operator,
                                                      times)
        trial = Trial(operator, recipe.name, settings, status, seconds, default_seconds,
                      noise)
        log(f"tune: {operator} {settings}{' (' + status + ')' if status != 'timed' else ''}: "
            f"{seconds * 1e3:.2f} ms against the defaults' {default_seconds * 1e3:.2f} ms "
            f"(noise {noise:.0%})")
        return trial

    def winner(trials: list[Trial]) -> Trial | None:
        better = [trial for trial in trials if trial.gain
                  and trial.gain > 1 + max(MIN_GAIN, trial.noise or 0.0)]
        return max(better, key=lambda trial: trial.gain, default=None)

    log(f"tune: {operator} under recipe {recipe.name!r}, defaults {defaults}")
    first = [attempt(settings) for settings in one_at_a_time(recipe, defaults)]
    result.trials += first
    best = winner(first)
    # Where more than one parameter gained alone, the gains together.
    gained = {}
    for trial in first:
        if winner([trial]) is not None:
            for key, value in trial.settings.items():
                if value != defaults[key] and (key not in gained or trial.gain
                                               > gained[key][1]):
                    gained[key] = (value, trial.gain)
    if len(gained) > 1:
        together = attempt({**defaults, **{key: value for key, (value, _) in gained.items()}})
        result.trials.append(together)
        best = winner([trial for trial in (best, together) if trial is not None])
    if best is not None:
        # Of a dozen candidates timed against noise, one may win by chance: the winner is
        # timed again, three times as long, and kept only if it wins again.
        confirmation = attempt(best.settings, 3 * repeats, "confirmation")
        result.trials.append(confirmation)
        best = winner([confirmation])
    if best is not None:
        result.kept = dict(best.settings)
    log(f"tune: {operator}: keeping {result.kept}"
        + (f" ({best.gain:.2f}x the defaults)" if best is not None else " (the defaults)"))
    return result


def format_report(report: dict[str, Any]) -> str:
    """The report as a table: per operator, its share, the values kept and their gain."""
    lines = [f"{report['device']}: {report['n']} {report['distribution']} points, order "
             f"{report['order']}, n_crit {report['n_crit']}, {report['repeats']} alternated "
             f"repeats; {report['seconds']:.0f} s",
             f"{'operator':14s} {'share':>6s} {'gain':>6s} {'tried':>5s} {'refused':>7s}  kept"]
    for result in report["operators"]:
        tried = [trial for trial in result["trials"]
                 if trial["status"] not in ("defaults", "confirmation")]
        refused = sum(trial["status"].startswith("refused") for trial in tried)
        lines.append(f"{result['operator']:14s} {result['share']:6.1%} {result['gain']:6.2f} "
                     f"{len(tried):5d} {refused:7d}  {result['kept']}")
    return "\n".join(lines)


def reset(device=None) -> str:
    """Drop the device's tuning record; what was done, in words."""
    device = choose_device(device)
    if drop_record(device):
        return f"{device.name}: tuning record dropped; the recipes' declared defaults run"
    return f"{device.name}: no tuning record; the recipes' declared defaults run"
