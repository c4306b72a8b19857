"""Strengths in, results out: the checks and shapes of what an FMM or a direct sum takes and
returns, and the exact power-of-two scalings between the user's units and the working ones (the
points scaled by ``2**-coordinate_exponent``, the strengths by a power of two that keeps the
kernels' sums inside the precision's range)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.base.validation import (
    validate_charges,
    validate_dipoles,
    validate_flag,
    validate_tensor_strengths,
)
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.harmonic import check_split_fields, layered_kernel


def _ldexp(values: np.ndarray, exponents) -> np.ndarray:
    """``values * 2**exponents``, exact; complex values part by part."""
    if np.iscomplexobj(values):
        return np.ldexp(values.real, exponents) + 1j * np.ldexp(values.imag, exponents)
    return np.ldexp(values, exponents)


class Fields(NamedTuple):
    """What :meth:`Fmm.__call__` returns with ``gradient=True``."""

    #: ``(M,)``: the potential at each target.
    potential: np.ndarray
    #: ``(M, 3)``: its gradient at each target.
    gradient: np.ndarray


class HessianFields(NamedTuple):
    """What :meth:`Fmm.__call__` returns with ``hessian=True`` (a scalar kernel)."""

    #: ``(M,)``: the potential at each target (``(M, k)`` for several strength vectors).
    potential: np.ndarray
    #: ``(M, 3)`` (``(M, 3, k)``): its gradient, or None where ``gradient`` was not asked for.
    gradient: np.ndarray | None
    #: ``(M, 3, 3)`` (``(M, 3, 3, k)``): its Hessian, ``d^2 u / d x_i d x_j`` at
    #: ``[:, i, j]``, the full symmetric matrix.
    hessian: np.ndarray


#: Where each entry of the full 3 x 3 Hessian is among the six computed (``xx, xy, xz, yy,
#: yz, zz``, :data:`fmmloopy.maths.green.TARGET_FIELDS`).
HESSIAN_ENTRIES = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])


class Flow(NamedTuple):
    """What :meth:`Fmm.__call__` returns for a tensor kernel (Stokes) asked for more than its
    potential (the velocity): the fields not asked for are None."""

    #: ``(M, 3)``: the velocity at each target (with several strength vectors ``(M, 3, k)``).
    velocity: np.ndarray
    #: ``(M, 3, 3)``: ``d u_a / d x_j`` at ``[:, a, j]`` (``(M, 3, 3, k)``), or None.
    gradient: np.ndarray | None
    #: ``(M,)``: the pressure (``(M, k)``), or None.
    pressure: np.ndarray | None


def checked_strengths(green: GreenKernel, nsources: int, charges, dipoles, gradient,
                      pressure=False, stresslets=None, hessian=False
                      ) -> tuple[np.ndarray, GreenKernel, bool]:
    """A call's ``charges`` and/or ``dipoles`` checked and stacked, ``(n_inputs, nsources)``
    (over ``k`` strength vectors: each vector's components in turn,
    :attr:`~fmmloopy.maths.green.GreenKernel.vectors`), ``green`` with the call's fields and
    vectors (:meth:`Fmm.fields_kernel`), and whether the strengths came as columns of vectors
    (``(N, k)``, ``(N, 3, k)``: the results are then shaped so too). ``hessian``: the
    Hessian too, a scalar kernel's."""
    if charges is None and dipoles is None and stresslets is None:
        raise ValueError("charges must be an array of real numbers, got None (give "
                         "charges, dipoles=... or both)")
    if stresslets is not None and not green.is_tensor:
        raise ValueError(f"stresslets are a Stokes flow's (kernel='stokes'), not kernel "
                         f"{green.spec!r}'s")
    gradient = validate_flag(gradient, "gradient")
    if validate_flag(pressure, "pressure") and "pressure" not in green.field_names:
        raise ValueError(f"kernel {green.spec!r} has no pressure (Stokes has: "
                         "kernel='stokes')")
    hessian = validate_flag(hessian, "hessian")
    if hessian and green.is_tensor:
        raise ValueError(f"hessian=True is a scalar kernel's (Laplace, Yukawa, Helmholtz, a "
                         f"user's); kernel {green.spec!r} gives gradient=True")
    if green.is_tensor:
        strengths, kernel, batched = _tensor_strengths(green, nsources, charges, dipoles,
                                                       gradient, pressure, stresslets)
        check_split_fields(kernel)
        return strengths, kernel, batched
    parts, batched = [], []
    if charges is not None:
        values = validate_charges(charges, nsources, green.is_complex, vectors_allowed=True)
        batched.append(values.ndim == 2)
        vectors = values.shape[1] if values.ndim == 2 else 1
        parts.append(values.reshape((nsources, 1, vectors)).transpose(2, 1, 0))
    if dipoles is not None:
        values = validate_dipoles(dipoles, nsources, green.is_complex, vectors_allowed=True)
        batched.append(values.ndim == 3)
        vectors = values.shape[2] if values.ndim == 3 else 1
        parts.append(values.reshape((nsources, 3, vectors)).transpose(2, 1, 0))
    return _stacked(green, nsources, parts, batched, (charges, dipoles), gradient, False,
                    "shapes (N, k) and (N, 3, k)", hessian)


