"""Checks of user input at the public API, with errors that say what is wrong and what to do.

Everything a user hands to :class:`fmmloopy.Fmm` passes through here before any kernel runs:
the kernels are built with ``-cl-fast-relaxed-math``, which assumes finite values, so NaN and inf
must never reach them. Arrays are accepted in any memory layout (non-contiguous, Fortran order,
read-only) and any real dtype; they are converted to C-contiguous float64 copies where needed and
never written to. docs/robustness.md lists every bad input and the message it gets.

"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: The most points the int32 indices of the tree and the lists can number.
MAX_POINTS = 2 ** 31 - 1


def _as_number_array(value, name: str, complex_allowed: bool = False) -> np.ndarray:
    """``np.asarray(value)``, with a clear error for what cannot be an array of real (or, where
    ``complex_allowed``, complex) numbers."""
    numbers = "complex numbers" if complex_allowed else "real numbers"
    if value is None:
        raise ValueError(f"{name} must be an array of {numbers}, got None")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be read as an array of {numbers}: {exc}") from exc
    if array.dtype.kind == "c" and not complex_allowed:
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}; pass the real "
                         "and imaginary parts separately (complex strengths: a complex "
                         "kernel, such as Helmholtz)")
    if array.dtype.kind not in ("fiuc" if complex_allowed else "fiu"):
        raise ValueError(f"{name} must be real numbers (float or integer), got dtype "
                         f"{array.dtype}")
    return array


def _first_bad(values: np.ndarray, name: str, what: str) -> None:
    """A ValueError naming how many rows of ``values`` are not finite, and the first one."""
    bad_rows = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
    first = int(np.argmax(bad_rows))
    raise ValueError(
        f"{name} contain NaN or inf: {int(bad_rows.sum())} of {len(values)} {what} "
        f"(the first at index {first}: {values[first]}); the kernels assume finite input "
        "(they are built with -cl-fast-relaxed-math)")


def check_point_array(points, name: str = "sources") -> np.ndarray:
    """``points`` as an array of real numbers of shape ``(N, 3)``, not yet copied or converted
    (so that the memory an FMM needs can be estimated from shapes first), or a ValueError.

    The message of a ``(3, N)`` array (FMM3D's layout) says to transpose it.
    """
    array = _as_number_array(points, name)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), one point per row; got shape "
                         f"{array.shape}{_shape_hint(array.shape, name)}")
    if len(array) > MAX_POINTS:
        raise ValueError(f"{name}: {len(array)} points; at most {MAX_POINTS} (int32 indices)")
    return array


def as_float64_points(array: np.ndarray, name: str = "sources") -> np.ndarray:
    """A checked ``(N, 3)`` array (:func:`check_point_array`) as C-contiguous float64 (a copy
    only where it is not already), or a ValueError naming the first point that is not finite."""
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        _first_bad(array, name, "points")
    return array


def validate_points(points, name: str = "sources") -> np.ndarray:
    """``points`` as a C-contiguous float64 ``(N, 3)`` array (N may be 0), or a ValueError."""
    return as_float64_points(check_point_array(points, name), name)


def _shape_hint(shape: tuple[int, ...], name: str) -> str:
    if len(shape) == 2 and shape[0] == 3:
        return (f"; this looks like the (3, N) layout of FMM3D: pass {name}.T (the toolkit "
                "takes (N, 3))")
    if len(shape) == 2 and shape[1] == 2:
        return "; points are 3-D: add a z coordinate"
    if shape == (3,):
        return f"; a single point is {name}.reshape(1, 3)"
    if len(shape) == 1 and shape[0] % 3 == 0:
        return f"; if it holds x, y, z of each point in turn, pass {name}.reshape(-1, 3)"
    return ""


def validate_charges(charges, nsources: int, complex_allowed: bool = False,
                     vectors_allowed: bool = False) -> np.ndarray:
    """``charges`` as float64 (complex128 where ``complex_allowed``: a complex kernel's) of
    shape ``(nsources,)`` or, where ``vectors_allowed``, ``(nsources, k)`` (``k >= 1`` charge
    vectors, one per column), or a ValueError that says what is wrong."""
    array = _as_number_array(charges, "charges", complex_allowed)
    batched = vectors_allowed and array.ndim == 2 and array.shape[0] == nsources
    if batched and array.shape[1] == 0:
        raise ValueError(f"charges of shape {array.shape} hold no charge vector (give at "
                         "least one column)")
    if array.shape != (nsources,) and not batched:
        shapes = f"({nsources},) or ({nsources}, k)" if vectors_allowed else f"({nsources},)"
        hint = ""
        if vectors_allowed and array.ndim == 2 and array.shape[1] == nsources:
            hint = "; pass charges.T (one row per source, one column per vector)"
        elif array.size == nsources and array.ndim > 1:
            hint = "; pass charges.ravel()"
        elif array.ndim == 1:
            hint = f": {len(array)} charges for {nsources} sources"
        raise ValueError(f"charges must have shape {shapes}, one row per source; "
                         f"got {array.shape}{hint}")
    return _finite_values(array, "charges", "charges", complex_allowed)


def validate_tensor_strengths(values, nsources: int, shape: tuple[int, ...], name: str,
                              complex_allowed: bool = False) -> tuple[np.ndarray, bool]:
    """A tensor kernel's strengths (``name``: forces, force dipoles): float64 (complex128
    where ``complex_allowed``) of shape ``(nsources, *shape)``, or ``(nsources, *shape, k)``
    for ``k >= 1`` strength vectors; with whether they came as vectors, or a ValueError that
    says what is wrong."""
    array = _as_number_array(values, name, complex_allowed)
    expected = (nsources, *shape)
    batched = array.ndim == len(expected) + 1 and array.shape[:-1] == expected
    if batched and array.shape[-1] == 0:
        raise ValueError(f"{name} of shape {array.shape} hold no strength vector (give at "
                         "least one)")
    if array.shape != expected and not batched:
        hint = ""
        if array.shape[::-1] == expected:
            hint = "; pass the transpose (one row per source)"
        raise ValueError(f"{name} must have shape {expected} or {(*expected, 'k')}, one row "
                         f"per source; got {array.shape}{hint}")
    return _finite_values(array, name, name, complex_allowed), batched


def _finite_values(array: np.ndarray, name: str, what: str,
                    complex_values: bool = False) -> np.ndarray:
    """``array`` as float64 (complex128 with ``complex_values``), or a ValueError naming its
    first value that is not finite."""
    array = array.astype(np.complex128 if complex_values else np.float64, copy=False)
    if not np.isfinite(array).all():
        _first_bad(array, name, what)
    return array


def validate_dipoles(dipoles, nsources: int, complex_allowed: bool = False,
                     vectors_allowed: bool = False) -> np.ndarray:
    """``dipoles`` (one moment vector per source) as float64 (complex128 where
    ``complex_allowed``) of shape ``(nsources, 3)`` or, where ``vectors_allowed``,
    ``(nsources, 3, k)`` (``k >= 1`` strength vectors), or a ValueError that says what is
    wrong."""
    array = _as_number_array(dipoles, "dipoles", complex_allowed)
    batched = vectors_allowed and array.ndim == 3 and array.shape[:2] == (nsources, 3)
    if batched and array.shape[2] == 0:
        raise ValueError(f"dipoles of shape {array.shape} hold no strength vector")
    if array.shape != (nsources, 3) and not batched:
        hint = "; pass dipoles.T (one row per source)" if array.shape == (3, nsources) else ""
        shapes = f"({nsources}, 3)" + (f" or ({nsources}, 3, k)" if vectors_allowed else "")
        raise ValueError(f"dipoles must have shape {shapes}, one moment vector per "
                         f"source; got {array.shape}{hint}")
    return _finite_values(array, "dipoles", "dipole moments", complex_allowed)


def validate_integer(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound if ``high`` is None)."""
    ok = (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
          and value >= low and (high is None or value <= high))
    if not ok:
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def validate_flag(value, name: str) -> bool:
    """``value`` as a bool; only True or False are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def validate_recipes(recipes, operators) -> str | Mapping[str, str] | None:
    """``recipes`` as :class:`fmmloopy.Fmm` takes them: None, a name, or operator -> name."""
    if recipes is None or isinstance(recipes, str):
        return recipes
    if not isinstance(recipes, Mapping):
        raise ValueError("recipes must be a recipe name or a mapping operator -> recipe name, "
                         f"got {type(recipes).__name__}")
    unknown = sorted(str(op) for op in recipes if op not in operators)
    if unknown:
        raise ValueError(f"recipes: unknown operator(s) {unknown}; operators: "
                         f"{', '.join(sorted(operators))}")
    bad = {op: name for op, name in recipes.items() if not isinstance(name, str)}
    if bad:
        raise ValueError(f"recipes: recipe names must be strings, got {bad}")
    return recipes


def validate_memory_limit(memory_limit) -> float | None:
    """``memory_limit`` in bytes (a positive number) or None."""
    if memory_limit is None:
        return None
    if (isinstance(memory_limit, (bool, np.bool_))
            or not isinstance(memory_limit, (int, float, np.integer, np.floating))
            or not np.isfinite(memory_limit) or memory_limit <= 0):
        raise ValueError(f"memory_limit must be a positive number of bytes, got "
                         f"{memory_limit!r}")
    return float(memory_limit)
