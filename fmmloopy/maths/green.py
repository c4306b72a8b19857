"""Green's functions as data: a pymbolic expression in the offset ``d = target - source``.

A kernel is not a loop. The templates in :mod:`fmmloopy.maths.templates` splice the expression into
their loops, so a new kernel (a gradient, Yukawa, ...) is a new expression, not new code.

This module holds the kernel (:class:`GreenKernel`), the built-in kernels, kernels written by the
user and the lookup by name, and is the interface to import from: the expression's pieces
(:mod:`fmmloopy.maths.green_expression`), its fields component by component
(:mod:`fmmloopy.maths.green_fields`), its evaluation on the host and checks
(:mod:`fmmloopy.maths.green_evaluation`) and the range in wavelengths of an oscillating kernel
(:mod:`fmmloopy.maths.wave_range`) live beside it, their public names re-exported.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from functools import cached_property
from numbers import Real

import numpy as np
import pymbolic
import pymbolic.primitives as prim
from pymbolic import var
from pymbolic.mapper.substitutor import substitute

from fmmloopy.maths import flow_kernels
from fmmloopy.maths.green_evaluation import (
    check_expression,
    check_isotropic,
    evaluate_kernel,
    has_complex_values,
)
from fmmloopy.maths.green_expression import (
    OFFSET_VARIABLES,
    bind_parameters,
    derivative_entries,
    get_variables,
    guarded,
    is_zero_entry,
    offset_length_squared,
    parse_parameters,
    sized_constants,
    validate_parameters,
)
from fmmloopy.maths.green_fields import (
    SOURCE_FIELDS,
    TARGET_FIELDS,
    Component,
    as_entries,
    field_entries,
    input_components,
    output_components,
    pair_flops,
    validate_fields,
)
from fmmloopy.maths.wave_range import (
    RANGE_MEASURED_TO_ORDER,
    WAVELENGTHS_PER_ORDER,
    check_wave_range,
    max_root_wavelengths,
    wavelength,
)

__all__ = [
    "OFFSET_VARIABLES", "TARGET_FIELDS", "SOURCE_FIELDS", "GreenKernel", "is_zero_entry",
    "check_expression", "get_variables", "LAPLACE_3D", "yukawa", "helmholtz", "stokes", "rpy",
    "regularized_stokes",
    "stresslet", "WAVELENGTHS_PER_ORDER", "RANGE_MEASURED_TO_ORDER", "max_root_wavelengths",
    "wavelength", "check_wave_range", "user_kernel", "kernel_names", "get_kernel",
]

#: What a kernel's name may hold (it is part of cache file names).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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

    A tensor kernel (``expression`` a matrix, :attr:`base_shape` ``(m, k)``) maps ``k`` source
    components to ``m`` target components; each field then holds every component: the
    potential ``m`` values, the gradient ``3 m`` (``d_j G_a`` at ``3 a + j``), a charge ``k``,
    a dipole ``3 k`` (component ``b`` along axis ``l`` at ``3 b + l``). Its expansions hold
    ``k`` densities per equivalent point (:attr:`density_components`).
    """

    name: str
    #: ``G`` in the offset: one expression (a scalar kernel), or a matrix of them, rows the
    #: target components, columns the source components (a tensor kernel: Stokes' 3 x 3).
    expression: prim.ExpressionNode | tuple[tuple[prim.ExpressionNode, ...], ...]
    homogeneity: float | None = None
    outputs: tuple[str, ...] = ("potential",)
    inputs: tuple[str, ...] = ("charge",)
    #: ``((name, value), ...)`` in name order (a mapping is accepted and converted).
    parameters: tuple[tuple[str, float], ...] = ()
    #: The parameter that is the kernel's wavenumber, for an oscillating kernel (Helmholtz's
    #: ``k``): ``Fmm`` then limits the root box in wavelengths (:func:`check_wave_range`).
    wavenumber: str | None = None
    #: Fields of a tensor kernel's flow other than ``G`` and its derivatives, each a row of
    #: expressions over the source components (``(("pressure", (P_0, P_1, P_2)),)`` for the
    #: Stokeslet) with the degree it adds to the homogeneity's (``P`` is one degree below
    #: ``G``): an output of that name is one more component per vector.
    companions: tuple[tuple[str, tuple[prim.ExpressionNode, ...], int], ...] = ()
    #: ``(A, B)`` of a 3 x 3 kernel ``G = A(r) I + B(r) d d^T`` (the Stokeslet's), checked
    #: against ``expression`` when the kernel is made: the pairwise template applies it to a
    #: force as ``A f + B d (d . f)``, fewer operations a pair than the matrix
    #: (:attr:`isotropic_parts`).
    isotropic: tuple[prim.ExpressionNode, prim.ExpressionNode] | None = None
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
        object.__setattr__(self, "companions", tuple(
            (name, tuple(row), int(degree)) for name, row, degree in self.companions))
        object.__setattr__(self, "outputs", validate_fields(
            self.outputs, TARGET_FIELDS | {name: ((),) for name, _, _ in self.companions},
            "outputs"))
        object.__setattr__(self, "inputs", validate_fields(self.inputs, SOURCE_FIELDS, "inputs"))
        object.__setattr__(self, "parameters", validate_parameters(self.parameters))
        object.__setattr__(self, "expression", as_entries(self.name, self.expression))
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
        if self.is_tensor:
            for a, row in enumerate(self.expression):
                for b, entry in enumerate(row):
                    check_expression(f"{self.name}[{a}, {b}]", entry, self.parameters,
                                     self.homogeneity)
        else:
            check_expression(self.name, self.expression, self.parameters, self.homogeneity)
        if self.isotropic is not None:
            check_isotropic(self.name, self.expression, tuple(self.isotropic), self.parameters)
        for name, row, degree in self.companions:
            if len(row) != self.base_shape[1]:
                raise ValueError(f"kernel {self.name!r}: its {name} has {len(row)} entries for "
                                 f"{self.base_shape[1]} source components")
            for b, entry in enumerate(row):
                check_expression(f"{self.name} {name}[{b}]", entry, self.parameters,
                                 None if self.homogeneity is None
                                 else self.homogeneity - degree)

    @property
    def is_tensor(self) -> bool:
        """Whether ``expression`` is a matrix (a tensor kernel), not one expression."""
        return isinstance(self.expression, tuple)

    @property
    def base_shape(self) -> tuple[int, int]:
        """``(m, k)``: the target and source components of ``G`` itself; ``(1, 1)`` for a
        scalar kernel."""
        if self.is_tensor:
            return len(self.expression), len(self.expression[0])
        return 1, 1

    @property
    def density_components(self) -> int:
        """Values per equivalent (and check) point of the FMM's expansions: ``k`` of
        :attr:`base_shape` (1 for a scalar kernel). The KIFMM here fits densities to check
        values of as many components, so it needs ``m == k`` (:meth:`check_square`)."""
        return self.base_shape[1]

    def check_square(self) -> None:
        """ValueError unless ``G`` maps as many source components as target components (the
        expansions' check values and densities are then of one width)."""
        m, k = self.base_shape
        if m != k:
            raise ValueError(f"kernel {self.name!r} maps {k} source components to {m} target "
                             "components: the FMM's expansions need a square kernel")

    @property
    def bound_expression(self):
        """``expression`` with the parameters' values in place of their names (a matrix of
        them for a tensor kernel)."""
        if self.is_tensor:
            return tuple(tuple(bind_parameters(entry, self.parameters) for entry in row)
                         for row in self.expression)
        return bind_parameters(self.expression, self.parameters)

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
    def field_names(self) -> tuple[str, ...]:
        """Every output field this kernel can produce: the derivatives', then its
        companions'."""
        return (*TARGET_FIELDS, *(name for name, _, _ in self.companions))

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
        return self.vectors * len(self._output_components())

    @property
    def n_inputs(self) -> int:
        """Input components, over all :attr:`vectors`."""
        return self.vectors * len(self._input_components())

    def _output_components(self) -> list[Component]:
        """Each output component of one vector (:func:`~fmmloopy.maths.green_fields.
        output_components`)."""
        return output_components(self.outputs, self.base_shape[0],
                                 {name for name, _, _ in self.companions})

    def _input_components(self) -> list[Component]:
        """Each input component of one vector."""
        return input_components(self.inputs, self.base_shape[1])

    def _entry(self, a: int | str, b: int):
        """Entry ``(a, b)`` of ``G`` (a companion's entry ``b`` where ``a`` names it),
        parameters bound."""
        if isinstance(a, str):
            row = next(row for name, row, _ in self.companions if name == a)
            return bind_parameters(row[b], self.parameters)
        return (self.bound_expression[a][b] if self.is_tensor else self.bound_expression)

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
        Helmholtz's ``exp(1j k r)``): its strengths, results and operators are then complex.
        Evaluated once per expression and parameters (every field and vector count of a kernel
        is another instance; a plan asks it of each of its steps)."""
        return has_complex_values(self.expression, self.parameters)

    def value_dtype(self, dtype=np.float64) -> np.dtype:
        """The dtype of strengths, results, expansions and operators for coordinates of the
        real ``dtype``: ``dtype`` itself, or its complex counterpart for a complex kernel."""
        dtype = np.dtype(dtype)
        return np.result_type(dtype, np.complex64) if self.is_complex else dtype

    def output_derivatives(self) -> np.ndarray:
        """Per output component: how many derivatives of ``G`` it takes (a companion: the
        degree it adds to the homogeneity's)."""
        degrees = {name: degree for name, _, degree in self.companions}
        return np.tile([degrees[a] if isinstance(a, str) else len(axes)
                        for a, axes in self._output_components()], self.vectors)

    def input_derivatives(self) -> np.ndarray:
        """Per input component: how many derivatives of ``G`` it takes (0 or 1)."""
        return np.tile([len(axes) for _, axes in self._input_components()], self.vectors)

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
        if self.is_scalar and not self.is_tensor:
            return ((sized_constants(self.bound_expression),),)
        return field_entries(self._entry, self._output_components(), self._input_components())

    def evaluate(self, offsets: np.ndarray) -> np.ndarray:
        """Evaluate on the host for offsets of shape ``(..., 3)`` (numpy, float64, or complex128
        for a complex kernel): shape
        ``(...)`` for the potential of charges, else ``(..., n_outputs, n_inputs)``."""
        return evaluate_kernel(self, offsets)

    @property
    def isotropic_parts(self) -> tuple | None:
        """``(A, B)`` in the form the generated code computes where a pairwise sum applies this
        kernel as ``A f + B d (d . f)``: the potential of charges (forces) of a kernel with
        :attr:`isotropic` parts; else None."""
        if self.isotropic is None or self.outputs != ("potential",) \
                or self.inputs != ("charge",):
            return None
        return tuple(derivative_entries(bind_parameters(part, self.parameters), [()], [()])[0][0]
                     for part in self.isotropic)

    def flops_per_pair(self) -> int:
        """Floating-point operations per target-source pair of a pairwise kernel, counted from
        the expressions: each addition, multiplication, division, power and function call (a
        ``sqrt`` counts 1, however many cycles it takes) on values that depend on the offset,
        each distinct subexpression once over all entries, plus 3 for the offset and 2 per
        entry for multiplying by the strength and adding into the sum. Comparisons and
        selections are not counted. The roofline of ``fmmloopy bench`` uses it; for the
        Laplace potential it is 13, and 13 + 2 (k - 1) over ``k`` :attr:`vectors` (the zero
        entries between vectors are not computed)."""
        return pair_flops(self)


def _laplace_3d() -> GreenKernel:
    inverse_r = 1 / var("sqrt")(offset_length_squared())
    return GreenKernel(name="laplace", expression=guarded(inverse_r * (1 / (4 * math.pi))),
                       homogeneity=-1.0)


#: ``1 / (4 pi |d|)``, and exactly 0 at ``d == 0``.
LAPLACE_3D = _laplace_3d()


def yukawa(kappa: float) -> GreenKernel:
    """The Yukawa (modified Helmholtz, screened Coulomb) kernel ``exp(-kappa |d|) / (4 pi |d|)``,
    the fundamental solution of ``-Laplacian u + kappa**2 u = delta`` (``kappa >= 0``; 0 is
    Laplace's). Not homogeneous: its operators are computed per level."""
    if not (isinstance(kappa, Real) and not isinstance(kappa, bool) and 0 <= kappa < math.inf):
        raise ValueError(f"yukawa: kappa must be a finite real number >= 0, not {kappa!r}")
    r = var("sqrt")(offset_length_squared())
    decay = var("exp")(-var("kappa") * r)
    return GreenKernel(name="yukawa", expression=guarded(decay * (1 / r) * (1 / (4 * math.pi))),
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
    r = var("sqrt")(offset_length_squared())
    wave = var("exp")(1j * var("k") * r)
    return GreenKernel(name="helmholtz", expression=guarded(wave * (1 / r) * (1 / (4 * math.pi))),
                       parameters={"k": k}, wavenumber="k")


def stokes(mu: float = 1.0) -> GreenKernel:
    """The Stokeslet ``(I / r + d d^T / r^3) / (8 pi mu)`` of viscosity ``mu``, with its
    pressure (:func:`~fmmloopy.maths.flow_kernels.stokeslet_fields`)."""
    return GreenKernel(**flow_kernels.stokeslet_fields(mu))


def rpy(mu: float = 1.0, radius: float = 1.0) -> GreenKernel:
    """The Rotne-Prager-Yamakawa mobility of spheres of ``radius`` in a fluid of viscosity
    ``mu`` (:func:`~fmmloopy.maths.flow_kernels.rpy_fields`)."""
    return GreenKernel(**flow_kernels.rpy_fields(mu, radius))


def regularized_stokes(mu: float = 1.0, epsilon: float = 1.0) -> GreenKernel:
    """Cortez's regularized Stokeslet of blob size ``epsilon`` in a fluid of viscosity ``mu``
    (:func:`~fmmloopy.maths.flow_kernels.regularized_stokeslet_fields`)."""
    return GreenKernel(**flow_kernels.regularized_stokeslet_fields(mu, epsilon))


def stresslet(mu: float = 1.0, with_forces: bool = False) -> GreenKernel:
    """The stresslet (a double layer's kernel), with the Stokeslet's force columns first where
    ``with_forces`` (:func:`~fmmloopy.maths.flow_kernels.stresslet_fields`)."""
    return GreenKernel(**flow_kernels.stresslet_fields(mu, with_forces))


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
    parameters = dict(validate_parameters(parameters or {}))
    if isinstance(expression, str):
        try:
            expression = pymbolic.parse(_IMAGINARY_LITERAL.sub(rf"(\1*{_IMAGINARY_UNIT})",
                                                               expression))
        except Exception as error:  # pymbolic's parser raises several kinds
            raise ValueError(f"kernel {name!r}: cannot parse {expression!r} ({error})"
                             ) from None
    constants = {"r": var("sqrt")(offset_length_squared()), "pi": math.pi,
                 _IMAGINARY_UNIT: 1j}
    expression = substitute(expression, {key: value for key, value in constants.items()
                                         if key not in parameters})
    if not isinstance(expression, prim.If):
        expression = guarded(expression)
    return GreenKernel(name=name, expression=expression, homogeneity=homogeneity,
                       parameters=parameters, wavenumber=wavenumber)


#: Built-in kernels by name: a kernel, or a function of its parameters.
_KERNELS: dict[str, object] = {LAPLACE_3D.name: LAPLACE_3D, "yukawa": yukawa,
                               "helmholtz": helmholtz, "stokes": stokes,
                               "rpy": rpy, "regularized_stokes": regularized_stokes}


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
    parameters = parse_parameters(kernel, arguments)
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