def _stacked(green: GreenKernel, nsources: int, parts: list, batched: list, given: tuple,
             gradient: bool, pressure: bool, shapes: str, hessian: bool = False
             ) -> tuple[np.ndarray, GreenKernel, bool]:
    """The end of :func:`checked_strengths`: the parts ``(vectors, components, N)`` of the
    ``given`` charges and dipoles (each None or an array) as one array, the kernel with the
    call's fields and vectors, whether they came as vectors; ValueError where charges and
    dipoles hold different numbers of vectors (``shapes``: the shapes that would)."""
    charges, dipoles = given
    if len(parts) == 2 and (batched[0] != batched[1] or len(parts[0]) != len(parts[1])):
        raise ValueError(f"charges and dipoles must hold as many strength vectors: charges "
                         f"{np.shape(charges) if batched[0] else 'one'}, dipoles "
                         f"{np.shape(dipoles) if batched[1] else 'one'} ({shapes})")
    kernel = green.with_fields(("potential",) + ("gradient",) * gradient
                               + ("hessian",) * hessian + ("pressure",) * pressure,
                               ("charge",) * (charges is not None)
                               + ("dipole",) * (dipoles is not None)).with_vectors(len(parts[0]))
    strengths = np.concatenate(parts, axis=1).reshape((kernel.n_inputs, nsources))
    return strengths, kernel, batched[0]


def _tensor_strengths(green: GreenKernel, nsources: int, charges, dipoles, gradient: bool,
                      pressure: bool, stresslets) -> tuple[np.ndarray, GreenKernel, bool]:
    """:func:`checked_strengths` for a tensor kernel: ``charges`` ``(N, k)`` (forces, say),
    ``dipoles`` ``(N, k, 3)`` (force dipoles: component ``b`` along axis ``l``), each with a
    last axis of strength vectors where there are several; Stokes' ``stresslets``
    (:func:`_stresslet_part`) as columns of the kernel beside the forces
    (:func:`~fmmloopy.maths.harmonic.layered_kernel`)."""
    k = green.base_shape[1]
    parts, batched = [], []
    for values, shape, name in ((charges, (k,), "charges"), (dipoles, (k, 3), "dipoles")):
        if values is None:
            continue
        array, vectors_given = validate_tensor_strengths(values, nsources, shape, name,
                                                         green.is_complex)
        batched.append(vectors_given)
        per_source = int(np.prod(shape))
        parts.append(array.reshape((nsources, per_source, -1)).transpose(2, 1, 0))
    if stresslets is None:
        return _stacked(green, nsources, parts, batched, (charges, dipoles), gradient,
                        pressure, f"shapes (N, {k}, k) and (N, {k}, 3, k)")
    if dipoles is not None:
        raise ValueError("force dipoles and stresslets in one call are not summed together: "
                         "give them in two calls and add the results")
    part, vectors_given = _stresslet_part(stresslets, nsources)
    if parts and (batched[0] != vectors_given or len(parts[0]) != len(part)):
        raise ValueError(f"forces and stresslets must hold as many strength vectors: forces "
                         f"{np.shape(charges)}, stresslet strengths "
                         f"{np.shape(stresslets[0])} (shapes (N, 3, k) for both)")
    layered = layered_kernel(green, charges is not None, True)
    return _stacked(layered, nsources, [*parts, part], [*batched, vectors_given], (True, None),
                    gradient, pressure, "")


