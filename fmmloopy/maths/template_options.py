"""What every math-level template kernel gets: loopy's language version, the options and
assumptions set when a template is finished (:func:`finish_template`), and the assumptions'
parameters kept in name order (:func:`assume`, :func:`parameters_in_name_order`).

:mod:`fmmloopy.maths.templates` re-exports the public names.
"""

from __future__ import annotations

import islpy as isl
import loopy as lp

#: The loopy language version the templates are written in.
LANG_VERSION = (2018, 2)


def finish_template(knl: lp.TranslationUnit, assumptions: str | None = None) -> lp.TranslationUnit:
    """Options shared by every template: outputs returned as a dict; ``assumptions`` on the
    parameters (:func:`assume`).

    No write-race warning is silenced here: the final store's races through the box loop are
    benign (each target box is listed once), but a recipe that puts a summed-over loop on a
    parallel axis races at the same store. :mod:`fmmloopy.tuning.races` tells the two apart on the
    transformed kernel and silences ``write_race(<id>)`` only where it proves the race benign;
    the loops the templates sum over or keep in order are declared there
    (:data:`fmmloopy.tuning.races.TEMPLATE_LOOPS`).
    """
    knl = parameters_in_name_order(knl)
    if assumptions:
        knl = assume(knl, assumptions)
    return lp.set_options(knl, return_dict=True)


def assume(knl: lp.TranslationUnit, assumptions: str | isl.BasicSet) -> lp.TranslationUnit:
    """``lp.assume(knl, assumptions)`` with the parameters kept in name order
    (:func:`parameters_in_name_order`; loopy writes them in the order of a set). A set (not
    text) may name parameters the loop domains do not (a size used in a guard alone)."""
    return parameters_in_name_order(lp.assume(knl, assumptions))


def parameters_in_name_order(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """The kernel with the parameters of its assumptions in name order.

    ``lp.make_kernel`` and ``lp.assume`` take them from a set of names, so their order, and with
    it the kernel's hash, would follow Python's per-process string hashing: loopy's persistent
    caches (code generation, preprocessing, scheduling), keyed by that hash, would then miss in
    every new process."""
    kernel = knl.default_entrypoint
    assumptions = kernel.assumptions
    names = sorted(assumptions.get_var_dict(isl.dim_type.param))
    model = isl.Space.create_from_names(assumptions.get_ctx(), set=[], params=names)
    return knl.with_kernel(kernel.copy(assumptions=assumptions.align_params(model)))
