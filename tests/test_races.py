"""fmmloopy.tuning.races: shipped recipes race nowhere and print no benign race warning; recipes
that put a summed-over or ordered loop on a parallel axis are reported by the loop's name.

Every racing recipe here is also shown wrong without fmmloopy.tuning.races: by loopy's own
``check_for_write_races`` on the kernel (which the templates no longer silence), by loopy
refusing the kernel, and by the Oclgrind simulator's data-race detector, which reports the
conflicting writes of a run whose numbers still come out right (work-items run one after another
there, as on PoCL). The benign races that fmmloopy.tuning.races silences run clean on Oclgrind.

Run as ``python tests/test_races.py CASE`` this file is the Oclgrind worker: it runs one case on
the simulator and prints what it found as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import loopy as lp
import numpy as np
import pytest
from loopy.check import check_for_write_races
from loopy.diagnostic import LoopyError, WriteRaceConditionWarning

from fmmloopy.maths.layouts import TARGET_MAJOR, Grouped, layout_arguments
from fmmloopy.maths.operators import get_operator, math_kernel, operator_sizes
from fmmloopy.tuning import races
from fmmloopy.tuning.recipe import RecipeContext
from fmmloopy.tuning.registry import select_recipe
from fmmloopy.tuning.tools import (
    pad_loop,
    parallelize_box_loop,
    spread_over_local_axis,
)

OPERATORS = ("p2p", "p2m", "p2l", "m2p", "l2p", "m2m", "l2l", "m2l", "c2e")
SHIPPED = ("sequential", "generic", "cpu", "gpu")


# {{{ helpers

def _context(operator, device, layout, sizes) -> RecipeContext:
    return RecipeContext(operator=operator, template=get_operator(operator).template,
                         device=device, parameters=dict(sizes, dtype=np.dtype(np.float64),
                                                        layout=layout))


def shipped(operator: str, name: str, device, **sizes) -> lp.TranslationUnit:
    """``operator``'s math kernel transformed by the shipped recipe ``name``."""
    recipe = select_recipe(operator, get_operator(operator).template, device, name)
    sizes = sizes or operator_sizes(operator, 56, rank=24)
    knl = math_kernel(operator, layout=recipe.layout_for(device), **sizes)
    return recipe(knl, _context(operator, device, recipe.layout_for(device), sizes))


def transformed(operator: str, function, device, layout=TARGET_MAJOR, **sizes,
                ) -> lp.TranslationUnit:
    """``operator``'s math kernel transformed by a recipe function of this file."""
    sizes = sizes or operator_sizes(operator, 56, rank=24)
    knl = math_kernel(operator, layout=layout, **sizes)
    return function(knl, _context(operator, device, layout, sizes))


_LOOPY_RACE = re.compile(r"instruction '([^']+)' contains a write race: instruction will be run "
                         r"across parallel iname\(s\) '([^']+)'")


def _parse_races(messages) -> dict[str, set[str]]:
    """Loopy's write-race warnings as instruction id -> the parallel loops it names."""
    found: dict[str, set[str]] = {}
    for message in messages:
        match = _LOOPY_RACE.search(str(message))
        assert match, message
        found.setdefault(match.group(1), set()).update(match.group(2).split(","))
    return found


def loopy_write_races(t_unit: lp.TranslationUnit) -> dict[str, set[str]]:
    """What loopy's own ``check_for_write_races`` says about ``t_unit`` (as it stands: nothing
    silenced by fmmloopy.tuning.races), run directly so that no loopy cache can hide it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_for_write_races(lp.preprocess_kernel(t_unit))
    return _parse_races(w.message for w in caught
                        if issubclass(w.category, WriteRaceConditionWarning))


def codegen_race_warnings(t_unit: lp.TranslationUnit) -> dict[str, set[str]]:
    """The write-race warnings loopy prints while generating code for ``t_unit``, with its caches
    off (a cache hit would skip the checks that warn)."""
    with lp.CacheMode(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp.generate_code_v2(t_unit)
    return _parse_races(w.message for w in caught
                        if issubclass(w.category, WriteRaceConditionWarning))


def _loop_named(report: races.RaceReport, loop: str) -> bool:
    return loop in report.inames and f"loop '{loop}'" in report.message

# }}}


# {{{ racing recipes (plain functions: registering them would add them to every check)

def race_iexp_src(knl, ctx):
    """The matvec's summed source coefficients across work-items: one partial sum each."""
    knl = parallelize_box_loop(knl)
    return spread_over_local_axis(knl, "iexp_src", 16)


