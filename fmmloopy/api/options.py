"""One checked value of an FMM's options (:class:`FmmOptions`), shared by every shell.

:class:`~fmmloopy.api.fmm.Fmm` and :class:`~fmmloopy.api.distributed.DistributedFmm` take the
same keywords; :func:`checked_options` checks them once, in one order (so that the same bad
input gets the same error from either), and the set-up pipeline
(:mod:`fmmloopy.api.setup`) reads the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from fmmloopy.api.periodic import LATTICE_STEP, PeriodicCell, checked_periodic_options
from fmmloopy.base.precision import FLOAT64, Precision, get_precision
from fmmloopy.base.validation import (
    validate_flag,
    validate_integer,
    validate_memory_limit,
    validate_recipes,
)
from fmmloopy.maths.accuracy import eps_quantities, validate_eps
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.harmonic import harmonic_split
from fmmloopy.maths.operators import OPERATORS
from fmmloopy.maths.scheme import KIFMM, KifmmScheme
from fmmloopy.tree.cost import validate_n_crit
from fmmloopy.tree.octree import MAX_DEPTH_LIMIT

__all__ = ["DEFAULT_ORDER", "DEFAULT_PERIODIC_ORDER", "DEFAULT_PERIODIC_STOKES_ORDER",
           "DEFAULT_STOKES_ORDER", "MAX_ORDER", "MIN_ORDER", "FmmOptions",
           "check_distributed_options", "check_eps_covers", "checked_accuracy", "checked_options",
           "default_order"]

#: Orders (points per surface edge) the toolkit accepts.
MIN_ORDER, MAX_ORDER = 2, 16
#: The order without ``order`` or ``eps``.
DEFAULT_ORDER = 6
#: The order of a Stokes FMM without ``order``: the lowest at which its velocities, their
#: gradients and the pressure all measured within 1e-6 of a direct sum (its far field is
#: Laplace sums, whose gradients and Hessians it takes: docs/kernels.md, "Stokes").
DEFAULT_STOKES_ORDER = 9
#: The order of a periodic FMM without ``order`` or ``eps``: one more than in free space, whose
#: 1e-6 the far images' smooth field (about the potentials' own size) would spend (docs/fmm.md,
#: "Periodic boundaries": the error at each order).
DEFAULT_PERIODIC_ORDER = 7
#: The same for Stokes flow: one more than free space's :data:`DEFAULT_STOKES_ORDER` (order 9
#: measured 1.2e-6 against Hasimoto's sum, 10: 8e-8; docs/kernels.md, "Periodic Stokes").
DEFAULT_PERIODIC_STOKES_ORDER = 10


@dataclass(frozen=True)
class FmmOptions:
    """An FMM's options, checked (:func:`checked_options`). ``order`` is None where ``eps``
    chooses it from the points (:meth:`with_order`); ``device`` None until the shell chooses
    one (:meth:`on`)."""

    kernel: GreenKernel
    order: int | None
    n_crit: int | str
    recipes: str | Mapping[str, str] | None
    max_depth: int
    memory_limit: float | None
    w_x_direct: bool
    verify_recipes: bool
    precision: Precision
    #: The relative L2 error asked for, None where the order was given; ``eps_quantities``:
    #: what it holds for (:func:`~fmmloopy.maths.accuracy.eps_quantities`), empty without it.
    eps: float | None = None
    eps_quantities: tuple[str, ...] = ()
    #: The periodic cell (user coordinates), None in free space.
    periodic: PeriodicCell | None = None
    device: cl.Device | None = None
    #: The method: its steps by pass, the buffers they share, the kernels they ask for
    #: (:class:`~fmmloopy.maths.scheme.KifmmScheme`; a variant of the FMM is another scheme).
    scheme: KifmmScheme = KIFMM

    def with_order(self, order: int) -> FmmOptions:
        return dataclasses.replace(self, order=order)

    def on(self, device: cl.Device) -> FmmOptions:
        return dataclasses.replace(self, device=device)

    def keywords(self) -> dict:
        """The keywords of an :class:`~fmmloopy.api.fmm.Fmm` with these options, at this
        order, in free space (a nested FMM of a crowded leaf)."""
        return dict(kernel=self.kernel, order=self.order, n_crit=self.n_crit,
                    device=self.device, recipes=self.recipes, max_depth=self.max_depth,
                    memory_limit=self.memory_limit, w_x_direct=self.w_x_direct,
                    verify_recipes=self.verify_recipes, dtype=self.precision.dtype)


def default_order(kernel) -> int | None:
    """The order an FMM of ``kernel`` (a name or a kernel) takes when given neither an order
    nor eps: :data:`DEFAULT_STOKES_ORDER` for Stokes flow, else None (:data:`DEFAULT_ORDER`,
    through :func:`checked_accuracy`)."""
    return DEFAULT_STOKES_ORDER if harmonic_split(get_kernel(kernel)) is not None else None


def checked_options(*, kernel: str | GreenKernel = "laplace", order: int | None = None,
                    n_crit: int | str = "auto", recipes=None, max_depth: int = 20,
                    memory_limit: float | None = None, w_x_direct: bool = True,
                    verify_recipes: bool = True, dtype=np.float64, eps: float | None = None,
                    eps_for: str | Iterable[str] = "charges", periodic=None,
                    periodic_axes: str = "xyz") -> FmmOptions:
    """The options of :class:`~fmmloopy.api.fmm.Fmm`'s constructor checked, each bad one a
    ValueError (or TypeError) naming it; the order of a periodic FMM defaults to
    :data:`DEFAULT_PERIODIC_ORDER`. The points and the device are the shell's."""
    if periodic is not None and order is None and eps is None:
        order = (DEFAULT_PERIODIC_ORDER if default_order(kernel) is None
                 else DEFAULT_PERIODIC_STOKES_ORDER)
    if order is None and eps is None:
        order = default_order(kernel)
    order, eps, quantities = checked_accuracy(order, eps, eps_for)
    precision = get_precision(dtype)
    if eps is not None and precision != FLOAT64:
        raise ValueError(f"eps is measured for float64 FMMs; give order= for dtype "
                         f"{precision.name} (docs/fmm.md, 'float32')")
    n_crit = validate_n_crit(n_crit)
    max_depth = validate_integer(max_depth, "max_depth", 0, MAX_DEPTH_LIMIT)
    kernel = get_kernel(kernel).base
    cell = checked_periodic_options(periodic, periodic_axes, kernel, eps, precision, max_depth)
    # A periodic FMM's far lattice is a launch of its own (M2M's kernel, under M2M's recipe
    # unless named).
    recipes = validate_recipes(recipes, [*OPERATORS] + ([LATTICE_STEP] if cell is not None
                                                         else []))
    return FmmOptions(kernel=kernel, order=order, n_crit=n_crit, recipes=recipes,
                      max_depth=max_depth, memory_limit=validate_memory_limit(memory_limit),
                      w_x_direct=validate_flag(w_x_direct, "w_x_direct"),
                      verify_recipes=validate_flag(verify_recipes, "verify_recipes"),
                      precision=precision, eps=eps, eps_quantities=quantities, periodic=cell)


