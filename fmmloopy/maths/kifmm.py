"""The KIFMM as data: each step of the method, the operator it runs and the facts it needs.

A :class:`KifmmStep` is one use of an operator (:mod:`fmmloopy.maths.operators`) in the
kernel-independent FMM (Ying, Biros, Zorin 2004): the expansion it reads and the one it adds
into, the surface a pairwise operator sums on, the precomputed matrices a matvec operator
applies (in turn, through a buffer of the rank of the first: the check-to-equivalent maps are two
factors, :mod:`fmmloopy.maths.precompute`) and how those matrices scale with the level. The
driver (:mod:`fmmloopy.driver`) only orders the steps over the tree's boxes and moves buffers.

Expansions (per box, ``n_e`` values): ``check_up`` -> ``multipole`` (upward equivalent density)
and ``check_down`` -> ``local`` (downward equivalent density); ``multipole_<class>`` and
``check_down_<class>`` hold the compressed M2L's ``k`` coefficients per box and transfer-vector
class (the matrices size every buffer: :func:`buffer_widths`); ``strengths`` are the charges and
``potential`` the result, one value per point. Each step also says which boxes it serves
(:class:`Boxes`); :data:`STEPS` lists the steps in an order that respects their dependencies, so
that a new step (a gradient evaluation, say) is a new entry here and a recipe, not a driver
change.

Level scaling. For a kernel of homogeneity ``d`` (``K(h x, h y) = h**d K(x, y)``) the kernel
matrix between the surfaces of a box of half-width ``h`` is ``h**d`` times the one for half-width
1, and its truncated pseudo-inverse ``h**-d`` times (``rcond`` is relative, so the same singular
values are kept). Hence the check-to-equivalent maps scale by ``h**-d``, M2L by ``h**d`` and
M2M/L2L (a pseudo-inverse times a kernel matrix of the same scale) not at all: each step's
:attr:`KifmmStep.level_exponent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.geometry import M2L_CLASSES
from fmmloopy.maths.green import GreenKernel

#: Expansions exist from this level down: V and X lists are empty above it (the boxes of levels
#: 0 and 1 are all adjacent to each other).
FIRST_EXPANSION_LEVEL = 2

#: Per-point buffers: the charges (one per source) and the potential (one per target); with
#: dipoles or a gradient, ``(components, points)`` (the user's fields, :func:`step_kernel`).
STRENGTHS, POTENTIAL = "strengths", "potential"
POINT_BUFFERS = (STRENGTHS, POTENTIAL)
#: The expansions, per box: the upward check potential and equivalent density (multipole),
#: the downward check potential and equivalent density (local).
CHECK_UP, MULTIPOLE, CHECK_DOWN, LOCAL = "check_up", "multipole", "check_down", "local"


@dataclass(frozen=True)
class Boxes:
    """Which boxes a step serves: those holding any ``side`` ("sources" or "targets"), of
    level at least ``min_level``, only leaves (True) or only non-leaves (False) or either
    (None), only those with a non-empty row of list ``listed``, only those some row of list
    ``source_in`` holds; with ``per_level``, one launch per level, ``"up"`` finest level first
    (children before parents), ``"down"`` coarsest first. Lists are named as
    :func:`fmmloopy.execution.kernel_arguments.box_list` names them (``v_<class>``: the V
    entries of one transfer-vector class). The driver evaluates it on the tree."""

    side: str
    min_level: int = 0
    leaves: bool | None = None
    listed: str | None = None
    per_level: str | None = None
    source_in: str | None = None

    def __post_init__(self) -> None:
        if self.side not in ("sources", "targets") or self.per_level not in (None, "up", "down"):
            raise ValueError(f"bad box selection {self!r}")


@dataclass(frozen=True)
class KifmmStep:
    """One step of the KIFMM: ``operator`` from expansion ``source`` into ``target``."""

    name: str
    #: The operator (:data:`fmmloopy.maths.operators.OPERATORS`) the step launches; its time
    #: and work are reported under this name.
    operator: str
    source: str
    target: str
    #: The boxes its launches serve (their targets).
    boxes: Boxes
    #: Pairwise operators with a surface side: ``{"target_surface" or "source_surface": surface
    #: name}`` (:data:`fmmloopy.maths.expansion.SURFACE_RADII`).
    surfaces: tuple[tuple[str, str], ...] = ()
    #: Matvec operators: fields of :class:`~fmmloopy.maths.precompute.KifmmOperators`, applied
    #: in turn (the first to ``source``, the last into ``target``).
    matrices: tuple[str, ...] = ()
    #: Exponent of the box half-width, in units of the kernel's homogeneity, that scales the
    #: first matrix (module docstring).
    level_exponent: int = 0
    #: The box list its launches walk where it is not the operator's own: ``v_<class>``, the V
    #: entries of one transfer-vector class (:data:`~fmmloopy.maths.geometry.M2L_CLASSES`).
    box_list: str | None = None
    #: Where a kernel without homogeneity has operators per level: the level of the set that
    #: holds this step's matrices, relative to the target box's (L2L's are its parent's: a set
    #: holds the translations from its box to the box's children).
    operators_level: int = 0

    def level_scales(self, homogeneity: float | None, half_widths: np.ndarray) -> np.ndarray:
        """Factors multiplying the half-width-1 matrices for boxes of ``half_widths`` (one per
        level); ValueError for a kernel without homogeneity (its operators depend on the
        level)."""
        if homogeneity is None:
            raise ValueError(
                f"step {self.name!r}: the kernel is not homogeneous, so its operators depend on "
                "the level and cannot be scaled from one precomputed set")
        return np.asarray(half_widths, dtype=np.float64) ** (self.level_exponent * homogeneity)

    def between(self, index: int) -> str:
        """The buffer between factor ``index`` and the next (a matvec step of several
        matrices): ``<source>_rank``."""
        return f"{self.source}_rank{'' if index == 0 else index}"

    def chain(self) -> list[tuple[str, str, str]]:
        """``(matrix field, input buffer, output buffer)`` for each matrix, in order."""
        names = [self.source, *(self.between(i) for i in range(len(self.matrices) - 1)),
                 self.target]
        return [(field, names[i], names[i + 1]) for i, field in enumerate(self.matrices)]


def _compressed_m2l_steps() -> tuple[KifmmStep, ...]:
    """Compress, M2L over the class's V entries, expand: for each transfer-vector class, only
    the boxes that class's V entries use (a box on a surface has few V entries in the
    direction of its normal, say)."""
    steps = []
    for name in M2L_CLASSES:
        compressed, summed, entries = f"{MULTIPOLE}_{name}", f"{CHECK_DOWN}_{name}", f"v_{name}"
        steps += [
            KifmmStep(f"m2l_{name}_compress", "m2l_compress", MULTIPOLE, compressed,
                      Boxes("sources", min_level=FIRST_EXPANSION_LEVEL, source_in=entries),
                      matrices=(f"m2l_{name}_compress",)),
            KifmmStep(f"m2l_{name}", "m2l", compressed, summed, Boxes("targets", listed=entries),
                      matrices=(f"m2l_{name}_core",), level_exponent=1, box_list=entries),
            KifmmStep(f"m2l_{name}_expand", "m2l_expand", summed, CHECK_DOWN,
                      Boxes("targets", listed=entries), matrices=(f"m2l_{name}_expand",)),
        ]
    return tuple(steps)


_EXPANDED = FIRST_EXPANSION_LEVEL

#: The upward pass: multipoles of the boxes with sources, leaves first, then parents bottom up.
UPWARD_STEPS = (
    KifmmStep("p2m", "p2m", STRENGTHS, CHECK_UP,
              Boxes("sources", min_level=_EXPANDED, leaves=True),
              surfaces=(("target_surface", "upward_check"),)),
    KifmmStep("uc2e", "c2e", CHECK_UP, MULTIPOLE,
              Boxes("sources", min_level=_EXPANDED, leaves=True),
              matrices=("uc2e_first", "uc2e_second"), level_exponent=-1),
    KifmmStep("m2m", "m2m", MULTIPOLE, MULTIPOLE,
              Boxes("sources", min_level=_EXPANDED, leaves=False, per_level="up"),
              matrices=("m2m",)),
)
#: The downward pass: locals of the boxes with targets, then children top down. M2L,
#: SVD-compressed per transfer-vector class (m2l_compression.m2l_bases): multipoles into the
#: class's basis once per source box, the k x k cores over the class's part of the V list,
#: the sums expanded once per target box.
DOWNWARD_STEPS = (
    *_compressed_m2l_steps(),
    KifmmStep("p2l", "p2l", STRENGTHS, CHECK_DOWN, Boxes("targets", listed="x"),
              surfaces=(("target_surface", "downward_check"),)),
    KifmmStep("dc2e", "c2e", CHECK_DOWN, LOCAL, Boxes("targets", min_level=_EXPANDED),
              matrices=("dc2e_first", "dc2e_second"), level_exponent=-1),
    KifmmStep("l2l", "l2l", LOCAL, LOCAL,
              Boxes("targets", min_level=_EXPANDED + 1, per_level="down"), matrices=("l2l",),
              operators_level=-1),
)
#: The leaves: potentials at the targets, from the locals, the W list's multipoles and the
#: near field.
LEAF_STEPS = (
    KifmmStep("l2p", "l2p", LOCAL, POTENTIAL,
              Boxes("targets", min_level=_EXPANDED, leaves=True),
              surfaces=(("source_surface", "downward_equivalent"),)),
    KifmmStep("m2p", "m2p", MULTIPOLE, POTENTIAL, Boxes("targets", leaves=True, listed="w"),
              surfaces=(("source_surface", "upward_equivalent"),)),
    KifmmStep("p2p", "p2p", STRENGTHS, POTENTIAL, Boxes("targets", leaves=True)),
)


def step_kernel(step: KifmmStep, green: GreenKernel) -> GreenKernel:
    """The kernel ``step`` sums with when the user asks ``green``'s outputs from its inputs:
    a step that reads the user's strengths takes their fields (charges, dipoles), a step that
    writes the potentials produces the user's outputs (a gradient); the expansions between are
    the potentials of equivalent charges, whatever the user's fields (the far field does not
    change)."""
    return green.with_fields(
        green.outputs if step.target == POTENTIAL else ("potential",),
        green.inputs if step.source == STRENGTHS else ("charge",))


#: Strength vectors of the batched kernel ``fmmloopy check`` runs every operator for (odd, so
#: that no vector width divides the components).
CHECKED_VECTORS = 3