def race_isrc(knl, ctx):
    """The pairwise sum's source points split by 16, the part inside padded to 16 (guarded) and
    put on ``l.0``. (``spread_over_work_group(knl, "isrc", 16)`` would guard the initialisation
    and the store by the source count too, which loopy cannot schedule.)"""
    knl = parallelize_box_loop(knl)
    knl = lp.split_iname(knl, "isrc", 16, inner_iname="isrc_inner", outer_iname="isrc_outer",
                         inner_tag="l.0")
    knl = pad_loop(knl, "isrc_inner", 16)
    return lp.add_inames_to_insn(knl, "isrc_inner", "not iname:isrc_inner")


def _csr_loop_on_local_axis(knl, loop: str, new: str, start: str, length: int):
    """``loop`` (a CSR range from ``start``) rewritten as ``start + new``, ``new`` padded to
    ``length`` (guarded) and put on ``l.0``: the way to get a data-dependent loop past loopy's
    refusal of parallel loops with data-dependent bounds."""
    knl = lp.affine_map_inames(knl, loop, new, f"{loop} = {new} + {start}")
    knl = pad_loop(knl, new, length)
    knl = lp.tag_inames(knl, {new: "l.0"})
    return lp.add_inames_to_insn(knl, new, f"not iname:{new}")


def race_isrc_box(knl, ctx):
    """The listed source boxes of a target box across work-items."""
    knl = parallelize_box_loop(knl)
    return _csr_loop_on_local_axis(knl, "isrc_box", "isrc_box_entry", "isrc_box_start", 32)


def race_igroup(knl, ctx):
    """The groups of one block of the grouped matvec across work-items: groups update the same
    target boxes."""
    knl = lp.tag_inames(knl, {"iblock": "g.0"})
    return _csr_loop_on_local_axis(knl, "igroup", "igroup_local", "igroup_start", 8)


def tag_igroup(knl, ctx):
    """The groups of a block straight onto a hardware axis."""
    return lp.tag_inames(knl, {"iblock": "g.0", "igroup": "g.1"})


def tag_isrc_box(knl, ctx):
    """The listed source boxes straight onto a hardware axis."""
    return lp.tag_inames(parallelize_box_loop(knl), {"isrc_box": "g.1"})


def grouped_blocks(knl, ctx):
    """A correct grouped-matvec recipe: one work-group per block (its races are benign)."""
    return lp.tag_inames(knl, {"iblock": "g.0"})


#: (operator, recipe, layout, racing loop, template loop, variable the store races on)
RACING = {
    "m2l-iexp_src": ("m2l", race_iexp_src, TARGET_MAJOR, "iexp_src_inner", "iexp_src",
                     "target_vectors"),
    "p2p-isrc": ("p2p", race_isrc, TARGET_MAJOR, "isrc_inner", "isrc", "result"),
    "m2l-isrc_box": ("m2l", race_isrc_box, TARGET_MAJOR, "isrc_box_entry", "isrc_box",
                     "target_vectors"),
    "p2l-isrc_box": ("p2l", race_isrc_box, TARGET_MAJOR, "isrc_box_entry", "isrc_box", "result"),
    "m2l-igroup": ("m2l", race_igroup, Grouped(target_block=3), "igroup_local", "igroup",
                   "target_vectors"),
}

# }}}


# {{{ shipped recipes

@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_has_no_race_and_generates_code_without_race_warning(device, name,
                                                                            operator):
    t_unit = shipped(operator, name, device)
    analysis = races.analyse_races(t_unit)
    assert analysis.reports == (), [str(r) for r in analysis.reports]
    # Loopy's own check warns exactly for the instructions silenced, on the box loop (the
    # template no longer silences anything) ...
    warned = loopy_write_races(t_unit)
    assert set(warned) == analysis.benign
    if name == "sequential":
        assert not warned
    else:
        # (the cpu matvec stores whole chunks and the last, partial one apart)
        assert analysis.benign in ({"store"}, {"store", "store_tail"})
        assert all(warned[store] in ({"itgt_box"}, {"iblock"}) for store in analysis.benign), \
            warned
    # ... and code generation after silencing them prints no race warning.
    silenced = races.silence_benign_races(t_unit, analysis)
    assert codegen_race_warnings(silenced) == {}
    assert set(silenced.default_entrypoint.silenced_warnings) - set(
        t_unit.default_entrypoint.silenced_warnings) == {
            f"write_race({insn})" for insn in analysis.benign}


