"""A Green's function's expression evaluated on the host (numpy, element-wise, each distinct
subexpression once) and checked before use (:func:`check_expression`).

:mod:`fmmloopy.maths.green` re-exports :func:`check_expression`.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Real

import numpy as np
import pymbolic.primitives as prim
from pymbolic.mapper.evaluator import (
    CachedEvaluationMapper,
    UnknownVariableError,
)

from fmmloopy.maths.derivatives import KNOWN_FUNCTIONS
from fmmloopy.maths.green_expression import OFFSET_VARIABLES, bind_parameters, get_variables

#: numpy's function of each name the derivative rules know (host evaluation).
_NUMPY_FUNCTIONS = {name: getattr(np, name) for name in KNOWN_FUNCTIONS}


class _ArrayEvaluationMapper(CachedEvaluationMapper):
    """Evaluates element-wise on numpy arrays (``If`` becomes ``np.where``), each distinct
    subexpression once: a kernel's derivatives repeat the same powers and products."""

    def map_if(self, expr: prim.If) -> np.ndarray:
        return np.where(self.rec(expr.condition), self.rec(expr.then), self.rec(expr.else_))


def array_mapper(offsets: np.ndarray) -> _ArrayEvaluationMapper:
    """An evaluator at ``offsets`` ``(..., 3)`` (each axis's values made contiguous once) that
    remembers every subexpression it has evaluated."""
    context = {name: np.asarray(offsets[..., i], order="C")
               for i, name in enumerate(OFFSET_VARIABLES)}
    return _ArrayEvaluationMapper(context | _NUMPY_FUNCTIONS)


def evaluate_expression(expression, offsets: np.ndarray,
                        mapper: _ArrayEvaluationMapper | None = None) -> np.ndarray:
    """``expression`` (parameters bound) at ``offsets`` ``(..., 3)``, shape ``(...)``;
    ``mapper``: an evaluator of :func:`array_mapper` at the same offsets, to share."""
    mapper = array_mapper(offsets) if mapper is None else mapper
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        values = mapper(expression)
    values = np.asarray(values)
    dtype = np.complex128 if np.iscomplexobj(values) else np.float64
    return np.broadcast_to(values.astype(dtype, copy=False), offsets.shape[:-1])


#: Offsets at which :func:`check_expression` evaluates a kernel: 64 directions, lengths from
#: 1e-3 to 1e3 (fixed, so that a kernel's check does not depend on a random draw).
CHECK_OFFSETS = (np.random.default_rng(20261123).standard_normal((64, 3))
                 * np.logspace(-3, 3, 64)[:, None])


@lru_cache(maxsize=256)
def has_complex_values(expression, parameters) -> bool:
    """Whether ``expression`` (a tensor kernel's: a tuple of rows of them) with ``parameters``
    (``(name, value)`` pairs) bound takes complex values at :data:`CHECK_OFFSETS`: a kernel's
    ``is_complex``, known once per expression and parameters."""
    entries = ([entry for row in expression for entry in row]
               if isinstance(expression, tuple) else [expression])
    return any(np.iscomplexobj(evaluate_expression(bind_parameters(entry, parameters),
                                                   CHECK_OFFSETS)) for entry in entries)