def _stresslet_part(stresslets, nsources: int) -> tuple[np.ndarray, bool]:
    """Stresslets ``(q, n)``, strengths ``(N, 3)`` (or ``(N, 3, k)``) and orientations
    ``(N, 3)`` (a double layer's density and the surface's normals), as the stress ``S = q
    n^T`` of each vector ``(k, 9, N)`` (``S[j, l]`` at ``3 j + l``), and whether they came
    as vectors."""
    if not isinstance(stresslets, tuple | list) or len(stresslets) != 2:
        raise ValueError("stresslets must be a pair (strengths (N, 3), orientations (N, 3)): a "
                         "double layer's density and the normals")
    strengths, vectors_given = validate_tensor_strengths(stresslets[0], nsources, (3,),
                                                         "stresslet strengths")
    orientations, _ = validate_tensor_strengths(stresslets[1], nsources, (3,),
                                                "stresslet orientations")
    if orientations.ndim != 2:
        raise ValueError(f"stresslet orientations must have shape {(nsources, 3)} (one per "
                         f"source, shared by every strength vector), not {orientations.shape}")
    strengths = strengths.reshape((nsources, 3, -1))
    stress = np.einsum("njv,nl->vjln", strengths, orientations)
    return stress.reshape((stress.shape[0], 9, nsources)), vectors_given


