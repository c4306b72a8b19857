"""A pairwise kernel's constant factor applied once per target instead of once per pair.

The kernels' expressions carry their constants (``1 / (4 pi)`` of Laplace, ``3 / (4 pi)`` of
its second derivatives) inside every term of the sum over sources: one multiplication per pair
that the sum does not need. :func:`factor_constants_out_of_sums` divides each accumulator's
terms by the constant of its first term, where that constant folds into the numbers the terms
already hold, and multiplies the accumulated sum by it once, where the template stores it.
The result moves by a rounding or two (the constants divided, one product moved); the sum over
sources is the same.

Recipes import it from :mod:`fmmloopy.tuning.tools`.
"""

from __future__ import annotations

import numbers

import loopy as lp
import pymbolic.primitives as prim
from pymbolic.mapper.substitutor import substitute

from fmmloopy.maths.templates import pairwise_role

__all__ = ["factor_constants_out_of_sums"]


def _is_real_number(expr) -> bool:
    return isinstance(expr, numbers.Real) and not isinstance(expr, bool)


def _is_unit(expr) -> bool:
    return _is_real_number(expr) and abs(expr) == 1


def leading_constant(expr) -> float | None:
    """The first real constant other than +-1 met multiplying ``expr`` (through products, the
    first term of sums, the values of conditionals), or None."""
    if _is_real_number(expr):
        return None if _is_unit(expr) or expr == 0 else float(expr)
    if isinstance(expr, prim.Product):
        numbers_first = sorted(expr.children, key=lambda child: not _is_real_number(child))
        for child in numbers_first:
            found = leading_constant(child)
            if found is not None:
                return found
        return None
    if isinstance(expr, prim.Sum):
        return leading_constant(expr.children[0])
    if isinstance(expr, prim.If):
        return leading_constant(expr.then)
    return None


def divided(expr, constant: float):
    """``expr / constant`` with the division folded into a number ``expr`` already holds (a
    factor of each product, every term of a sum, both values of a conditional), or None where
    no number takes it (that would add an operation)."""
    if _is_real_number(expr) or isinstance(expr, numbers.Complex):
        return expr if expr == 0 else expr / constant
    if isinstance(expr, prim.Product):
        children = list(expr.children)
        # Numbers other than +-1 first, then what holds numbers, then +-1 (kept as signs).
        order = sorted(range(len(children)), key=lambda k: (
            0 if _is_real_number(children[k]) and not _is_unit(children[k])
            else 2 if _is_unit(children[k]) else 1))
        for k in order:
            new = divided(children[k], constant)
            if new is None:
                continue
            rest = children[:k] + ([] if new == 1 else [new]) + children[k + 1:]
            return rest[0] if len(rest) == 1 else prim.Product(tuple(rest))
        return None
    if isinstance(expr, prim.Sum):
        terms = [divided(child, constant) for child in expr.children]
        return None if any(term is None for term in terms) else prim.Sum(tuple(terms))
    if isinstance(expr, prim.If):
        then, otherwise = divided(expr.then, constant), divided(expr.else_, constant)
        if then is None or otherwise is None:
            return None
        return prim.If(expr.condition, then, otherwise)
    return None


def _flattened(expression) -> list:
    """The terms of nested sums, in their order."""
    if not isinstance(expression, prim.Sum):
        return [expression]
    return [term for child in expression.children for term in _flattened(child)]


def _factored_update(expression, accumulator: str):
    """(constant, the update's expression with its terms divided by it), or None."""
    if not isinstance(expression, prim.Sum):
        return None
    own = prim.Variable(accumulator)
    flat = _flattened(expression)
    terms = [term for term in flat if term != own]
    if len(terms) != len(flat) - 1 or not terms:
        return None
    constant = leading_constant(terms[0])
    if constant is None:
        return None
    new_terms = [divided(term, constant) for term in terms]
    if any(term is None for term in new_terms):
        return None
    return constant, prim.Sum((own, *new_terms))


def factor_constants_out_of_sums(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Each accumulator of the pairwise template whose update's terms all hold a number takes
    its first term's constant out of the sum over sources: the terms divided by it (folded
    into their numbers, :func:`divided`), the store multiplying the sum by it once. Accumulators
    updated by more than one instruction or stored other than by the template's ``store``
    instructions are left as they are; so is a kernel of another template (returned
    unchanged)."""
    knl = lp.expand_subst(knl)
    entry = knl.default_entrypoint
    updates: dict[str, list] = {}
    readers: dict[str, list] = {}
    for insn in entry.instructions:
        role = pairwise_role(insn.id)
        for name in insn.assignee_var_names():
            if pairwise_role(name) == "acc" and role == "update":
                updates.setdefault(name, []).append(insn)
        for name in insn.read_dependency_names():
            if pairwise_role(name) == "acc":
                readers.setdefault(name, []).append(insn)
    factors, new_updates = {}, {}
    for name, insns in updates.items():
        if len(insns) != 1 or any(pairwise_role(reader.id) not in ("update", "store")
                                  or (pairwise_role(reader.id) == "update"
                                      and reader is not insns[0])
                                  for reader in readers.get(name, [])):
            continue
        factored = _factored_update(insns[0].expression, name)
        if factored is not None:
            factors[name], new_updates[insns[0].id] = factored
    if not factors:
        return knl
    scaled = {prim.Variable(name): prim.Product((constant, prim.Variable(name)))
              for name, constant in factors.items()}
    instructions = []
    for insn in entry.instructions:
        if insn.id in new_updates:
            insn = insn.copy(expression=new_updates[insn.id])
        elif pairwise_role(insn.id) == "store" and insn.read_dependency_names() & set(factors):
            insn = insn.copy(expression=substitute(insn.expression, scaled))
        instructions.append(insn)
    return knl.with_kernel(entry.copy(instructions=instructions))
