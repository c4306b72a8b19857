"""The fields of a Green's function, component by component: what a pairwise sum produces at
its targets and takes at its sources, and the matrix of derivatives that maps the one to the
other.

:class:`~fmmloopy.maths.green.GreenKernel` is made of these; :mod:`fmmloopy.maths.green`
re-exports :data:`TARGET_FIELDS` and :data:`SOURCE_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Callable

from fmmloopy.maths.green_expression import count_flops, derivative_entries, is_zero_entry

#: What a pairwise sum can produce at its targets: per field, the derivatives of ``G`` (offset
#: components differentiated by) of each of its components. The Hessian (``xx, xy, xz, yy,
#: yz, zz``) is what the Stokeslet's velocity gradient takes from Laplace sums
#: (:mod:`fmmloopy.maths.harmonic`).
TARGET_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "potential": ((),), "gradient": ((0,), (1,), (2,)),
    "hessian": ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))}
#: What its sources can carry: a charge multiplies ``G``; a dipole ``m`` gives
#: ``m . grad_source G = -m . grad_d G`` (derivatives in the source point, whence the sign).
SOURCE_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "charge": ((),), "dipole": ((0,), (1,), (2,))}

#: One component of a field: ``(component of G, derivative axes)``; a companion row's is
#: ``(its name, ())``.
Component = tuple[int | str, tuple[int, ...]]


def validate_fields(fields: tuple[str, ...], known, what: str) -> tuple[str, ...]:
    """``fields`` in the canonical order of ``known`` (names), or a ValueError."""
    fields = tuple(fields)
    if not fields or len(set(fields)) != len(fields) or not set(fields) <= set(known):
        raise ValueError(f"{what} must be distinct names among {list(known)}, not {fields!r}")
    return tuple(name for name in known if name in fields)


def as_entries(name: str, expression):
    """A tensor kernel's matrix as a tuple of equally long tuples (a scalar expression
    unchanged); ValueError for an empty or ragged one."""
    if not isinstance(expression, tuple | list):
        return expression
    rows = tuple(tuple(row) if isinstance(row, tuple | list) else None for row in expression)
    if not rows or any(row is None or len(row) != len(rows[0]) or not row for row in rows):
        raise ValueError(f"kernel {name!r}: a tensor kernel's expression must be a non-empty "
                         "matrix (rows of equal length) of expressions")
    return rows


def output_components(outputs: tuple[str, ...], rows: int,
                      companions: set[str]) -> list[Component]:
    """Each output component of one strength vector, for ``G`` of ``rows`` target components
    and the ``companions`` rows' names."""
    components: list[Component] = []
    for name in outputs:
        if name in companions:
            components.append((name, ()))
        else:
            components += [(a, axes) for a in range(rows) for axes in TARGET_FIELDS[name]]
    return components


def input_components(inputs: tuple[str, ...], columns: int) -> list[Component]:
    """Each input component of one strength vector, for ``G`` of ``columns`` source
    components."""
    return [(b, axes) for name in inputs for b in range(columns) for axes in SOURCE_FIELDS[name]]


def field_entries(entry: Callable[[int | str, int], object], outputs: list[Component],
                  inputs: list[Component]) -> tuple[tuple[object, ...], ...]:
    """``[output component][input component]``: the derivative of ``entry(a, b)`` (an entry of
    ``G`` or of a companion row, parameters bound) each pair applies, in the form the generated
    code computes; each entry's derivatives taken once."""
    target_axes = list(dict.fromkeys(axes for _, axes in outputs))
    source_axes = list(dict.fromkeys(axes for _, axes in inputs))
    tables = {(a, b): derivative_entries(entry(a, b), target_axes, source_axes)
              for a in dict.fromkeys(a for a, _ in outputs)
              for b in dict.fromkeys(b for b, _ in inputs)}
    return tuple(tuple(tables[a, b][target_axes.index(t)][source_axes.index(s)]
                       for b, s in inputs) for a, t in outputs)


def pair_flops(kernel) -> int:
    """:meth:`GreenKernel.flops_per_pair <fmmloopy.maths.green.GreenKernel.flops_per_pair>`:
    the expressions' operations, each distinct subexpression once, plus 3 for the offset and 2
    per entry; an isotropic kernel's ``A f + B d (d . f)`` form: its parts, and per vector 5
    for ``d . f`` and 5 per output."""
    seen: set = set()
    if kernel.isotropic_parts is not None:
        return (3 + sum(count_flops(part, seen) for part in kernel.isotropic_parts)
                + kernel.vectors * (5 + 3 * 5))
    entries = [e for row in kernel.expressions for e in row if not is_zero_entry(e)]
    return 3 + sum(count_flops(e, seen) for e in entries) + 2 * len(entries)
