"""Recipe parameters, tuning records and ``fmmloopy tune``: declared values reach the kernels
(and their cache keys), records are data that are checked before use, and the tuner refuses
a wrong candidate before timing it."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyopencl as cl
import pytest

from fmmloopy.base.devices import VECTOR_DOUBLES_ENV
from fmmloopy.checking.check import check_pair
from fmmloopy.checking.problems import check_problems
from fmmloopy.execution import tuning_records
from fmmloopy.execution.cache_files import CACHE_ENV
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.kernel_cache import kernel_key
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.tuning import registry
from fmmloopy.tuning.recipe import Parameter, RecipeError, recipe

TUNABLE = str(Path(__file__).parent / "recipes" / "tunable_recipes.py")
M2L_SIZES = {"n_target_coeffs": 56, "n_source_coeffs": 56}


def _shipped(name, template):
    return next(r for r in registry.REGISTRY if r.name == name and template in r.targets)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache directory of the test's own: records written here reach no other test."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_shipped_recipes_declare_their_constants_as_defaults(monkeypatch):
    from fmmloopy.transforms import cpu, gpu

    monkeypatch.delenv(VECTOR_DOUBLES_ENV, raising=False)
    pocl = SimpleNamespace(name="Portable Computing Language")
    avx512, avx2 = (SimpleNamespace(preferred_vector_width_double=w, type=cl.device_type.CPU,
                                    platform=pocl, vendor="x") for w in (8, 4))
    intel = SimpleNamespace(preferred_vector_width_double=1, type=cl.device_type.CPU,
                            platform=SimpleNamespace(name="Intel(R) OpenCL"), vendor="Intel")
    matvec = _shipped("cpu", "matvec")
    assert matvec.settings_for(avx512) == {"pair_tile": cpu.WIDE_PAIR_TILE,
                                           "vector_width": cpu.WIDE_VECTOR_WIDTH,
                                           "blocks_per_core": cpu.BLOCKS_PER_CORE}
    assert matvec.settings_for(avx2) == {"pair_tile": cpu.PAIR_TILE,
                                         "vector_width": cpu.VECTOR_WIDTH,
                                         "blocks_per_core": cpu.BLOCKS_PER_CORE}
    for device, path, rsqrt in ((avx2, "work_items", "sqrt_divide"),
                                (avx512, "vector_lanes", "sqrt_divide"),
                                (intel, "work_items", "bits_newton")):
        assert _shipped("cpu", "pairwise").settings_for(device) == {
            "targets_in": path, "work_group_size": cpu.WORK_GROUP_SIZE,
            "lane_width": cpu.LANE_WIDTH, "lane_chains": cpu.LANE_CHAINS,
            "reciprocal_sqrt": rsqrt}
    assert _shipped("gpu", "pairwise").settings_for(avx2) == {
        "particle_targets_per_group": gpu.PARTICLE_TARGETS_PER_GROUP,
        "surface_targets_per_group": gpu.SURFACE_TARGETS_PER_GROUP,
        "max_group": gpu.MAX_GROUP}
    # The layout follows the settings given, the defaults otherwise.
    assert matvec.layout_for(avx2, {"pair_tile": 12, "blocks_per_core": 8}).pair_tile == 12
    assert matvec.layout_for(avx2).blocks_per_compute_unit == cpu.BLOCKS_PER_CORE


def test_unknown_parameters_and_values_are_refused_by_name(device):
    matvec = _shipped("cpu", "matvec")
    with pytest.raises(RecipeError, match="has no parameter 'tile' .*'blocks_per_core'"):
        matvec.settings_for(device, {"tile": 4})
    with pytest.raises(RecipeError, match=r"parameter 'pair_tile' = 5 \(given\) is not one of "
                                          r"its values \(2, 4, 6, 8, 12, 16\)"):
        compiled_operator("m2l", device, recipe="cpu", settings={"pair_tile": 5}, **M2L_SIZES)
    with pytest.raises(TypeError, match="parameter 'tile' must be a Parameter"):
        recipe("p2p", name="bad_parameter", parameters={"tile": (1, 2)})(lambda knl, ctx: knl)
    with pytest.raises(TypeError, match="each a number, string or boolean"):
        recipe("p2p", name="bad_value", parameters={"tile": Parameter((np.float64,), 1)})(
            lambda knl, ctx: knl)


@pytest.mark.filterwarnings("ignore:This function is deprecated:DeprecationWarning")
def test_settings_make_kernels_of_their_own_that_are_checked_like_any(device, monkeypatch):
    """Other values: another kernel (layout, code, cache key), compared with 'sequential'."""
    monkeypatch.setenv(VECTOR_DOUBLES_ENV, "4")
    matvec = _shipped("cpu", "matvec")
    default = compiled_operator("m2l", device, recipe="cpu", **M2L_SIZES)
    other = compiled_operator("m2l", device, recipe="cpu",
                              settings={"pair_tile": 2, "vector_width": 4}, **M2L_SIZES)
    assert other is not default and other.layout.pair_tile == 2
    assert other.settings == {"pair_tile": 2, "vector_width": 4, "blocks_per_core": 2}
    assert "double4 acc[" in other.device_code() and "double8 acc[" in default.device_code()
    keys = [kernel_key("m2l", matvec, device, LAPLACE_3D, np.float64, M2L_SIZES, settings)
            for settings in (None, {"pair_tile": 2, "vector_width": 4})]
    assert keys[0] != keys[1] and keys[1]["settings"]["pair_tile"] == "2"
    problem = next(p for p in check_problems() if p.name == "sphere")
    results = check_pair("m2l", "cpu", problem, device,
                         settings={"pair_tile": 2, "vector_width": 4})
    assert results and all(result.ok for result in results), results


def _record(device, entries, rates=None):
    path = tuning_records.store_record(device, entries, {"by": "test"}, rates)
    tuning_records.forget_records()  # read back from the file, as a new process would
    return path


def test_a_record_sets_the_values_in_force_and_is_checked_before_use(device, own_cache):
    matvec = _shipped("cpu", "matvec")
    digest = tuning_records.recipe_digest(matvec)
    name = tuning_records.entry_name("cpu", "m2l")
    path = _record(device, {name: ({"pair_tile": 6}, digest)})
    assert oct(path.stat().st_mode & 0o777) == "0o600" or path.stat().st_mode & 0o022 == 0
    assert tuning_records.tuned_settings(matvec, "m2l", device) == {"pair_tile": 6}
    assert tuning_records.tuned_settings(matvec, "c2e", device) == {}  # not tuned
    kernel = compiled_operator("m2l", device, recipe="cpu", **M2L_SIZES)
    assert kernel.settings["pair_tile"] == 6 and kernel.layout.pair_tile == 6

    # A value the recipe does not declare, or a recipe changed since: that entry is ignored.
    _record(device, {name: ({"pair_tile": 5}, digest)})
    with pytest.warns(tuning_records.TuningRecordWarning, match="pair_tile = 5 is not a value"):
        assert tuning_records.tuned_settings(matvec, "m2l", device) == {}
    _record(device, {name: ({"pair_tile": 6}, "0" * 64)})
    with pytest.warns(tuning_records.TuningRecordWarning, match="changed since"):
        assert tuning_records.tuned_settings(matvec, "m2l", device) == {}

    # A damaged record (its digest no longer matches) is rejected and deleted.
    _record(device, {name: ({"pair_tile": 6}, digest)})
    data = json.loads(path.read_text())
    data["body"]["entries"][name]["settings"]["pair_tile"] = 8
    path.write_text(json.dumps(data))
    with pytest.warns(tuning_records.TuningRecordWarning, match="digest does not match"):
        assert tuning_records.tuned_settings(matvec, "m2l", device) == {}
    assert not path.exists()
    # Another device's record (its fingerprint differs) is rejected too; so is one not JSON.
    _record(device, {name: ({"pair_tile": 6}, digest)})
    data = json.loads(path.read_text())
    data["body"]["device"]["name"] = "another device"
    data["sha256"] = tuning_records._digest(data["body"])
    path.write_text(json.dumps(data))
    with pytest.warns(tuning_records.TuningRecordWarning, match="another device"):
        assert tuning_records.read_record(device) == {}
    _record(device, {name: ({"pair_tile": 6}, digest)}, {"pair_flops": 2.0})
    data = json.loads(path.read_text())
    data["body"]["rates"]["pair_flops"] = -1.0  # digested again: well-formed JSON, bad rate
    data["sha256"] = tuning_records._digest(data["body"])
    path.write_text(json.dumps(data))
    with pytest.warns(tuning_records.TuningRecordWarning, match="rates are malformed"):
        assert tuning_records.measured_rates(device) is None
    path.write_text("{not json")
    tuning_records.forget_records()
    with pytest.warns(tuning_records.TuningRecordWarning, match="rejected"):
        assert tuning_records.read_record(device) == {}

    _record(device, {name: ({"pair_tile": 6}, digest)})
    assert tuning_records.drop_record(device) and not path.exists()
    assert tuning_records.tuned_settings(matvec, "m2l", device) == {}


@pytest.mark.filterwarnings("ignore:This function is deprecated:DeprecationWarning")
def test_tune_refuses_a_wrong_candidate_and_stores_what_it_keeps(device, own_cache):
    """The planted candidate (group 32 drops each source box's last source) is compared with
    'sequential' on the tuned FMM's tree and refused, never timed; the record holds a value
    that was checked, and is in force afterwards."""
    from fmmloopy.cli.tune import format_report, run_tune

    registry.load_recipes(TUNABLE)
    lines = []
    report = run_tune(n=3000, order=3, distribution="cube", repeats=1, device=device,
                      operators=["p2p"], recipes={"p2p": "group_32_drops_last_pair"},
                      log=lines.append)
    (result,) = report["operators"]
    statuses = {}
    for trial in result["trials"]:  # (a winner is timed again: "confirmation")
        statuses.setdefault(trial["settings"]["group"], []).append(trial["status"])
    assert statuses[16] == ["defaults"]
    (refusal,) = statuses[32]
    assert refusal.startswith("refused: ") and "differs" in refusal, statuses
    assert statuses[8] in (["timed"], ["timed", "confirmation"])
    refused = next(trial for trial in result["trials"] if trial["settings"]["group"] == 32)
    assert refused["seconds"] is None  # never timed
    assert result["kept"]["group"] in (8, 16)
    assert any("refused" in line for line in lines)
    row = format_report(report).splitlines()[-1].split()
    assert (row[0], row[3], row[4]) == ("p2p", "2", "1")  # operator, tried, refused
    chosen = registry.select_recipe("p2p", "pairwise", device, "group_32_drops_last_pair")
    tuning_records.forget_records()
    assert tuning_records.tuned_settings(chosen, "p2p", device) == result["kept"]
    rates = tuning_records.measured_rates(device)
    assert rates == report["rates"] and rates["pair_flops"] == pytest.approx(
        rates["matvec_flops_per_second"] / rates["p2p_pairs_per_second"])


def test_check_operators_compare_shipped_recipes_too(device):
    """What tune asks of every candidate: the plan compares the operator's launches with
    'sequential' on its own tree, though the recipe is shipped (normally trusted as it is)."""
    import fmmloopy
    from fmmloopy.driver.builder import build_plan

    points = np.random.default_rng(3).random((2000, 3))
    fmm = fmmloopy.Fmm(points, order=3, device=device)
    assert "cpu" not in fmm.plan.verified_recipes
    plan = build_plan(fmm.tree, fmm.evaluated_lists, fmm.operators, fmm.kernel, fmm.queue,
                      "cpu", check_operators=["p2p"])
    assert plan.verified_recipes == frozenset({"cpu"})


def test_the_n_crit_model_takes_the_pair_cost_a_record_measured(device, own_cache):
    """With a record, Fmm's n_crit="auto" weighs a P2P pair as the record says (the
    choice of choose_tree with that cost: n_crit and root cube), without, as the device
    kind's constant."""
    import fmmloopy
    from fmmloopy.execution.precomputed import get_operators
    from fmmloopy.tree.cost import choose_tree
    from fmmloopy.tree.octree import in_wider_cube, sort_points

    points = np.random.default_rng(5).random((30000, 3))
    far = get_operators("laplace", 4).far_field_flops()
    sorted_points = sort_points(points)

    def expected(cost):
        choice = choose_tree(sorted_points, 4, cost, far,
                             lambda scale: in_wider_cube(sorted_points, scale))
        return choice.n_crit, pytest.approx(choice.root_scale)

    def chosen():
        fmm = fmmloopy.Fmm(points, order=4, device=device)
        return fmm.n_crit, np.ldexp(fmm.tree.root_half_width,
                                    fmm.coordinate_exponent) / sorted_points.half_width

    declared = tuning_records.declared_device_facts(device).pair_flops
    assert tuning_records.device_pair_flops(device) == declared
    assert chosen() == expected(declared)
    for cost in (0.5, 300.0):
        _record(device, {}, {"pair_flops": cost, "p2p_pairs_per_second": 1e9,
                             "matvec_flops_per_second": cost * 1e9})
        assert tuning_records.device_pair_flops(device) == cost
        assert chosen() == expected(cost)
    assert expected(0.5)[0] > expected(300.0)[0]  # cheaper pairs choose larger leaves