def test_templates_silence_no_race_warning(device):
    for operator in OPERATORS:
        for layout in (TARGET_MAJOR, Grouped()) if operator in ("m2m", "l2l", "m2l") else (
                TARGET_MAJOR,):
            entry = math_kernel(operator, layout=layout,
                                **operator_sizes(operator, 56, rank=24)).default_entrypoint
            assert not any("race" in w for w in entry.silenced_warnings)
            assert entry.options.return_dict


# }}}


# {{{ racing recipes

@pytest.mark.parametrize("case", sorted(RACING))
def test_racing_recipe_is_reported_by_the_loop_name(device, case):
    operator, function, layout, loop, template_loop, variable = RACING[case]
    t_unit = transformed(operator, function, device, layout)
    reports = races.find_races(t_unit)
    [report] = [r for r in reports if _loop_named(r, loop)]
    assert (report.instruction, report.variable) == ("store", variable)
    assert report.template_loops[report.inames.index(loop)] == template_loop and report.summed
    kind = races.TEMPLATE_LOOPS[template_loop]
    assert f"from '{template_loop}', which the template " in report.message
    assert ("sums over" if kind == races.SUMMED else "keeps in order") in report.message
    assert "tagged l.0" in report.message
    # Independently of fmmloopy.tuning.races: loopy's own check finds a race across that loop ...
    assert loop in loopy_write_races(t_unit)["store"]
    # ... and it is not silenced, so code generation still warns about it.
    analysis = races.analyse_races(t_unit)
    assert "store" not in analysis.benign
    warned = codegen_race_warnings(races.silence_benign_races(t_unit, analysis))
    assert loop in warned["store"], warned


def test_reported_race_the_index_seems_to_depend_on_is_still_reported(device):
    """In the grouped matvec the stored box comes from the group (``pair_targets`` of the
    group's pairs), so the store's index does depend on the group loop: only the template's
    word that groups are ordered makes it a race. The hand-built lists below show why: the
    grouped layout puts one target box into two groups of a block (one per matrix)."""
    target_major = {
        "target_boxes": np.array([0, 1, 2]), "source_box_starts": np.array([0, 2, 3, 5]),
        "source_box_lists": np.array([1, 2, 0, 0, 1]), "matrix_indices": np.array([0, 1, 0, 1, 0]),
    }
    grouped = layout_arguments(Grouped(target_block=3), target_major)
    assert list(grouped["block_group_starts"]) == [0, 2]  # one block, two groups
    starts = grouped["group_pair_starts"]
    groups = [set(grouped["pair_targets"][starts[g]:starts[g + 1]]) for g in range(2)]
    assert groups[0] & groups[1] == {0, 2}  # both groups update target boxes 0 and 2
    t_unit = transformed("m2l", race_igroup, device, Grouped(target_block=3))
    entry = lp.preprocess_kernel(t_unit).default_entrypoint
    store = entry.id_to_insn["store"]
    # the stored box tgt_box is pair_targets[pair_used], pair_used from group_pair_starts[igroup]
    assert "igroup_local" in races._Dependence(entry).of(races._index_of(store.assignee))
    assert any(_loop_named(r, "igroup_local") for r in races.find_races(t_unit))


@pytest.mark.parametrize("function, loop", [(tag_igroup, "igroup"), (tag_isrc_box, "isrc_box")])
def test_template_loop_tagged_parallel_is_refused_by_loopy_and_reported(device, function, loop):
    operator, layout = ("m2l", Grouped()) if loop == "igroup" else ("p2p", TARGET_MAJOR)
    t_unit = transformed(operator, function, device, layout)
    with pytest.raises(LoopyError, match=f"data-dependent parameter .* parallel inames '{loop}'"):
        with lp.CacheMode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lp.generate_code_v2(t_unit)
    [report] = [r for r in races.find_races(t_unit) if _loop_named(r, loop)]
    assert f"loop '{loop}' (which the template " in report.message
    assert "tagged g.1: work-groups race" in report.message


def test_staging_copy_of_a_summed_loop_is_not_reported(device):
    """The GPU recipes put a copy of the summed source loop on ``l.0`` to stage sources into
    local memory; the copy only copies (nothing accumulates in it)."""
    t_unit = shipped("p2p", "gpu", device)
    entry = t_unit.default_entrypoint
    stage = [i for i in entry.all_inames() if i.startswith("isrc") and i.endswith("_stage")]
    assert stage and all(entry.iname_tags_of_type(i, lp.kernel.data.LocalInameTag) for i in stage)
    assert races.find_races(t_unit) == []


