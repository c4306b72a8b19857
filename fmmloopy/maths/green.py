"""Green's functions as data: a pymbolic expression in the offset ``d = target - source``.

A kernel is not a loop. The templates in :mod:`fmmloopy.maths.templates` splice the expression into
their loops, so a new kernel (a gradient, Yukawa, ...) is a new expression, not new code.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from numbers import Real

import numpy as np
import pymbolic
import pymbolic.primitives as prim
from pymbolic import var
from pymbolic.mapper import IdentityMapper
from pymbolic.mapper.dependency import DependencyMapper
from pymbolic.mapper.evaluator import (
    CachedEvaluationMapper,
    UnknownVariableError,
)
from pymbolic.mapper.substitutor import substitute

from fmmloopy.maths.derivatives import (
    KNOWN_FUNCTIONS,
    differentiate,
    simplify,
    to_code_form,
    to_power_form,
)

#: The offset components the expression is written in (target minus source).
OFFSET_VARIABLES: tuple[str, str, str] = ("d0", "d1", "d2")

#: What a pairwise sum can produce at its targets: per field, the derivatives of ``G`` (offset
#: components differentiated by) of each of its components.
TARGET_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "potential": ((),), "gradient": ((0,), (1,), (2,))}
#: What its sources can carry: a charge multiplies ``G``; a dipole ``m`` gives
#: ``m . grad_source G = -m . grad_d G`` (derivatives in the source point, whence the sign).
SOURCE_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "charge": ((),), "dipole": ((0,), (1,), (2,))}

#: What a kernel's name may hold (it is part of cache file names).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

#: numpy's function of each name the derivative rules know (host evaluation).
_NUMPY_FUNCTIONS = {name: getattr(np, name) for name in KNOWN_FUNCTIONS}


def _validate_fields(fields: tuple[str, ...], known: dict, what: str) -> tuple[str, ...]:
    fields = tuple(fields)
    if not fields or len(set(fields)) != len(fields) or not set(fields) <= set(known):
        raise ValueError(f"{what} must be distinct names among {list(known)}, not {fields!r}")
    return tuple(name for name in known if name in fields)  # the canonical order


@dataclass(frozen=True)
class GreenKernel:
    """A translation-invariant Green's function ``G(target - source)`` and the derivatives of it
    a pairwise sum applies.

    ``expression`` is written in the variables :data:`OFFSET_VARIABLES` and the names of
    ``parameters`` (``{"kappa": 10.0}``: real numbers, substituted before use), with the functions
    of :data:`~fmmloopy.maths.derivatives.KNOWN_FUNCTIONS`, and must be exactly zero at
    ``d == 0`` (no self-interaction: an ``If(r2 > 0, ..., 0)`` guard). ``homogeneity`` is the
    degree ``k`` with ``G(s d) = s**k G(d)``, None if there is none; it lets precomputed
    operators be scaled from level to level (without it they are computed per level). A kernel
    is checked when it is made (:func:`check_expression`): unknown variables or functions,
    a nonzero or non-finite value at ``d == 0``, non-finite values elsewhere and a declared
    homogeneity the values do not have raise ValueError.

    ``outputs`` (:data:`TARGET_FIELDS`) and ``inputs`` (:data:`SOURCE_FIELDS`) say what a pairwise
    sum with this kernel produces and takes: the default is the potential of charges; a
    gradient adds three target derivatives, dipoles three source derivatives. Together they make
    a matrix of expressions (:attr:`expressions`, ``n_outputs x n_inputs``), each one symbolic
    derivative of ``expression`` (:mod:`fmmloopy.maths.derivatives`).
    """

    name: str
    expression: prim.ExpressionNode
    homogeneity: float | None = None
    outputs: tuple[str, ...] = ("potential",)
    inputs: tuple[str, ...] = ("charge",)
    #: ``((name, value), ...)`` in name order (a mapping is accepted and converted).
    parameters: tuple[tuple[str, float], ...] = ()
    #: The parameter that is the kernel's wavenumber, for an oscillating kernel (Helmholtz's
    #: ``k``): ``Fmm`` then limits the root box in wavelengths (:func:`check_wave_range`).
    wavenumber: str | None = None
    #: Independent strength vectors summed at once (``k``): the kernel is then ``G ⊗ I_k``,
    #: block-diagonal, its components vector-major (component ``v * n + c`` is component ``c``
    #: of vector ``v``, ``n`` the components of one vector). A pairwise sum evaluates each
    #: pair's entries once for all ``k`` vectors (:meth:`with_vectors`).
    vectors: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.vectors, bool) or not isinstance(self.vectors, int | np.integer) \
                or self.vectors < 1:
            raise ValueError(f"vectors must be a positive integer, not {self.vectors!r}")
        object.__setattr__(self, "vectors", int(self.vectors))
        object.__setattr__(self, "outputs",
                           _validate_fields(self.outputs, TARGET_FIELDS, "outputs"))
        object.__setattr__(self, "inputs", _validate_fields(self.inputs, SOURCE_FIELDS, "inputs"))
        object.__setattr__(self, "parameters", _validate_parameters(self.parameters))
        if self.wavenumber is not None and self.wavenumber not in dict(self.parameters):
            raise ValueError(f"kernel {self.name!r}: the wavenumber {self.wavenumber!r} is not "
                             f"one of its parameters {[name for name, _ in self.parameters]}")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError("a kernel's name must be letters, digits, '_', '-' and '.' "
                             f"(it names cache files), not {self.name!r}")
        if self.homogeneity is not None:
            homogeneity = float(self.homogeneity)
            if not math.isfinite(homogeneity):
                raise ValueError(f"kernel {self.name!r}: homogeneity must be a finite number "
                                 f"or None, not {self.homogeneity!r}")
            object.__setattr__(self, "homogeneity", homogeneity)
        check_expression(self.name, self.expression, self.parameters, self.homogeneity)

    @property
    def bound_expression(self) -> prim.ExpressionNode:
        """``expression`` with the parameters' values in place of their names."""
        return _bind(self.expression, self.parameters)

    def with_fields(self, outputs=("potential",), inputs=("charge",)) -> GreenKernel:
        """This Green's function producing ``outputs`` from ``inputs``."""
        return dataclasses.replace(self, outputs=tuple(outputs), inputs=tuple(inputs))

    def with_vectors(self, vectors: int) -> GreenKernel:
        """This kernel applied to ``vectors`` strength vectors at once (:attr:`vectors`)."""
        return dataclasses.replace(self, vectors=vectors)

    @property
    def single(self) -> GreenKernel:
        """This kernel for one strength vector (its fields kept)."""
        return self.with_vectors(1)

    @property
    def base(self) -> GreenKernel:
        """The potential of charges, one vector (what the precomputed operators are made of)."""
        return dataclasses.replace(self, outputs=("potential",), inputs=("charge",), vectors=1)

    @property
    def is_scalar(self) -> bool:
        """One output component from one input component (the potential of charges)."""
        return self.n_outputs == self.n_inputs == 1

    @property
    def n_outputs(self) -> int:
        """Output components, over all :attr:`vectors`."""
        return self.vectors * sum(len(TARGET_FIELDS[name]) for name in self.outputs)

    @property
    def n_inputs(self) -> int:
        """Input components, over all :attr:`vectors`."""
        return self.vectors * sum(len(SOURCE_FIELDS[name]) for name in self.inputs)

    @property
    def spec(self) -> str:
        """The name with the parameters, as :func:`get_kernel` reads it (``yukawa:kappa=10``)."""
        if not self.parameters:
            return self.name
        return self.name + ":" + ",".join(f"{name}={value!r}" for name, value in self.parameters)

    @property
    def label(self) -> str:
        """The name and parameters, with the fields where they are not the potential of
        charges."""
        label = self.spec
        if self.outputs != ("potential",) or self.inputs != ("charge",):
            label += f" ({'+'.join(self.outputs)} of {'+'.join(self.inputs)})"
        return label if self.vectors == 1 else f"{label} x {self.vectors} vectors"

    @cached_property
    def is_complex(self) -> bool:
        """Whether the kernel has complex values (a complex constant in its expression, as in
        Helmholtz's ``exp(1j k r)``): its strengths, results and operators are then complex."""
        return bool(np.iscomplexobj(_evaluate(self.bound_expression, _CHECK_OFFSETS)))

    def value_dtype(self, dtype=np.float64) -> np.dtype:
        """The dtype of strengths, results, expansions and operators for coordinates of the
        real ``dtype``: ``dtype`` itself, or its complex counterpart for a complex kernel."""
        dtype = np.dtype(dtype)
        return np.result_type(dtype, np.complex64) if self.is_complex else dtype

    def output_derivatives(self) -> np.ndarray:
        """Per output component: how many derivatives of ``G`` it takes (0 or 1)."""
        return np.tile([len(d) for name in self.outputs for d in TARGET_FIELDS[name]],
                       self.vectors)

    def input_derivatives(self) -> np.ndarray:
        """Per input component: how many derivatives of ``G`` it takes (0 or 1)."""
        return np.tile([len(d) for name in self.inputs for d in SOURCE_FIELDS[name]],
                       self.vectors)

    def derivative_orders(self) -> np.ndarray:
        """``(n_outputs, n_inputs)``: how many derivatives each entry of the matrix takes (an
        entry of a kernel of homogeneity ``k`` has homogeneity ``k`` minus that)."""
        return np.add.outer(self.output_derivatives(), self.input_derivatives())

    @cached_property
    def expressions(self) -> tuple[tuple[prim.ExpressionNode, ...], ...]:
        """``[output component][input component]``: the derivative of ``G`` each pair of
        components applies, in the form the generated code computes (the potential of
        charges: ``expression`` itself). Over several :attr:`vectors`, block-diagonal: the
        entries between components of different vectors are the integer 0."""
        if self.vectors > 1:
            block = self.single.expressions
            return tuple(tuple(block[o][i] if v == w else 0
                               for w in range(self.vectors) for i in range(len(block[0])))
                         for v in range(self.vectors) for o in range(len(block)))
        if self.is_scalar:
            return ((_sized_constants(self.bound_expression),),)
        power_form = simplify(to_power_form(self.bound_expression))
        derivatives: dict[tuple[int, ...], object] = {(): power_form}

        def derivative(axes: tuple[int, ...]):
            key = tuple(sorted(axes))
            if key not in derivatives:
                derivatives[key] = differentiate(derivative(key[:-1]),
                                                 OFFSET_VARIABLES[key[-1]])
            return derivatives[key]
        rows = []
        for target in (d for name in self.outputs for d in TARGET_FIELDS[name]):
            row = []
            for source in (d for name in self.inputs for d in SOURCE_FIELDS[name]):
                entry = derivative(target + source)
                if len(source) % 2:
                    entry = _negated(entry)
                row.append(_sized_constants(to_code_form(entry)))
            rows.append(tuple(row))
        return tuple(rows)

    def evaluate(self, offsets: np.ndarray) -> np.ndarray:
        """Evaluate on the host for offsets of shape ``(..., 3)`` (numpy, float64, or complex128
        for a complex kernel): shape
        ``(...)`` for the potential of charges, else ``(..., n_outputs, n_inputs)``."""
        offsets = np.asarray(offsets, dtype=np.float64)
        dtype = self.value_dtype()  # complex even where a parameter's value made it real
        if self.vectors > 1:
            block = self.single.evaluate(offsets)
            if block.ndim == offsets.ndim - 1:
                block = block[..., None, None]
            return np.kron(np.eye(self.vectors, dtype=dtype), block)
        if self.is_scalar:
            return _evaluate(self.bound_expression, offsets).astype(dtype)
        mapper = _array_mapper(offsets)  # one mapper: entries share their subexpressions
        return np.stack([np.stack([_evaluate(e, offsets, mapper) for e in row], axis=-1)
                         for row in self.expressions], axis=-2).astype(dtype, copy=False)

    def flops_per_pair(self) -> int:
        """Floating-point operations per target-source pair of a pairwise kernel, counted from
        the expressions: each addition, multiplication, division, power and function call (a
        ``sqrt`` counts 1, however many cycles it takes) on values that depend on the offset,
        each distinct subexpression once over all entries, plus 3 for the offset and 2 per
        entry for multiplying by the strength and adding into the sum. Comparisons and
        selections are not counted. The roofline of ``fmmloopy bench`` uses it; for the
        Laplace potential it is 13, and 13 + 2 (k - 1) over ``k`` :attr:`vectors` (the zero
        entries between vectors are not computed)."""
        seen: set = set()
        entries = [e for row in self.expressions for e in row if not is_zero_entry(e)]
        return 3 + sum(_count_flops(e, seen) for e in entries) + 2 * len(entries)


