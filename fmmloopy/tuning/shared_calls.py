"""Calls shared by a pairwise kernel's entries (``exp``, ``sin``, ``cos``), computed once per
pair (:func:`hoist_shared_calls`).

Recipes import it from :mod:`fmmloopy.tuning.tools`.
"""

from __future__ import annotations

from collections import Counter

import loopy as lp
import pymbolic.primitives as prim
from loopy.symbolic import IdentityMapper
from pymbolic.mapper import CombineMapper

#: Functions :func:`hoist_shared_calls` computes once per pair: finite for every finite
#: argument, so they may be computed outside the entries' ``If(r2 > 0, ...)`` guards.
HOISTED_FUNCTIONS = ("exp", "sin", "cos")


class _CallCollector(CombineMapper):
    """The calls of :data:`HOISTED_FUNCTIONS` in an expression, with their multiplicity, whose
    arguments are finite at ``d = 0`` too (:func:`_may_be_infinite`)."""

    def combine(self, values):
        total: Counter = Counter()
        for value in values:
            total.update(value)
        return total

    def map_constant(self, expr):
        return Counter()

    map_variable = map_constant

    def map_call(self, expr):
        inner = self.combine(self.rec(parameter) for parameter in expr.parameters)
        name = getattr(expr.function, "name", None)
        if name in HOISTED_FUNCTIONS and not any(_may_be_infinite(p) for p in expr.parameters):
            inner[expr] += 1
        return inner

    def map_comparison(self, expr):
        return self.combine((self.rec(expr.left), self.rec(expr.right)))


def _may_be_infinite(expr) -> bool:
    """Whether ``expr`` may be infinite or NaN at ``d = 0``: it holds a quotient, a negative
    or symbolic power or a ``log`` (selections are not analysed: they count as such too)."""
    if isinstance(expr, prim.Quotient | prim.If):
        return True
    if isinstance(expr, prim.Power):
        whole = isinstance(expr.exponent, int | float) and expr.exponent >= 0
        return not whole or _may_be_infinite(expr.base)
    if isinstance(expr, prim.Sum | prim.Product):
        return any(_may_be_infinite(child) for child in expr.children)
    if isinstance(expr, prim.Call):
        return (getattr(expr.function, "name", None) == "log"
                or any(_may_be_infinite(p) for p in expr.parameters))
    return False


class _ReplaceCalls(IdentityMapper):
    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def map_call(self, expr, *args, **kwargs):
        if expr in self.names:
            return prim.Variable(self.names[expr])
        return super().map_call(expr, *args, **kwargs)


def hoist_shared_calls(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Compute each call to ``exp``, ``sin`` or ``cos`` that the pairwise template's entries
    (its ``green*`` rules) make more than once, once per pair, into a temporary
    ``shared_<k>`` beside the offset: the OpenCL compiler does not merge such calls across
    the entries (Helmholtz's potential and gradient call ``exp(1j k r)`` seven times per
    pair). Only calls whose arguments are finite at ``d = 0`` are moved out of the entries'
    guards. Kernels without such calls are returned unchanged. Apply it before the target loop
    is split."""
    entry = knl.default_entrypoint
    updates = [insn for insn in entry.instructions if insn.id.startswith("update")]
    rules = {name: rule for name, rule in entry.substitutions.items()
             if name.startswith("green")}
    counts: Counter = Counter()
    for rule in rules.values():
        counts.update(_CallCollector()(rule.expression))
    shared = sorted((call for call, count in counts.items() if count > 1), key=str)
    if not updates or not shared:
        return knl
    names = {call: f"shared_{k}" for k, call in enumerate(shared)}
    replace = _ReplaceCalls(names)
    substitutions = dict(entry.substitutions)
    for name, rule in rules.items():
        substitutions[name] = rule.copy(expression=replace(rule.expression))
    template = updates[0]
    # What the update waits for (offsets, loads its guard reads), but not its accumulator.
    waits_for = frozenset(d for d in template.depends_on if not d.startswith("init"))
    computed = [lp.Assignment(prim.Variable(name), call, id=name,
                              within_inames=template.within_inames,
                              predicates=template.predicates, depends_on=waits_for)
                for call, name in names.items()]
    hoisted = frozenset(names.values())
    instructions = [insn.copy(depends_on=insn.depends_on | hoisted)
                    if insn in updates else insn for insn in entry.instructions]
    temporaries = dict(entry.temporary_variables)
    temporaries |= {name: lp.TemporaryVariable(name, None, shape=()) for name in names.values()}
    return knl.with_kernel(entry.copy(instructions=instructions + computed,
                                      substitutions=substitutions,
                                      temporary_variables=temporaries))
