"""The precomputed operators an FMM applies at each level of its tree.

A homogeneous kernel (``G(s d) = s**k G(d)``) has one set of matrices, for half-width 1, scaled
by a power of each level's half-width (:meth:`~fmmloopy.maths.kifmm.KifmmStep.level_scales`). A
kernel without homogeneity has a set per level, each computed for its level's half-width or,
for Yukawa and Helmholtz, for half-width 1 at the level's dimensionless parameter
(:mod:`fmmloopy.maths.length_scale`) and then scaled like a homogeneous kernel's; the sets are
padded to common ranks
(:func:`~fmmloopy.maths.precompute.pad_ranks`) and stacked, and a step's matrix index is offset
by the set of its target box's level. Either way the matvec templates run unchanged: a stack of
matrices, an index per list entry and a scale per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.kifmm import KifmmStep
from fmmloopy.maths.precompute import KifmmOperators, pad_ranks


@dataclass(frozen=True, eq=False)
class LevelOperators:
    """The operator sets of an FMM: ``sets[i]`` for the boxes of level ``first_level + i``, or
    a single set scaled from level to level (``scaled``). ``unit_homogeneity``: the sets per
    level are each for half-width 1 (a dimensionless kernel's) and scale by the half-widths'
    power of that degree."""

    sets: tuple[KifmmOperators, ...]
    first_level: int = 0
    scaled: bool = False
    unit_homogeneity: float | None = None
    #: Field -> :meth:`stack` (built on first use).
    _stacks: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.sets:
            raise ValueError("an FMM needs at least one set of operators")
        if self.scaled and (len(self.sets) != 1 or self.sets[0].homogeneity is None):
            raise ValueError("only one set of a homogeneous kernel scales from level to level")
        if self.scaled and self.unit_homogeneity is not None:
            raise ValueError("a scaled set is one set, not unit sets per level")
        ranks = self.sets[0].ranks()
        if any(operators.ranks() != ranks for operators in self.sets):
            raise ValueError("the sets of several levels must have the same ranks (pad them)")

    @classmethod
    def scaled_from(cls, operators: KifmmOperators) -> LevelOperators:
        """The one set of a homogeneous kernel, for every level."""
        return cls((operators,), scaled=True)

    @classmethod
    def per_level(cls, sets, first_level: int, unit_homogeneity: float | None = None
                  ) -> LevelOperators:
        """A set per level from ``first_level``, padded to the largest ranks of all (each for
        half-width 1, scaled by ``unit_homogeneity``, where that is given)."""
        sets = list(sets)
        ranks = {name: max(operators.ranks()[name] for operators in sets)
                 for name in sets[0].ranks()}
        return cls(tuple(pad_ranks(operators, ranks) for operators in sets), first_level,
                   unit_homogeneity=unit_homogeneity)

    # The facts every set shares.
    @property
    def order(self) -> int:
        return self.sets[0].order

    @property
    def n_e(self) -> int:
        return self.sets[0].n_e

    @property
    def expansion(self) -> Expansion:
        return self.sets[0].expansion

    @property
    def homogeneity(self) -> float | None:
        return self.sets[0].homogeneity

    @property
    def dtype(self) -> np.dtype:
        """float64, or complex128 for a complex kernel."""
        return self.sets[0].dtype

    def ranks(self) -> dict[str, int]:
        """The ranks of every set (:meth:`KifmmOperators.ranks`)."""
        return self.sets[0].ranks()

    def m2l_rank(self) -> int:
        return self.sets[0].m2l_rank()

    def far_field_flops(self) -> tuple[float, float]:
        """(per V entry, per box) as the padded sets apply them."""
        return self.sets[0].far_field_flops()

    def nbytes(self) -> int:
        """Bytes of every set's matrices."""
        return sum(array.nbytes for operators in self.sets
                   for array in operators.arrays().values())

    def stack(self, name: str) -> np.ndarray:
        """The matrices ``name`` of every set as one stack ``(sets x matrices per set, n_out,
        n_in)`` (one object per field, so that an upload of it is shared)."""
        if name not in self._stacks:
            parts = [operators.matrix(name) for operators in self.sets]
            parts = [part if part.ndim == 3 else part[None] for part in parts]
            stack = parts[0] if len(parts) == 1 else np.concatenate(parts)
            stack.setflags(write=False)
            self._stacks[name] = stack
        return self._stacks[name]

    def level_scales(self, step: KifmmStep, half_widths: np.ndarray) -> np.ndarray:
        """The factor of ``step``'s first matrix at each level (ones for sets per level of
        their own half-widths)."""
        if self.scaled:
            return step.level_scales(self.homogeneity, half_widths)
        if self.unit_homogeneity is not None:
            return step.level_scales(self.unit_homogeneity, half_widths)
        return np.ones(len(half_widths))

    def matrix_offsets(self, step: KifmmStep, name: str, box_levels: np.ndarray
                       ) -> np.ndarray | None:
        """Per box: what to add to the matrix index of a list entry of ``step`` (matrix
        ``name``) into that box, the first matrix of its level's set (-1 where that level has
        no set); None for a scaled set."""
        if self.scaled:
            return None
        per_set = len(self.stack(name)) // len(self.sets)
        index = np.asarray(box_levels) + step.operators_level - self.first_level
        return np.where((index >= 0) & (index < len(self.sets)), index * per_set, -1)
