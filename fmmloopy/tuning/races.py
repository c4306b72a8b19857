"""Write races in a recipe's kernel: which are benign, which are the recipe's mistake.

Loopy warns (``write_race(<id>)``) when an instruction runs inside a parallel loop (``g.*``,
``l.*``, ``vec``, ``ilp``) that the index it writes does not mention. The templates
(:mod:`fmmloopy.maths.templates`) write through indirections -- ``result[itgt_start + itgt]`` with
``itgt_start = box_target_starts[tgt_box]`` and ``tgt_box = target_boxes[itgt_box]`` -- so loopy
warns about every recipe that parallelises the box loop, although each target box is listed once.
Silencing that warning wholesale would hide the recipe mistake that matters most: a summed-over
loop put on a parallel axis (partial sums per work-item, all stored to the same element). This
module sorts the two apart, on the recipe's transformed kernel, before code generation:

1. *Loopy's races, through the indirections.* For every instruction and assignee, the racing
   loops are found as :func:`loopy.check.check_for_write_races` finds them. A racing loop is
   *proven benign* if the index written depends on it after all: the index's temporaries are
   followed to the right-hand sides of the instructions that write them (never to those
   instructions' loops, which recipes widen with ``lp.add_inames_to_insn``), and a loop whose lower
   bound comes from data (``isrc_box_start <= isrc_box``, ``igroup_start <= igroup``) to what that
   bound depends on. The proof relies on the templates' contract that these index maps are
   injective: distinct target boxes in ``target_boxes``, disjoint particle ranges, distinct
   targets within a group of the grouped matvec, disjoint CSR ranges and blocks.
2. *Loops the template sums over or keeps in order* (:data:`TEMPLATE_LOOPS`) are never safe on a
   hardware-parallel axis (``g.*`` or ``l.*``), whatever rule 1 says: neither they nor the loops
   a recipe derives from them by loopy's naming (``iexp_src_inner``, ``isrc_outer``, a
   duplicate ``iexp_src_0``) may carry such a tag while an accumulation (an instruction that reads
   what it writes) runs inside them. A copy of such a loop that only stages data (the GPU
   recipes' ``isrc_inner_stage``) accumulates nothing and is not reported.

:func:`analyse_races` returns both: :class:`RaceReport` objects for every race not proven benign,
and the instructions whose races all are. :func:`silence_benign_races` silences loopy's
``write_race(<id>)`` for exactly those instructions, so that its warning stays alive for every
other instruction and shipped kernels generate code without benign warnings.

The template loops are declared here, by name, in :data:`TEMPLATE_LOOPS`: the templates name their
loops after what they index, and a name means the same in every template that uses it.

Limits. Rule 2 knows a loop by its name: a recipe that splits ``iexp_src`` into loops of
unrelated names escapes it (rule 1, and loopy's warning, still see the store's race). Rule 1
trusts the templates' contract for every index map it follows, including those a recipe adds.
A parallel reduction a recipe writes correctly (partial sums in local memory, then a tree) on a
summed loop is still reported: rule 2 has no exception for it. Loopy errors while preprocessing
the kernel propagate, as code generation would raise them.

Why one module of some 340 lines: :func:`analyse_kernel` merges both rules' findings per
(instruction, loop) into one report that says which rule found the race, and both rules share
the helpers that name loops and their tags; split, the merge would reach across modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import islpy as isl
import loopy as lp
from loopy.kernel.data import ConcurrentTag, GroupInameTag, LocalInameTagBase
from loopy.symbolic import get_dependencies
from pymbolic.primitives import Subscript

from fmmloopy.tuning.loopy_internals import is_racing_iname_tag

#: The template accumulates over the loop into one private sum per output.
SUMMED = "summed"
#: The loop's iterations update the same outputs one after another.
ORDERED = "ordered"

#: Loops of the templates whose iterations must not run in parallel, by name, and their kind.
#: A name means the same in every template that uses it.
TEMPLATE_LOOPS: dict[str, str] = {
    "isrc_box": SUMMED,  # the source boxes listed for a target box (both templates)
    "isrc": SUMMED,  # the source points of a source box (pairwise)
    "iexp_src": SUMMED,  # the source coefficients of a matvec row (both matvec layouts)
    "igroup": ORDERED,  # the groups of a block (grouped matvec): they share target boxes
}


@dataclass(frozen=True)
class RaceReport:
    """A write race not proven benign: instruction ``instruction`` writes ``variable`` from
    parallel iterations of ``inames`` that may write the same element.

    ``template_loops`` gives, per racing loop, the template loop it comes from when that one is
    summed over or ordered (:data:`TEMPLATE_LOOPS`), else None. ``message`` is one line for a
    person: instruction, variable, and per loop its tag and whether the template sums over it.
    """

    instruction: str
    variable: str
    inames: tuple[str, ...]
    template_loops: tuple[str | None, ...]
    message: str

    @property
    def summed(self) -> bool:
        """Whether a racing loop is (derived from) a loop the template sums over or orders."""
        return any(loop is not None for loop in self.template_loops)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RaceAnalysis:
    """What :func:`analyse_races` found in one kernel."""

    kernel: str
    #: Races not proven benign (rule 1) and template loops on parallel axes (rule 2).
    reports: tuple[RaceReport, ...]
    #: Instructions loopy reports a write race for, every one of which is proven benign and
    #: none of which is reported: their ``write_race(<id>)`` may be silenced.
    benign: frozenset[str]

    @property
    def ok(self) -> bool:
        return not self.reports


def template_loop_of(iname: str) -> str | None:
    """The loop of :data:`TEMPLATE_LOOPS` that ``iname`` is or derives from by name (``<loop>``
    or ``<loop>_<suffix>``, the longest such loop), or None."""
    matches = [loop for loop in TEMPLATE_LOOPS if iname == loop or iname.startswith(loop + "_")]
    return max(matches, key=len) if matches else None


def _is_hardware_parallel(tag) -> bool:
    return isinstance(tag, (GroupInameTag, LocalInameTagBase))


def _tag_text(kernel: lp.LoopKernel, iname: str) -> str:
    tags = kernel.iname_tags_of_type(iname, ConcurrentTag)
    return ",".join(str(tag) for tag in sorted(tags, key=str)) or "parallel"


def _who(kernel: lp.LoopKernel, iname: str) -> str:
    """Who races along ``iname``: work-groups, work-items, vector or ILP lanes."""
    tags = kernel.iname_tags_of_type(iname, ConcurrentTag)
    if any(isinstance(tag, GroupInameTag) for tag in tags):
        return "work-groups"
    if any(isinstance(tag, LocalInameTagBase) for tag in tags):
        return "work-items"
    return "parallel lanes"


def _races_on(kernel: lp.LoopKernel, variable: str, iname: str) -> bool:
    """Whether parallel iterations of ``iname`` share ``variable``: loopy's own rule
    (:func:`loopy.check.check_for_write_races`)."""
    if variable in kernel.arg_dict:
        return bool(kernel.iname_tags_of_type(iname, ConcurrentTag))
    temporary = kernel.temporary_variables[variable]
    return any(is_racing_iname_tag(temporary, tag) for tag in kernel.iname_tags(iname))


def _index_of(assignee) -> tuple:
    """The index expressions of an assignee (none for a scalar)."""
    if isinstance(assignee, Subscript):
        index = assignee.index
        return index if isinstance(index, tuple) else (index,)
    return ()


class _Dependence:
    """The loops an expression of ``kernel`` depends on, through temporaries and data-dependent
    loop bounds (rule 1 of the module docstring)."""

    def __init__(self, kernel: lp.LoopKernel):
        self.kernel = kernel
        self.inames = kernel.all_inames()
        self.temporaries = set(kernel.temporary_variables)
        self.writers: dict[str, list] = {}
        for insn in kernel.instructions:
            for name, assignee in zip(insn.assignee_var_names(), insn.assignees, strict=True):
                if name in self.temporaries:
                    self.writers.setdefault(name, []).append((insn, assignee))
        self._values: dict[str, frozenset[str]] = {}
        self._bounds: dict[str, frozenset[str]] = {}

    def of_names(self, names: Iterable[str]) -> frozenset[str]:
        result: set[str] = set()
        for name in names:
            if name in self.inames:
                result.add(name)
            elif name in self.temporaries:
                result |= self.value(name)
        return self.closed(result)

    def of(self, expressions: Iterable) -> frozenset[str]:
        names: set[str] = set()
        for expression in expressions:
            names |= get_dependencies(expression)
        return self.of_names(names)

    def value(self, temporary: str) -> frozenset[str]:
        """Loops the value of ``temporary`` depends on, where it is read: those of its writers'
        right-hand sides, less the loops of the writers' own index (the reader's index fixes
        them, and is followed where it is read)."""
        if temporary in self._values:
            return self._values[temporary]
        self._values[temporary] = frozenset()  # a cycle (acc = acc + ...) adds nothing
        result: set[str] = set()
        for insn, assignee in self.writers.get(temporary, ()):
            expression = getattr(insn, "expression", None)
            read = (get_dependencies(expression) if expression is not None
                    else insn.read_dependency_names())
            bound = set().union(*(get_dependencies(i) for i in _index_of(assignee))) & self.inames
            result |= self.of_names(read) - bound
        self._values[temporary] = frozenset(result)
        return self._values[temporary]

    def lower_bound(self, iname: str) -> frozenset[str]:
        """Loops that the data-dependent lower bound of ``iname`` depends on (a CSR range
        ``start[k] <= iname < start[k + 1]`` determines ``k``)."""
        if iname in self._bounds:
            return self._bounds[iname]
        self._bounds[iname] = frozenset()
        domain = self.kernel.domains[self.kernel.get_home_domain_index(iname)]
        params = set(domain.get_var_names(isl.dim_type.param))
        names: set[str] = set()
        for constraint in domain.get_constraints():
            coefficients = constraint.get_coefficients_by_name()
            coefficient = coefficients.get(iname)
            if coefficient is None or coefficient.is_zero():
                continue
            if constraint.is_equality() or coefficient.is_pos():
                names |= {name for name, value in coefficients.items()
                          if name in params and not value.is_zero()}
        self._bounds[iname] = self.of_names(names)
        return self._bounds[iname]

    def closed(self, inames: set[str]) -> frozenset[str]:
        result, todo = set(inames), list(inames)
        while todo:
            for new in self.lower_bound(todo.pop()) - result:
                result.add(new)
                todo.append(new)
        return frozenset(result)


def _accumulates(insn) -> bool:
    """Whether ``insn`` reads a variable it writes (``acc = acc + ...``, ``out = out + ...``)."""
    expression = getattr(insn, "expression", None)
    if expression is None:
        return False
    return bool(set(insn.assignee_var_names()) & get_dependencies(expression))


def _template_loop_races(kernel: lp.LoopKernel) -> dict[tuple[str, str], set[str]]:
    """Rule 2: (instruction, variable) -> template-derived hardware-parallel loops it races on."""
    found: dict[tuple[str, str], set[str]] = {}
    for iname in sorted(kernel.all_inames()):
        if template_loop_of(iname) is None or not any(
                _is_hardware_parallel(tag) for tag in kernel.iname_tags(iname)):
            continue
        inside = [insn for insn in kernel.instructions if iname in insn.within_inames]
        if not any(_accumulates(insn) for insn in inside):
            continue  # e.g. a copy of the loop that stages data into local memory
        writes = [(insn.id, name) for insn in inside for name in insn.assignee_var_names()
                  if _races_on(kernel, name, iname)]
        if not writes:  # no shared write inside: name the accumulation itself
            writes = [(insn.id, name) for insn in inside if _accumulates(insn)
                      for name in insn.assignee_var_names()]
        for key in writes:
            found.setdefault(key, set()).add(iname)
    return found


def _clause(kernel: lp.LoopKernel, iname: str, variable: str, loop: str | None) -> str:
    """One racing loop, for a person: its tag, and whether the template sums over it."""
    tag, who = _tag_text(kernel, iname), _who(kernel, iname)
    if loop is None:
        derived = template_loop_of(iname)
        what = ("not a loop the template sums over" if derived is None else
                f"a copy of '{derived}' that accumulates nothing")
        return (f"loop '{iname}' ({what}) is tagged {tag} and the index of '{variable}' does "
                f"not depend on it: {who} write the same elements")
    kind = TEMPLATE_LOOPS[loop]
    origin = f"from '{loop}', which" if loop != iname else "which"
    if kind == SUMMED:
        return (f"loop '{iname}' ({origin} the template sums over) is tagged {tag}: "
                f"{who} race on the accumulation")
    return (f"loop '{iname}' ({origin} the template keeps in order) is tagged {tag}: "
            f"{who} race on the updates it orders")


def analyse_kernel(kernel: lp.LoopKernel) -> RaceAnalysis:
    """:func:`analyse_races` for one preprocessed loopy kernel (temporaries' address spaces
    known, ``vec``/``ilp`` temporaries privatised)."""
    dependence = _Dependence(kernel)
    loopy_races: dict[str, bool] = {}  # instruction -> all proven benign
    unproven: dict[tuple[str, str], set[str]] = {}
    for insn in kernel.instructions:
        for name, assignee in zip(insn.assignee_var_names(), insn.assignees, strict=True):
            if name not in kernel.arg_dict and name not in kernel.temporary_variables:
                continue
            direct = set().union(*(get_dependencies(i) for i in _index_of(assignee)))
            racing = {iname for iname in insn.within_inames
                      if _races_on(kernel, name, iname)} - direct
            if not racing:
                continue
            left = racing - dependence.of(_index_of(assignee))
            loopy_races[insn.id] = loopy_races.get(insn.id, True) and not left
            if left:
                unproven.setdefault((insn.id, name), set()).update(left)
    template = _template_loop_races(kernel)
    reports = []
    for key in sorted(set(unproven) | set(template)):
        insn_id, variable = key
        inames = sorted(unproven.get(key, set()) | template.get(key, set()),
                        key=lambda i: (template_loop_of(i) is None, i))
        loops = tuple(template_loop_of(i) if i in template.get(key, ()) else None
                      for i in inames)
        clauses = "; ".join(_clause(kernel, iname, variable, loop)
                            for iname, loop in zip(inames, loops, strict=True))
        reports.append(RaceReport(
            insn_id, variable, tuple(inames), loops,
            f"kernel '{kernel.name}', instruction '{insn_id}' (writes '{variable}'): {clauses}"))
    reported = {report.instruction for report in reports}
    benign = frozenset(insn_id for insn_id, proven in loopy_races.items()
                       if proven and insn_id not in reported)
    return RaceAnalysis(kernel.name, tuple(reports), benign)


def analyse_races(t_unit: lp.TranslationUnit) -> RaceAnalysis:
    """Analyse the entry kernel of a recipe's transformed ``t_unit`` (see the module docstring).

    The kernel is preprocessed by loopy first (as code generation would; loopy caches it), so
    that temporaries' address spaces and ``vec``/``ilp`` privatisation are those loopy checks.
    """
    return preprocess_and_analyse(t_unit)[1]


def preprocess_and_analyse(t_unit: lp.TranslationUnit
                           ) -> tuple[lp.TranslationUnit, RaceAnalysis]:
    """``t_unit`` preprocessed by loopy, and :func:`analyse_races` of it. Code generation may
    start from the preprocessed unit (with :func:`silence_benign_races` applied to it: loopy
    checks write races when it linearizes, after preprocessing), which spares preprocessing the
    kernel a second time."""
    preprocessed = lp.preprocess_kernel(t_unit)
    return preprocessed, analyse_kernel(preprocessed.default_entrypoint)


def find_races(t_unit: lp.TranslationUnit) -> list[RaceReport]:
    """The races of ``t_unit`` not proven benign (empty for a correct recipe)."""
    return list(analyse_races(t_unit).reports)


def silence_benign_races(t_unit: lp.TranslationUnit, analysis: RaceAnalysis | None = None,
                         ) -> lp.TranslationUnit:
    """``t_unit`` with loopy's ``write_race(<id>)`` silenced for the instructions whose races
    are all proven benign (``analysis`` from :func:`analyse_races`, computed if not given), and
    for no other; ``t_unit`` itself if there is none."""
    analysis = analysis or analyse_races(t_unit)
    entry = t_unit.default_entrypoint
    silenced = {f"write_race({insn_id})" for insn_id in analysis.benign}
    if silenced <= set(entry.silenced_warnings):
        return t_unit
    return t_unit.with_kernel(entry.copy(
        silenced_warnings=frozenset(entry.silenced_warnings) | silenced))
