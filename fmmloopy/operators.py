"""The FMM operators as specialisations of the two templates in :mod:`fmmloopy.templates`.

An :class:`OperatorSpec` names an operator, its template and the template arguments that make it;
:func:`math_kernel` builds its math-level (untransformed) loopy kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import loopy as lp
import numpy as np

from fmmloopy.kernels import GreenKernel, get_kernel
from fmmloopy.reference import matvec_reference, pairwise_reference
from fmmloopy.templates import BoxParticles, make_matvec_kernel, make_pairwise_kernel

PAIRWISE = "pairwise"
MATVEC = "matvec"


@dataclass(frozen=True)
class OperatorSpec:
    """One operator: its template and the specialisation of that template."""

    name: str
    template: str
    make: Callable[..., lp.TranslationUnit]  # (name, green, dtype, **sizes) -> kernel
    host_reference: Callable[[GreenKernel, dict], dict[str, np.ndarray]]  # numpy, for checks
    summary: str


def _p2p(name: str, green: GreenKernel, dtype: np.dtype) -> lp.TranslationUnit:
    return make_pairwise_kernel(name, green, BoxParticles(), BoxParticles(), accumulate=True,
                                dtype=dtype)


def _matvec(name: str, green: GreenKernel, dtype: np.dtype, *, n_target_coeffs: int,
            n_source_coeffs: int) -> lp.TranslationUnit:
    del green  # the matrices carry the kernel
    return make_matvec_kernel(name, n_target_coeffs, n_source_coeffs, accumulate=True,
                              dtype=dtype)


OPERATORS: dict[str, OperatorSpec] = {spec.name: spec for spec in (
    OperatorSpec("p2p", PAIRWISE, _p2p,
                 lambda green, inputs: {"result": pairwise_reference(green, inputs)},
                 "near field: particles of the U-list boxes -> particles (adds to result)"),
    OperatorSpec("matvec", MATVEC, _matvec,
                 lambda green, inputs: {"target_vectors": matvec_reference(inputs)},
                 "batched matvec over a CSR box list with a per-entry matrix (adds to target)"),
)}


def get_operator(name: str) -> OperatorSpec:
    """The operator called ``name``, with a clear error for an unknown one."""
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; operators: {sorted(OPERATORS)}") from None


@cache
def _math_kernel(operator: str, kernel_name: str, green: GreenKernel, dtype: np.dtype,
                 sizes: tuple[tuple[str, int], ...]) -> lp.TranslationUnit:
    spec = get_operator(operator)
    return spec.make(operator, green, dtype, **dict(sizes))


def math_kernel(operator: str, *, kernel: str | GreenKernel = "laplace",
                dtype=np.float64, **sizes: int) -> lp.TranslationUnit:
    """The math-level kernel of ``operator`` (memoised; loopy kernels are immutable)."""
    green = get_kernel(kernel)
    return _math_kernel(operator, green.name, green, np.dtype(dtype), tuple(sorted(sizes.items())))