def test_pairs_calling_exp_or_sin_weigh_more_than_laplaces(device, own_cache):
    """The model's pair cost by kernel: the device's for rational pairs (Laplace, its
    gradient, Stokes), TRANSCENDENTAL_PAIR_FACTOR times it for Yukawa and Helmholtz."""
    from fmmloopy.maths.green import get_kernel
    from fmmloopy.tuning.device_facts import TRANSCENDENTAL_PAIR_FACTOR

    base = tuning_records.device_pair_flops(device)
    for spec in ("laplace", "stokes"):
        assert tuning_records.kernel_pair_flops(device, get_kernel(spec)) == base
    assert tuning_records.kernel_pair_flops(
        device, get_kernel("laplace").with_fields(("potential", "gradient"))) == base
    for spec in ("yukawa:kappa=10", "helmholtz:k=3"):
        assert tuning_records.kernel_pair_flops(device, get_kernel(spec)) == \
            TRANSCENDENTAL_PAIR_FACTOR * base


def test_the_rates_only_probe_measures_under_the_values_in_force_and_keeps_them(device,
                                                                                own_cache):
    """``fmmloopy tune --rates-only``: nothing searched; the rates measured are stored and
    weighed by the n_crit model, and the record's tuned entry (m2l's pair tile 6) stays."""
    from fmmloopy.cli.tune import run_tune

    matvec = _shipped("cpu", "matvec")
    name = tuning_records.entry_name("cpu", "m2l")
    _record(device, {name: ({"pair_tile": 6}, tuning_records.recipe_digest(matvec))})
    lines = []
    report = run_tune(n=3000, order=3, distribution="cube", repeats=1, device=device,
                      rates_only=True, log=lines.append)
    assert report["operators"] == [] and any("rates only" in line for line in lines)
    tuning_records.forget_records()
    rates = tuning_records.measured_rates(device)
    assert rates == report["rates"] and rates["p2p_pairs_per_second"] > 0
    assert tuning_records.device_pair_flops(device) == rates["pair_flops"]
    assert tuning_records.tuned_settings(matvec, "m2l", device) == {"pair_tile": 6}
    with pytest.raises(ValueError, match="tunes nothing"):
        run_tune(n=3000, device=device, rates_only=True, operators=["p2p"])