def is_zero_entry(expression) -> bool:
    """Whether a kernel entry is the constant 0 (between the components of two vectors)."""
    return isinstance(expression, Real) and expression == 0


def _array_mapper(offsets: np.ndarray) -> _ArrayEvaluationMapper:
    """An evaluator at ``offsets`` ``(..., 3)`` (each axis's values made contiguous once) that
    remembers every subexpression it has evaluated."""
    context = {name: np.asarray(offsets[..., i], order="C")
               for i, name in enumerate(OFFSET_VARIABLES)}
    return _ArrayEvaluationMapper(context | _NUMPY_FUNCTIONS)


def _evaluate(expression, offsets: np.ndarray, mapper: _ArrayEvaluationMapper | None = None
              ) -> np.ndarray:
    """``expression`` (parameters bound) at ``offsets`` ``(..., 3)``, shape ``(...)``;
    ``mapper``: an evaluator of :func:`_array_mapper` at the same offsets, to share."""
    mapper = _array_mapper(offsets) if mapper is None else mapper
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        values = mapper(expression)
    values = np.asarray(values)
    dtype = np.complex128 if np.iscomplexobj(values) else np.float64
    return np.broadcast_to(values.astype(dtype, copy=False), offsets.shape[:-1])


def _validate_parameters(parameters) -> tuple[tuple[str, float], ...]:
    """Parameters as ``((name, value), ...)`` in name order: identifiers other than the offset's
    variables, finite real values."""
    items = parameters.items() if isinstance(parameters, Mapping) else parameters
    try:
        pairs = [(name, value) for name, value in items]
    except (TypeError, ValueError):
        raise ValueError(f"parameters must be a mapping name -> number, not {parameters!r}"
                         ) from None
    result = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name.isidentifier() or name in OFFSET_VARIABLES \
                or name in KNOWN_FUNCTIONS:
            raise ValueError(f"parameter name {name!r} must be an identifier other than "
                             f"{', '.join(OFFSET_VARIABLES + KNOWN_FUNCTIONS)}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"parameter {name!r} must be a finite real number, not {value!r}")
        if name in result:
            raise ValueError(f"parameter {name!r} is given twice")
        result[name] = float(value)
    return tuple(sorted(result.items()))


def _bind(expression, parameters: tuple[tuple[str, float], ...]):
    return substitute(expression, dict(parameters)) if parameters else expression


#: Offsets at which :func:`check_expression` evaluates a kernel: 64 directions, lengths from
#: 1e-3 to 1e3 (fixed, so that a kernel's check does not depend on a random draw).
_CHECK_OFFSETS = (np.random.default_rng(20261123).standard_normal((64, 3))
                  * np.logspace(-3, 3, 64)[:, None])


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
    bound = _bind(expression, parameters)
    try:
        at_zero = _evaluate(bound, np.zeros((1, 3)))
        values = _evaluate(bound, _CHECK_OFFSETS)
        doubled = _evaluate(bound, 2.0 * _CHECK_OFFSETS)
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


class _SizedComplexConstants(IdentityMapper):
    """Python complex constants as ``numpy.complex128`` (loopy infers no type for a bare
    ``complex``)."""

    def map_constant(self, expr):
        return np.complex128(expr) if isinstance(expr, complex) else expr


def _sized_constants(expr):
    """``expr`` with its complex constants sized (:class:`_SizedComplexConstants`)."""
    return _SizedComplexConstants()(expr)


def _negated(expr):
    """``-expr`` in power form, the sign taken inside selections."""
    if isinstance(expr, prim.If):
        return prim.If(expr.condition, _negated(expr.then), _negated(expr.else_))
    return simplify(prim.Product((-1, expr)))


def get_variables(expr) -> set:
    """The variables ``expr`` depends on (function names not included)."""
    return DependencyMapper(include_calls=False)(expr)


def _count_flops(expr, seen: set | None = None) -> int:
    """Arithmetic operations in ``expr`` that depend on a variable (constants fold away), each
    distinct subexpression once (a compiler computes a repeated one once)."""
    seen = set() if seen is None else seen
    if not isinstance(expr, prim.ExpressionNode) or expr in seen or not get_variables(expr):
        return 0
    seen.add(expr)

    def count(*children) -> int:
        return sum(_count_flops(child, seen) for child in children)
    if isinstance(expr, (prim.Sum, prim.Product)):
        return len(expr.children) - 1 + count(*expr.children)
    if isinstance(expr, prim.Quotient):
        return 1 + count(expr.numerator, expr.denominator)
    if isinstance(expr, prim.Power):
        return 1 + count(expr.base, expr.exponent)
    if isinstance(expr, prim.Call):
        return 1 + count(*expr.parameters)
    if isinstance(expr, prim.If):
        return count(expr.condition, expr.then, expr.else_)
    if isinstance(expr, prim.Comparison):
        return count(expr.left, expr.right)
    return 0


class _ArrayEvaluationMapper(CachedEvaluationMapper):
    """Evaluates element-wise on numpy arrays (``If`` becomes ``np.where``), each distinct
    subexpression once: a kernel's derivatives repeat the same powers and products."""

    def map_if(self, expr: prim.If) -> np.ndarray:
        return np.where(self.rec(expr.condition), self.rec(expr.then), self.rec(expr.else_))


def _offset_length_squared():
    d0, d1, d2 = (var(name) for name in OFFSET_VARIABLES)
    return d0 * d0 + d1 * d1 + d2 * d2


def _guarded(expression):
    """``If(r2 > 0, expression, 0)``: no self-interaction."""
    return prim.If(prim.Comparison(_offset_length_squared(), ">", 0), expression, 0)


def _laplace_3d() -> GreenKernel:
    inverse_r = 1 / var("sqrt")(_offset_length_squared())
    return GreenKernel(name="laplace", expression=_guarded(inverse_r * (1 / (4 * math.pi))),
                       homogeneity=-1.0)


#: ``1 / (4 pi |d|)``, and exactly 0 at ``d == 0``.
LAPLACE_3D = _laplace_3d()


def yukawa(kappa: float) -> GreenKernel:
    """The Yukawa (modified Helmholtz, screened Coulomb) kernel ``exp(-kappa |d|) / (4 pi |d|)``,
    the fundamental solution of ``-Laplacian u + kappa**2 u = delta`` (``kappa >= 0``; 0 is
    Laplace's). Not homogeneous: its operators are computed per level."""
    if not (isinstance(kappa, Real) and not isinstance(kappa, bool) and 0 <= kappa < math.inf):
        raise ValueError(f"yukawa: kappa must be a finite real number >= 0, not {kappa!r}")
    r = var("sqrt")(_offset_length_squared())
    decay = var("exp")(-var("kappa") * r)
    return GreenKernel(name="yukawa", expression=_guarded(decay * (1 / r) * (1 / (4 * math.pi))),
                       parameters={"kappa": kappa})


def helmholtz(k: float) -> GreenKernel:
    """The Helmholtz kernel ``exp(1j k |d|) / (4 pi |d|)`` (outgoing waves of wavenumber
    ``k >= 0``, wavelength ``2 pi / k``), the fundamental solution of ``-Laplacian u - k**2 u =
    delta``: complex values, charges and potentials. Not homogeneous: its operators are
    computed per level. The KIFMM used here is a low-frequency method: ``Fmm`` refuses a root
    box wider than ``order / 3`` wavelengths (:func:`max_root_wavelengths`; docs/kernels.md
    gives the errors measured)."""
    if not (isinstance(k, Real) and not isinstance(k, bool) and 0 <= k < math.inf):
        raise ValueError(f"helmholtz: k must be a finite real number >= 0, not {k!r}")
    r = var("sqrt")(_offset_length_squared())
    wave = var("exp")(1j * var("k") * r)
    return GreenKernel(name="helmholtz", expression=_guarded(wave * (1 / r) * (1 / (4 * math.pi))),
                       parameters={"k": k}, wavenumber="k")


#: Wavelengths of root box per unit of order within which the Helmholtz FMM is accurate: the
#: KIFMM here is a low-frequency method (every level's surfaces have ``order`` points a side,
#: one set of translation operators per level, no directional splitting), so the widest box it
#: resolves grows with the order. At ``order / 3`` wavelengths the error measured is within
#: about ten times Laplace's at that order (docs/kernels.md, 'Helmholtz').
WAVELENGTHS_PER_ORDER = 1 / 3
#: The highest order the range was measured at; higher orders get its range.
RANGE_MEASURED_TO_ORDER = 10


def max_root_wavelengths(order: int) -> float:
    """The widest root box, in wavelengths, over which the Helmholtz FMM of ``order`` is
    accurate: ``order / 3`` (orders above 10: 10 / 3)."""
    return min(order, RANGE_MEASURED_TO_ORDER) * WAVELENGTHS_PER_ORDER


def wavelength(kernel: GreenKernel) -> float | None:
    """The wavelength ``2 pi / k`` of a kernel with a :attr:`~GreenKernel.wavenumber` ``k``
    (``inf`` at ``k = 0``), None for the others."""
    if kernel.wavenumber is None:
        return None
    k = abs(dict(kernel.parameters)[kernel.wavenumber])
    return 2 * math.pi / k if k > 0 else math.inf


def check_wave_range(kernel: GreenKernel, root_side: float, order: int) -> None:
    """ValueError, with the numbers, where ``kernel`` oscillates too fast for the FMM of
    ``order`` over a root box of side ``root_side`` (more than :func:`max_root_wavelengths`
    wavelengths)."""
    length = wavelength(kernel)
    if length is None:
        return
    across, limit = root_side / length, max_root_wavelengths(order)
    if across <= limit:
        return
    needed = math.ceil(across / WAVELENGTHS_PER_ORDER - 1e-9)
    remedy = (f"raise the order to {needed}, lower k or split the points into smaller groups"
              if needed <= RANGE_MEASURED_TO_ORDER else
              "lower k or split the points into smaller groups")
    raise ValueError(
        f"kernel {kernel.spec}: the points' root box (side {root_side:.4g}) is {across:.3g} "
        f"wavelengths wide (wavelength {length:.4g}); at order {order} this FMM (a "
        f"low-frequency KIFMM) is accurate up to {limit:.3g} wavelengths (order / 3; "
        f"docs/kernels.md, 'Helmholtz'): {remedy}")


#: Python's imaginary literals (``1j``, ``2.5j``), which pymbolic's parser does not read: they
#: are rewritten as a product with a name that :func:`user_kernel` replaces by ``1j``.
_IMAGINARY_LITERAL = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)[jJ]\b")
_IMAGINARY_UNIT = "imaginary_unit_"