def test_template_loop_names():
    assert races.template_loop_of("iexp_src_inner") == "iexp_src"
    assert races.template_loop_of("iexp_src_0") == "iexp_src"
    assert races.template_loop_of("isrc_outer") == "isrc"
    assert races.template_loop_of("isrc_box_entry") == "isrc_box"
    assert races.template_loop_of("igroup") == "igroup"
    assert races.template_loop_of("itgt_inner") is None
    assert races.template_loop_of("iexp_tgt") is None
    assert races.template_loop_of("isrcx") is None

# }}}


# {{{ rule 1 on small kernels

def _toy(domains, instructions, tags, *, privatize_with=None):
    knl = lp.make_kernel(domains, instructions, [
        lp.GlobalArg("out", np.float64, "n"), lp.GlobalArg("a", np.float64, "n"),
        lp.GlobalArg("perm", np.int32, "n"), lp.GlobalArg("starts", np.int32, "m + 1"),
        lp.GlobalArg("counts", np.int32, "m"), lp.ValueArg("n, m", np.int32), ...],
        name="toy", lang_version=(2018, 2))
    return lp.tag_inames(knl, tags)


def test_index_followed_through_temporaries_proves_the_race_benign():
    # perm is a permutation (the kind of contract the templates give): distinct i, distinct j.
    knl = _toy("{[i]: 0 <= i < n}", """
        <> j = perm[i]
        <> k = j + 0
        out[k] = a[i] {id=write}
        """, {"i": "g.0"})
    assert loopy_write_races(knl) == {"write": {"i"}}  # loopy cannot see through j and k
    analysis = races.analyse_races(knl)
    assert analysis.reports == () and analysis.benign == {"write"}
    assert codegen_race_warnings(races.silence_benign_races(knl, analysis)) == {}


def test_a_writer_widened_into_a_parallel_loop_does_not_make_the_index_depend_on_it():
    # Every work-item of the l.0 loop w writes out[perm[i]]: a race, although the writer of j
    # runs inside w too (as recipes' lp.add_inames_to_insn makes it).
    knl = _toy("{[i, w]: 0 <= i < n and 0 <= w < 16}", """
        <> j = perm[i] {id=load}
        out[j] = a[i] {id=write}
        """, {"i": "g.0", "w": "l.0"})
    knl = lp.add_inames_to_insn(knl, "w", "id:load or id:write")
    assert loopy_write_races(knl) == {"write": {"i", "w"}}
    [report] = races.find_races(knl)
    assert (report.instruction, report.variable, report.inames) == ("write", "out", ("w",))
    assert "loop 'w' (not a loop the template sums over) is tagged l.0" in report.message
    assert not report.summed
    analysis = races.analyse_races(knl)
    assert "write" not in analysis.benign
    assert codegen_race_warnings(races.silence_benign_races(knl, analysis)) == {
        "write": {"i", "w"}}


def test_csr_lower_bound_ties_a_loop_to_its_row_but_an_upper_bound_does_not():
    # e runs over row b's disjoint range starts[b]..starts[b+1]: out[e] differs between rows.
    csr = _toy(["{[b]: 0 <= b < m}", "{[e]: lo <= e < hi}"], """
        for b
          <> lo = starts[b]
          <> hi = starts[b + 1]
          for e
            out[e] = a[e] {id=write}
          end
        end
        """, {"b": "g.0"})
    assert races.analyse_races(csr).benign == {"write"}
    assert races.find_races(csr) == []
    # t runs over 0..counts[b] for every row b: out[0] is written by every row (a real race).
    counted = _toy(["{[b]: 0 <= b < m}", "{[t]: 0 <= t < cnt}"], """
        for b
          <> cnt = counts[b]
          for t
            out[t] = a[t] {id=write}
          end
        end
        """, {"b": "g.0"})
    [report] = races.find_races(counted)
    assert report.inames == ("b",) and "work-groups write the same elements" in report.message
    assert loopy_write_races(counted) == {"write": {"b"}}

# }}}


# {{{ Oclgrind: the races are real, the benign ones are not races

#: Oclgrind cases: racing recipes, then benign ones (shipped recipes and a correct grouped one).
OCLGRIND_RACING = sorted(RACING)
OCLGRIND_BENIGN = {
    "m2l-generic": ("m2l", "generic", TARGET_MAJOR),
    "p2p-cpu": ("p2p", "cpu", TARGET_MAJOR),
    "m2l-gpu": ("m2l", "gpu", TARGET_MAJOR),
    "m2l-grouped_blocks": ("m2l", grouped_blocks, Grouped(target_block=2)),
}
SMALL_SIZES = {"m2l": {"n_target_coeffs": 8, "n_source_coeffs": 32}, "p2p": {},
               "p2l": {"n_surface": 8}}