def checked_accuracy(order, eps, eps_for) -> tuple[int | None, float | None, tuple[str, ...]]:
    """``(order, eps, eps_quantities)`` of a constructor's ``order``, ``eps`` and ``eps_for``:
    the order checked (:data:`DEFAULT_ORDER` without either), or None where ``eps`` chooses it
    (with the points); ValueError where both are given or either is bad."""
    if eps is not None and order is not None:
        raise ValueError(f"give order or eps, not both (order={order!r}, eps={eps!r})")
    if eps is not None:
        return None, validate_eps(eps), eps_quantities(eps_for)
    return (validate_integer(DEFAULT_ORDER if order is None else order, "order", MIN_ORDER,
                             MAX_ORDER), None, ())


def check_distributed_options(options: FmmOptions) -> None:
    """What :class:`~fmmloopy.api.distributed.DistributedFmm` refuses of checked options, by
    name: tensor kernels other than Stokes flow, and precisions other than float64."""
    split = harmonic_split(options.kernel)
    if options.kernel.is_tensor and (split is None or split.psi_dipole is not None):
        raise ValueError(f"DistributedFmm sums scalar kernels and Stokes flow; "
                         f"{options.kernel.spec!r}'s exchange is not built (tensor densities, "
                         "the RPY tensor's overlaps or the regularized Stokeslet's blobs "
                         "across ranks): use fmmloopy.Fmm")
    if options.precision != FLOAT64:
        raise ValueError(f"DistributedFmm runs in float64 only, got dtype "
                         f"{options.precision.name} (float32 FMMs: fmmloopy.Fmm)")


def check_eps_covers(fmm, kernel: GreenKernel) -> None:
    """ValueError where a call (``kernel``: its fields) asks ``fmm`` (an
    :class:`~fmmloopy.api.fmm.Fmm` or a :class:`~fmmloopy.api.distributed.DistributedFmm`)
    for a quantity its order was not chosen for (``eps_for``)."""
    if fmm.eps is None:
        return
    # Stokes' pressure is held to the velocity's row: its error measured below the velocity's
    # at every order and point set (docs/kernels.md, "Stokes flow").
    kinds = set(kernel.inputs)
    split = harmonic_split(kernel)
    if split is not None and split.stresslets:  # a stresslet's far field is a force dipole's
        kinds = {"dipole"} | ({"charge"} if split.forces else set())
    asked = {f"{kind} {field}" for kind in kinds for field in kernel.outputs
             if field != "pressure"}
    missing = sorted(asked - set(fmm.eps_quantities))
    if missing:
        both = [quantity.split() for quantity in asked | set(fmm.eps_quantities)]
        words = sorted({kind + "s" for kind, _ in both}
                       | {field for _, field in both if field != "potential"})
        raise ValueError(
            f"this FMM's order ({fmm.order}) was chosen for eps={fmm.eps:g} on "
            f"{', '.join(fmm.eps_quantities)}; this call asks for {', '.join(missing)} too: "
            f"build it with eps_for={tuple(words)!r}")