def user_kernel(expression, *, name: str = "user", parameters=None,
                homogeneity: float | None = None, wavenumber: str | None = None) -> GreenKernel:
    """A Green's function written by the user: ``expression`` (pymbolic, or text pymbolic
    parses, e.g. ``"exp(-kappa*r)/(4*pi*r)"``, ``"exp(1j*k*r)/(4*pi*r)"``) in the offset
    ``d0, d1, d2`` and its length ``r``, with ``pi``, imaginary literals (``1j``) and the
    ``parameters`` (``{"kappa": 2.0}``) as constants. It is taken
    as ``G`` away from ``d = 0`` and 0 at it (an ``If(r2 > 0, G, 0)`` guard is added unless
    the expression is already a selection). The KIFMM is accurate for the fundamental solution
    of an elliptic PDE with constant coefficients, smooth away from 0 (docs/kernels.md);
    ``homogeneity``, if given, is checked on sample offsets; ``wavenumber`` names the parameter
    that is an oscillating kernel's wavenumber (the FMM's range is limited in wavelengths)."""
    parameters = dict(_validate_parameters(parameters or {}))
    if isinstance(expression, str):
        try:
            expression = pymbolic.parse(_IMAGINARY_LITERAL.sub(rf"(\1*{_IMAGINARY_UNIT})",
                                                               expression))
        except Exception as error:  # pymbolic's parser raises several kinds
            raise ValueError(f"kernel {name!r}: cannot parse {expression!r} ({error})"
                             ) from None
    constants = {"r": var("sqrt")(_offset_length_squared()), "pi": math.pi,
                 _IMAGINARY_UNIT: 1j}
    expression = substitute(expression, {key: value for key, value in constants.items()
                                         if key not in parameters})
    if not isinstance(expression, prim.If):
        expression = _guarded(expression)
    return GreenKernel(name=name, expression=expression, homogeneity=homogeneity,
                       parameters=parameters, wavenumber=wavenumber)