@lru_cache(maxsize=256)
def check_expression(name: str, expression, parameters: tuple[tuple[str, float], ...],
                     homogeneity: float | None) -> None:
    """ValueError, naming the problem, unless ``expression`` is a usable Green's function: only
    the offset's variables, the parameters and known functions; exactly 0 at ``d == 0``; finite
    elsewhere (on offsets of lengths 1e-3 to 1e3); and ``G(2 d) = 2**k G(d)`` to 1e-12 where a
    homogeneity ``k`` is declared."""
    if not isinstance(expression, prim.ExpressionNode | Real):
        raise ValueError(f"kernel {name!r}: the expression must be a pymbolic expression, not "
                         f"{type(expression).__name__}")
    unknown = {v.name for v in get_variables(expression)} - set(OFFSET_VARIABLES) - {
        parameter for parameter, _ in parameters} - set(KNOWN_FUNCTIONS)
    if unknown:
        raise ValueError(f"kernel {name!r}: the expression uses {sorted(unknown)}, which are "
                         f"neither offset variables {list(OFFSET_VARIABLES)}, parameters "
                         f"{[parameter for parameter, _ in parameters]} nor known functions "
                         f"{list(KNOWN_FUNCTIONS)}")
    bound = bind_parameters(expression, parameters)
    try:
        at_zero = evaluate_expression(bound, np.zeros((1, 3)))
        values = evaluate_expression(bound, CHECK_OFFSETS)
        doubled = evaluate_expression(bound, 2.0 * CHECK_OFFSETS)
    except UnknownVariableError as error:
        raise ValueError(f"kernel {name!r}: unknown function {error} (known: "
                         f"{', '.join(KNOWN_FUNCTIONS)})") from None
    except (TypeError, ValueError, ZeroDivisionError) as error:
        raise ValueError(f"kernel {name!r}: the expression cannot be evaluated ({error})"
                         ) from None
    if at_zero[0] != 0:
        raise ValueError(f"kernel {name!r} is {at_zero[0]!r} at d == 0, not exactly 0: guard "
                         "the self-interaction, e.g. If(r2 > 0, G, 0)")
    if not np.isfinite(values).all() or not np.isfinite(doubled).all():
        raise ValueError(f"kernel {name!r} is not finite at some offsets d != 0 (lengths "
                         "1e-3 to 2e3)")
    if homogeneity is not None:
        expected = np.exp2(homogeneity) * values
        error = np.abs(doubled - expected).max() / max(np.abs(expected).max(), 1e-300)
        if not error <= 1e-12:
            raise ValueError(f"kernel {name!r} declares homogeneity {homogeneity} but "
                             f"G(2 d) differs from 2**{homogeneity} G(d) by {error:.2g} "
                             "(relative); declare None if it has none")


@lru_cache(maxsize=256)  # a kernel made again (other fields, vectors) is not checked again
def check_isotropic(name: str, matrix, parts: tuple, parameters: tuple[tuple[str, float], ...]
                    ) -> None:
    """ValueError unless the 3 x 3 ``matrix`` of expressions equals ``A I + B d d^T`` for
    ``parts = (A, B)`` (to 1e-12 of its largest value at :data:`CHECK_OFFSETS`)."""
    if not (isinstance(matrix, tuple) and len(matrix) == 3 and len(parts) == 2
            and all(len(row) == 3 for row in matrix)):
        raise ValueError(f"kernel {name!r}: isotropic parts (A, B) are for a 3 x 3 kernel")
    for part in parts:
        check_expression(f"{name} isotropic part", part, parameters, None)
    a, b = (evaluate_expression(bind_parameters(part, parameters), CHECK_OFFSETS)
            for part in parts)
    values = np.stack([np.stack([evaluate_expression(bind_parameters(entry, parameters),
                                                     CHECK_OFFSETS) for entry in row], -1)
                       for row in matrix], -2)
    expected = (a[:, None, None] * np.eye(3)
                + b[:, None, None] * CHECK_OFFSETS[:, :, None] * CHECK_OFFSETS[:, None, :])
    if not np.abs(values - expected).max() <= 1e-12 * np.abs(values).max():
        raise ValueError(f"kernel {name!r}: its matrix is not A I + B d d^T for the isotropic "
                         "parts given")


def evaluate_kernel(kernel, offsets: np.ndarray) -> np.ndarray:
    """:meth:`GreenKernel.evaluate <fmmloopy.maths.green.GreenKernel.evaluate>`: ``kernel`` at
    ``offsets`` ``(..., 3)``, ``(...)`` for the potential of charges, else ``(...,
    n_outputs, n_inputs)``; several vectors block-diagonal."""
    offsets = np.asarray(offsets, dtype=np.float64)
    dtype = kernel.value_dtype()  # complex even where a parameter's value made it real
    if kernel.vectors > 1:
        block = evaluate_kernel(kernel.single, offsets)
        if block.ndim == offsets.ndim - 1:
            block = block[..., None, None]
        return np.kron(np.eye(kernel.vectors, dtype=dtype), block)
    if kernel.is_scalar and not kernel.is_tensor:
        return evaluate_expression(kernel.bound_expression, offsets).astype(dtype)
    mapper = array_mapper(offsets)  # one mapper: entries share their subexpressions
    return np.stack([np.stack([evaluate_expression(e, offsets, mapper) for e in row], axis=-1)
                     for row in kernel.expressions], axis=-2).astype(dtype, copy=False)
