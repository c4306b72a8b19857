"""Loops padded to a constant length behind guards, and guards dropped: what lets a loop whose
bounds come from data become a local axis, with barriers inside it reached by every work-item.

Recipes import them from :mod:`fmmloopy.tuning.tools`.
"""

from __future__ import annotations

from functools import cache

import islpy as isl
import loopy as lp
from loopy.isl_helpers import make_slab
from loopy.match import parse_match
from loopy.symbolic import constraint_to_cond_expr


def _only(domain, inames) -> isl.BasicSet:
    """``domain`` with its loops other than ``inames`` projected out."""
    for name in domain.get_var_names(isl.dim_type.set):
        if name not in inames:
            domain = domain.project_out(isl.dim_type.set,
                                        domain.get_var_dict()[name][1], 1)
    return domain


def _involves(constraint, name: str) -> bool:
    dim_type, index = constraint.get_space().get_var_dict()[name]
    return not constraint.get_coefficient_val(dim_type, index).is_zero()


@lp.for_each_kernel
def pad_loop(kernel: lp.LoopKernel, iname: str, length: int | None = None,
             unguarded: str | None = None) -> lp.LoopKernel:
    """Let ``iname`` run from 0 to ``length`` (default: its largest length), in a domain of its
    own, behind guards.

    Bounds that tie ``iname`` to other loops or to data (``itgt_inner + 16 * itgt_outer <
    max_box_targets`` after a split, ``isrc_stage + 16 * isrc_outer < nsrc``) become predicates
    of the instructions inside ``iname``, except those matching ``unguarded`` (a loopy match
    such as ``"tag:bounds"``, for instructions safe to run anywhere). What for: a local-axis
    iname then has a constant extent even where its bounds came from data (loopy refuses those),
    and the loops around it run the same trip count on every work-item, so barriers inside
    them are reached by all of the work-group.
    """
    length = length or kernel.get_constant_iname_length(iname)
    domains = list(kernel.domains)
    index = kernel.get_home_domain_index(iname)
    home = domains[index]
    dim_type, position = home.get_var_dict()[iname]
    rest = home.project_out(dim_type, position, 1)
    padded = rest.insert_dims(dim_type, position, 1).set_dim_name(dim_type, position, iname)
    padded = padded & make_slab(padded.get_space(), iname, 0, length)

    @cache
    def guards(inames: frozenset[str]) -> frozenset:
        """The bounds of ``iname`` that the padding drops, seen from an instruction in
        ``inames`` (loops it is not in are projected out)."""
        exact, loose = _only(home, inames), _only(padded, inames)
        return frozenset(constraint_to_cond_expr(c) for c in exact.get_constraints()
                         if _involves(c, iname) and not loose.is_subset(loose.add_constraint(c)))

    box = isl.BasicSet(f"{{ [{iname}]: 0 <= {iname} < {length} }}")
    domains[index:index + 1] = [rest] if rest.dim(isl.dim_type.set) else []
    exempt = parse_match(unguarded) if unguarded else (lambda kernel, insn: False)
    instructions = [
        insn.copy(predicates=insn.predicates | guards(insn.within_inames))
        if iname in insn.within_inames and not exempt(kernel, insn) else insn
        for insn in kernel.instructions]
    return kernel.copy(domains=[*domains, box], instructions=instructions)


@lp.for_each_kernel
def unguard(kernel: lp.LoopKernel, insn_match: str) -> lp.LoopKernel:
    """Drop every predicate of the instructions matching ``insn_match`` (which must be safe to
    run wherever their loops are, e.g. the loads of loop bounds: ``"tag:bounds"``)."""
    match = parse_match(insn_match)
    return kernel.copy(instructions=[insn.copy(predicates=frozenset())
                                     if match(kernel, insn) else insn
                                     for insn in kernel.instructions])