#: Built-in kernels by name: a kernel, or a function of its parameters.
_KERNELS: dict[str, object] = {LAPLACE_3D.name: LAPLACE_3D, "yukawa": yukawa,
                               "helmholtz": helmholtz}


def kernel_names() -> list[str]:
    """Names of the built-in kernels (what ``get_kernel`` and ``fmmloopy check --kernel``
    take)."""
    return sorted(_KERNELS)


def get_kernel(kernel: str | GreenKernel) -> GreenKernel:
    """A built-in kernel by name, with its parameters after a colon (``"laplace"``,
    ``"yukawa:kappa=10"``); an expression as :func:`user_kernel` reads it, with its parameters
    after a colon (``"exp(-kappa*r)/(4*pi*r):kappa=10"``); or a :class:`GreenKernel` passed
    through."""
    if isinstance(kernel, GreenKernel):
        return kernel
    if not isinstance(kernel, str):
        raise ValueError(f"kernel must be a name or a GreenKernel, not {type(kernel).__name__}")
    name, _, arguments = kernel.partition(":")
    parameters = _parse_parameters(kernel, arguments)
    made = _KERNELS.get(name.strip())
    if made is None:
        try:
            return user_kernel(name, parameters=parameters)
        except ValueError as error:
            raise ValueError(
                f"unknown kernel {kernel!r}: not one of {kernel_names()} (parameters after a "
                "colon: 'yukawa:kappa=10'), nor an expression in d0, d1, d2, r ("
                f"{error})") from None
    if isinstance(made, GreenKernel):
        if parameters:
            raise ValueError(f"kernel {name!r} takes no parameters, got {sorted(parameters)}")
        return made
    try:
        return made(**parameters)
    except TypeError as error:
        raise ValueError(f"kernel {kernel!r}: {error} (e.g. 'yukawa:kappa=10')") from None


def _parse_parameters(spec: str, text: str) -> dict[str, float]:
    """``{"kappa": 10.0}`` from ``"kappa=10"`` (comma-separated assignments)."""
    parameters = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        try:
            if not equals:
                raise ValueError
            parameters[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"kernel {spec!r}: parameters are name=number, not {item!r}"
                             ) from None
    return parameters
