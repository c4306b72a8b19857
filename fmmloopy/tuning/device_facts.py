"""What the layers below the recipes need to know about a device class, declared here.

The tree's cost model (:mod:`fmmloopy.tree.cost`), the precomputed operators
(:mod:`fmmloopy.maths.m2l_compression`) and the memory estimate (:mod:`fmmloopy.driver.memory`)
take these facts as arguments; the execution layer passes them down
(:func:`fmmloopy.execution.tuning_records.device_pair_flops`, which prefers what
``fmmloopy tune`` measured on the device; :func:`fmmloopy.execution.precomputed.get_operators`).
The values and how they were measured: docs/performance.md ("The pair cost", "On a GPU").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DECLARED", "M2L_RANK_MULTIPLE", "MATVEC_ROW_PADDING", "TRANSCENDENTAL_PAIR_FACTOR",
           "DeviceFacts", "declared_facts", "device_kind"]


@dataclass(frozen=True)
class DeviceFacts:
    """One device class's facts."""

    #: What one P2P pair costs in matvec flops: the shipped recipes' measured matvec (M2L) flop
    #: rate over their measured P2P pair rate; the ``n_crit`` cost model weighs the near field
    #: by it.
    pair_flops: float
    #: Doubles in the widest vector the shipped recipes fill.
    vector_doubles: int
    #: Rows a matvec kernel may pad a matrix's rows to on the device (a multiple of its vector
    #: of rows), which the memory estimate counts.
    row_padding: int


#: The declared facts by device kind: ``"cpu"`` (vectors of 8 doubles, AVX-512), ``"cpu4"``
#: (narrower vectors: AVX2's 4 doubles), ``"gpu"``.
DECLARED = {
    "cpu": DeviceFacts(pair_flops=20.0, vector_doubles=8, row_padding=16),
    "cpu4": DeviceFacts(pair_flops=30.0, vector_doubles=4, row_padding=16),
    "gpu": DeviceFacts(pair_flops=2.5, vector_doubles=1, row_padding=16),
}


#: What a pair of a kernel calling ``exp``, ``sin`` or ``cos`` (Yukawa, Helmholtz) costs over
#: the device's pair cost, measured on Laplace's rational pair. The model has no measured rate
#: per kernel; with the AVX-512 constant alone (20) Yukawa ``kappa`` 10 on 10^6 sphere points at
#: eps 1e-6 chose leaves of 362 points and evaluated in 2.385 s, against 1.593 s at 30 (128
#: points); Helmholtz at one wavelength 1.975 against 1.945 s (docs/performance.md).
TRANSCENDENTAL_PAIR_FACTOR = 1.5


def declared_facts(kind: str) -> DeviceFacts:
    """The facts of device kind ``kind``; a kind without them gets the CPU's."""
    return DECLARED.get(kind, DECLARED["cpu"])


def device_kind(is_gpu: bool, vector_doubles: int) -> str:
    """The :data:`DECLARED` kind of a device: ``"gpu"``, else by the float64 lanes its recipes
    fill (``"cpu4"`` below 8)."""
    if is_gpu:
        return "gpu"
    return "cpu" if vector_doubles >= DECLARED["cpu"].vector_doubles else "cpu4"


#: The compressed M2L's ranks are rounded up to a multiple of this, the widest vector of any
#: class: one set of operators serves every device (a distributed FMM's ranks share them), and
#: rows of whole vectors need no guard; the few singular vectors more only add accuracy.
M2L_RANK_MULTIPLE = max(facts.vector_doubles for facts in DECLARED.values())
#: The most rows a matvec kernel of any class pads to (the memory estimate's bound).
MATVEC_ROW_PADDING = max(facts.row_padding for facts in DECLARED.values())