def _shaped_tensor_results(outputs: np.ndarray, kernel: GreenKernel, batched: bool):
    """:func:`shaped_results` for a tensor kernel of ``m`` target components: ``(M, m)``, or
    with a gradient (``(M, m, 3)``, ``d u_a / d x_j`` at ``[:, a, j]``) or a pressure
    (``(M,)``) a :class:`Flow`; with a last axis of vectors where the strengths had one."""
    m = kernel.base_shape[0]
    per_vector = outputs.reshape((kernel.vectors, kernel.n_outputs // kernel.vectors, -1))
    values = per_vector.transpose(2, 1, 0)  # (M, components, vectors)

    def part(first: int, shape: tuple[int, ...]) -> np.ndarray:
        block = values[:, first:first + int(np.prod(shape))].reshape(
            (values.shape[0], *shape, kernel.vectors))
        return np.ascontiguousarray(block if batched else block[..., 0])
    velocity = part(0, (m,))
    if kernel.outputs == ("potential",):
        return velocity
    gradient = part(m, (m, 3)) if "gradient" in kernel.outputs else None
    pressure = part(per_vector.shape[1] - 1, ()) if "pressure" in kernel.outputs else None
    return Flow(velocity, gradient, pressure)


def shaped_results(outputs: np.ndarray, kernel: GreenKernel, batched: bool):
    """A call's results from ``outputs`` ``(n_outputs, M)`` of ``kernel``: potentials ``(M,)``
    or, with a gradient, :class:`Fields` (``(M, 3)``), with a Hessian :class:`HessianFields`;
    for strengths given as columns (``batched``), potentials ``(M, k)`` and gradients
    ``(M, 3, k)``."""
    if kernel.is_tensor:
        return _shaped_tensor_results(outputs, kernel, batched)
    per_vector = outputs.reshape((kernel.vectors, kernel.n_outputs // kernel.vectors, -1))
    if "hessian" in kernel.outputs:
        return _with_hessian(per_vector, "gradient" in kernel.outputs, batched)
    gradient = per_vector.shape[1] > 1
    if not batched:
        return Fields(per_vector[0, 0], np.ascontiguousarray(per_vector[0, 1:].T)) \
            if gradient else per_vector[0, 0]
    potential = np.ascontiguousarray(per_vector[:, 0].T)
    if not gradient:
        return potential
    return Fields(potential, np.ascontiguousarray(per_vector[:, 1:].transpose(2, 1, 0)))


def _with_hessian(per_vector: np.ndarray, gradient: bool, batched: bool) -> HessianFields:
    """:func:`shaped_results` of a scalar kernel's potential, gradient (where asked for) and
    Hessian, ``per_vector`` ``(k, 1 [+ 3] + 6, M)``."""
    values = per_vector.transpose(2, 1, 0)  # (M, components, vectors)
    potential = values[:, 0]
    derivatives = values[:, 1:4] if gradient else None
    six = values[:, 4:] if gradient else values[:, 1:]
    hessian = six[:, HESSIAN_ENTRIES]  # (M, 3, 3, vectors)
    if not batched:
        potential, hessian = potential[:, 0], hessian[..., 0]
        derivatives = None if derivatives is None else derivatives[..., 0]
    return HessianFields(np.ascontiguousarray(potential),
                         None if derivatives is None else np.ascontiguousarray(derivatives),
                         np.ascontiguousarray(hessian))


def summed_in_user_units(strengths: np.ndarray, kernel: GreenKernel, coordinate_exponent: int,
                         evaluate, precision: Precision = FLOAT64) -> np.ndarray:
    """``evaluate``'s outputs ``(n_outputs, M)`` for ``strengths`` ``(n_inputs, N)`` taken to
    working units (:func:`working_strengths`), back in user units (:func:`to_user_units`, in
    float64) and in ``precision``; OverflowError where they do not fit
    (:func:`overflow_message`), and for float32 ValueError where results lose their digits to
    float32's subnormals (:func:`in_precision`)."""
    largest = (np.abs(strengths).max(axis=1) if np.iscomplexobj(strengths)  # no |.| array
               else np.maximum(strengths.max(axis=1), -strengths.min(axis=1)))
    scaled, charge_exponents = working_strengths(strengths, kernel, largest, coordinate_exponent,
                                                 precision.safe_exponent)
    outputs = np.atleast_2d(evaluate(scaled))
    if precision != FLOAT64:
        outputs = outputs.astype(kernel.value_dtype())
    to_user_units(outputs, kernel, charge_exponents, coordinate_exponent)
    overflow = overflow_message(outputs, kernel, float(largest.max()))
    if overflow:
        raise OverflowError(overflow)
    return outputs if precision == FLOAT64 else in_precision(outputs, kernel, precision,
                                                             float(largest.max()))


def in_precision(outputs: np.ndarray, kernel: GreenKernel, precision: Precision,
                 largest: float) -> np.ndarray:
    """float64 ``outputs`` ``(n_outputs, M)`` (user units) rounded to ``precision``:
    OverflowError where one does not fit it, ValueError where a result that is not negligible
    beside the largest of its row (more than the unit round-off times it) falls below the
    smallest normal number, where it would keep fewer digits than the rest."""
    with np.errstate(over="ignore"):
        rounded = outputs.astype(kernel.value_dtype(precision.dtype))
    overflow = overflow_message(rounded, kernel, largest, precision)
    if overflow:
        raise OverflowError(overflow)
    magnitude = np.abs(outputs)
    row_largest = magnitude.max(axis=1, keepdims=True)
    lost = (magnitude < precision.smallest_normal) \
        & (magnitude > precision.unit_roundoff * row_largest)
    if lost.any():
        raise ValueError(
            f"{int(lost.any(axis=0).sum())} of {outputs.shape[1]} results are below "
            f"{precision.name}'s smallest normal number ({precision.smallest_normal:.3g}; "
            f"largest |result| {float(row_largest.max()):.3g}, largest |strength| "
            f"{largest:.3g}) and would lose digits; scale the strengths up and the results "
            "down by the same factor, or use float64")
    return rounded


def working_strengths(strengths: np.ndarray, kernel: GreenKernel, largest: np.ndarray,
                      coordinate_exponent: int, safe_exponent: int = FLOAT64.safe_exponent
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``strengths`` (``(n_inputs, N)``) in working units, and the power of two each strength
    vector was divided by (``(vectors,)``); ``largest``: the largest magnitude of each row
    (over every rank's); vectors whose largest lies outside ``2**±safe_exponent`` are scaled
    (the precision's, :attr:`~fmmloopy.base.precision.Precision.safe_exponent`)."""
    # Derivatives in the working coordinates: x = 2**k x' scales each derivative by 2**-k,
    # so dipole moments are taken to working units here and gradients back below. Then
    # strengths far from 1 are scaled by a power of two: the kernels see no denormals.
    # Both are powers of two, applied at once (exact). Each vector gets its own power, so
    # that vectors of very different sizes keep every digit.
    input_shifts = -coordinate_exponent * kernel.input_derivatives()
    per_vector = kernel.n_inputs // kernel.vectors
    charge_exponents = np.array([
        _strength_exponent(largest[rows], input_shifts[rows], safe_exponent) for rows in (
            slice(v * per_vector, (v + 1) * per_vector) for v in range(kernel.vectors))])
    shifts = input_shifts - np.repeat(charge_exponents, per_vector)
    if not shifts.any():  # the common case: strengths already in working units
        return strengths, charge_exponents
    return _ldexp(strengths, shifts[:, None]), charge_exponents


def to_user_units(outputs: np.ndarray, kernel: GreenKernel, charge_exponents,
                  coordinate_exponent: int) -> None:
    """Outputs (``(n_outputs, M)``, in place) from working to user units
    (``charge_exponents``: per strength vector, from :func:`working_strengths`)."""
    exponents = np.repeat(np.asarray(charge_exponents), kernel.n_outputs // kernel.vectors) + (
        _potential_exponent(kernel, coordinate_exponent)
        - coordinate_exponent * kernel.output_derivatives())
    for row, exponent in zip(outputs, exponents, strict=True):
        if exponent:
            with np.errstate(over="ignore"):
                row[:] = (_ldexp(row, int(exponent)) if float(exponent).is_integer()
                          else row * np.exp2(exponent))


def _potential_exponent(kernel: GreenKernel, coordinate_exponent: int) -> float:
    """``log2`` of the factor that takes potentials from rescaled to user coordinates."""
    if not coordinate_exponent:
        return 0
    # x = 2**k x'  =>  G(x - y) = 2**(k d) G(x' - y') for a kernel of homogeneity d.
    value = coordinate_exponent * kernel.homogeneity
    return round(value) if math.isclose(value, round(value)) else value


def overflow_message(outputs: np.ndarray, kernel: GreenKernel, largest: float,
                     precision: Precision = FLOAT64) -> str | None:
    """What to say where ``outputs`` (``(n_outputs, M)``) hold a non-finite value (None where
    they do not); ``largest``: the largest strength's magnitude."""
    if np.isfinite(outputs).all():
        return None
    bad = int(np.count_nonzero(~np.isfinite(outputs).all(axis=0)))
    return (f"the {'potential overflows' if kernel.n_outputs == 1 else 'outputs overflow'} "
            f"{precision.name} at {bad} of {outputs.shape[1]} targets (largest |strength| "
            f"{largest:.3g}); scale the strengths down and the results up by the same factor")


def _strength_exponent(largest: np.ndarray, shifts: np.ndarray, safe_exponent: int) -> int:
    """The power of two the strengths (rows multiplied by ``2**shifts``; ``largest``: each
    row's largest magnitude) are divided by: 0 while the largest lies in
    ``[2**-safe_exponent, 2**safe_exponent]``, else the one that brings it to [0.5, 1)
    (:func:`~fmmloopy.tree.coordinates.scale_exponent`, per row in log2 so that no shift
    overflows first)."""
    present = largest > 0
    if not present.any():
        return 0
    mantissas, exponents = np.frexp(largest[present])
    exponents = exponents + shifts[present]  # largest of each row: mantissa * 2**exponent
    top = int(np.argmax(exponents + mantissas))
    if abs(exponents[top] + math.log2(mantissas[top])) <= safe_exponent:
        return 0
    return int(exponents[top])