def _small_inputs(operator: str, rng) -> dict:
    """Three target boxes of a tiny problem; box 0 lists two source boxes with two matrices."""
    i32 = np.int32
    lists = {"target_boxes": np.array([0, 1, 2], i32),
             "source_box_starts": np.array([0, 2, 3, 5], i32),
             "source_box_lists": np.array([1, 2, 0, 0, 1], i32)}
    if get_operator(operator).template == "matvec":
        sizes = SMALL_SIZES[operator]
        nt, ns = sizes["n_target_coeffs"], sizes["n_source_coeffs"]
        return lists | {
            "matrix_indices": np.array([0, 1, 0, 1, 0], i32),
            "matrices": rng.random((2, nt, ns)), "source_vectors": rng.random((3, ns)),
            "target_vectors": rng.random((3, nt)), "box_levels": np.zeros(3, i32),
            "level_scales": np.array([0.5])}
    starts, counts = np.array([0, 8, 16], i32), np.array([8, 8, 8], i32)
    sources = {"sources": rng.random((3, 24)), "box_source_starts": starts,
               "box_source_counts": counts, "strengths": rng.random(24)}
    if operator == "p2p":
        return lists | sources | {"targets": rng.random((3, 24)), "box_target_starts": starts,
                                  "box_target_counts": counts, "result": rng.random(24),
                                  "max_box_targets": 8}
    n = SMALL_SIZES[operator]["n_surface"]
    return lists | sources | {
        "target_surface": rng.random((3, n)), "box_centres": rng.random((3, 3)),
        "box_levels": np.zeros(3, i32), "level_half_widths": np.array([2.0]),
        "result": rng.random((3, n))}


def _oclgrind_worker(case: str) -> None:
    """Run ``case`` on Oclgrind (data-race plugin on: ``OCLGRIND_DATA_RACES`` in the environment)
    and print its reports and the largest error against the numpy reference."""
    import pyopencl as cl
    import pyopencl.array as cla

    from fmmloopy.base.devices import choose_device
    from fmmloopy.checking import memcheck
    from fmmloopy.maths.green import get_kernel

    warnings.simplefilter("ignore")
    device = choose_device()
    if case in RACING:
        operator, function, layout = RACING[case][:3]
        t_unit = transformed(operator, function, device, layout, **SMALL_SIZES[operator])
    else:
        operator, function, layout = OCLGRIND_BENIGN[case]
        t_unit = (shipped(operator, function, device, **SMALL_SIZES[operator])
                  if isinstance(function, str)
                  else transformed(operator, function, device, layout, **SMALL_SIZES[operator]))
    inputs = _small_inputs(operator, np.random.default_rng(0))
    expected = get_operator(operator).host_reference(
        get_kernel("laplace"), inputs, SMALL_SIZES[operator])
    output = next(iter(expected))
    arguments = layout_arguments(layout, inputs)
    arguments = {name: value for name, value in arguments.items()
                 if name in t_unit.default_entrypoint.arg_dict}
    queue = cl.CommandQueue(cl.Context([memcheck.oclgrind_device()]))
    captured: list[str] = []
    with memcheck.captured_stderr(captured):
        _, outputs = t_unit(queue, **{
            name: cla.to_device(queue, value) if isinstance(value, np.ndarray) else value
            for name, value in arguments.items()})
        queue.finish()
    reports, _rest = memcheck.parse_oclgrind("".join(captured))
    error = float(np.abs(outputs[output].get() - expected[output]).max())
    print(json.dumps({"reports": [report.summary() for report in reports], "error": error,
                      "output": output}))


def _run_on_oclgrind(case: str) -> dict:
    from fmmloopy.checking import memcheck

    memcheck.oclgrind_device()  # the test extra installs Oclgrind: its absence is a failure
    done = subprocess.run([sys.executable, __file__, case], capture_output=True, text=True,
                          timeout=600, env=os.environ | memcheck.WORKER_ENVIRONMENT)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", OCLGRIND_RACING)
def test_racing_recipe_races_on_oclgrind(case):
    found = _run_on_oclgrind(case)
    variable = RACING[case][5]
    races_at_store = [r for r in found["reports"]
                      if "data race" in r and f"{variable}[" in r]
    assert races_at_store, found
    assert found["error"] < 1e-12  # the numbers agree all the same: a numeric check misses it


@pytest.mark.parametrize("case", sorted(OCLGRIND_BENIGN))
def test_benign_races_are_no_races_on_oclgrind(case):
    found = _run_on_oclgrind(case)
    assert found["reports"] == [], found
    assert found["error"] < 1e-12

# }}}


if __name__ == "__main__":
    _oclgrind_worker(sys.argv[1])
