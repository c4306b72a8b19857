"""Instruction matches for loopy transformations, of any number of instructions."""

from __future__ import annotations

from collections.abc import Iterable

import loopy.match as lp_match


def any_of_ids(ids: Iterable[str]) -> lp_match.MatchExpressionBase:
    """A match of the instructions with these ids: one flat ``Or``. (The string
    ``"id:a or id:b or ..."`` parses into nested pairs, one level per id, and a kernel with
    hundreds of outputs (many strength vectors with gradients and Hessians) exceeded Python's
    recursion limit in loopy's matching.)"""
    return lp_match.Or(tuple(lp_match.Id(name) for name in sorted(ids)))
