"""Memory an FMM needs, estimated from the plan's buffers before anything large is allocated.

:func:`estimate_memory` counts what an FMM keeps and the largest temporary of its set-up, from
sizes known before they are allocated: the point counts and order alone (before the tree,
:func:`estimate_before_tree`), then the box and list counts (before the operators and the plan).
The device part is the plan's: its per-evaluation buffers
(:func:`fmmloopy.driver.buffers.evaluation_buffer_shapes`), the matrices of its steps (each
uploaded once), its surfaces and its cut lists. The per-box and per-point constants of the tree,
the lists and their set-up were measured (docs/robustness.md); :data:`MARGIN` covers what is not
counted.
"""

from __future__ import annotations

import math

import numpy as np

from fmmloopy.driver.buffers import allocations, evaluation_buffer_shapes
from fmmloopy.execution.resources import MemoryEstimate
from fmmloopy.maths.complex_blocks import real_block_shape
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import NTRANSFER_VECTORS
from fmmloopy.maths.precompute import full_ranks, matrix_shapes
from fmmloopy.maths.scheme import KIFMM, KifmmScheme
from fmmloopy.tuning.device_facts import MATVEC_ROW_PADDING

_F64, _I32 = 8, 4

#: Host bytes per point while the tree is built (Morton keys, sort order, integer coordinates).
TREE_BUILD_BYTES_PER_POINT = 120
#: Host bytes per box of the largest level while the V list is built (216 candidates per box).
LIST_BUILD_BYTES_PER_BOX = 3000
#: Host bytes per V entry while the plan groups the M2L pairs by matrix (sort keys, orders).
GROUPING_BYTES_PER_PAIR = 70
#: Bytes per box of tree arrays (keys, levels, coordinates, centres, family, particle ranges).
TREE_BYTES_PER_BOX = 110
#: Bytes per box of list arrays (four CSR starts, the 27 colleagues).
LIST_BYTES_PER_BOX = 130
#: Device bytes per box of tree arrays and of the per-launch cut lists (self, children, parent)
#: of the steps before the compressed M2L (eight such launches).
DEVICE_LIST_BYTES_PER_BOX = 160
#: Device bytes per box of each further launch: one over the box's own row (its target box, row
#: start, entry and matrix index), or over a class of the V list (target box and row start).
SELF_LAUNCH_BYTES_PER_BOX = 4 * _I32
V_CLASS_LAUNCH_BYTES_PER_BOX = 2 * _I32
#: Share of the total added for what is not counted (allocator, runtime copies, small arrays):
#: without it the estimate came out below the measured peak at some orders (docs/robustness.md,
#: "Resources").
MARGIN = 0.1


def _bytes(shape: tuple[int, ...], itemsize: int = _F64) -> float:
    return float(np.prod(shape, dtype=np.float64)) * itemsize


def estimate_memory(*, nsources: int, ntargets: int, targets_are_sources: bool, order: int,
                    nboxes: int, nlevels: int = 1, list_entries: dict[str, int] | None = None,
                    ranks: dict[str, int] | None = None,
                    operator_sets: int = 1, complex_values: bool = False,
                    real_bytes: int = _F64, scheme: KifmmScheme = KIFMM,
                    components: int = 1, vectors_per_call: int = 1) -> MemoryEstimate:
    """Bytes the FMM of these sizes keeps on the host and on the device (module docstring).

    ``list_entries`` holds the U, V, W, X entry counts (``{"u": ..., ...}``; zeros if unknown)
    and may hold those of V per transfer-vector class (``"v_<class>"``; V's if absent),
    ``ranks`` the UC2E/DC2E and compressed-M2L ranks (``n_e`` if unknown, their upper bound),
    ``operator_sets`` how many sets of operators there are (one per level with expansions for
    a kernel without homogeneity), ``complex_values`` whether values and matrices are complex
    (twice the bytes), ``real_bytes`` the bytes of a real number on the device (8, or 4 for
    float32 kernels; the host keeps float64), ``components`` the densities per surface point
    (a tensor kernel's: its expansions and matrices are that many times wider),
    ``vectors_per_call`` the strength vectors every evaluation carries (a far field of Laplace
    sums: four per force vector; the expansions and point values that many times over).
    Without V entries (of a class) the M2L matrices (of the class) stay on the host (no M2L
    launch); the host keeps a transposed copy of them while the plan is built.
    """
    expansion = Expansion(order)
    n_e = expansion.n_e * components
    ranks = ranks if ranks is not None else full_ranks(n_e)
    entries = {"u": 0, "v": 0, "w": 0, "x": 0} | dict(list_entries or {})
    all_entries = sum(entries[name] for name in "uvwx")
    separate_targets = 0 if targets_are_sources else ntargets

    value = _F64 * (2 if complex_values else 1)  # bytes of one value, matrix entry included
    on_device = real_bytes / _F64  # device values and matrices: the kernels' precision
    operators = operator_sets * sum(_bytes(shape, value)
                                    for shape in matrix_shapes(n_e, ranks).values())
    # On the device a complex kernel's matrices are their real blocks (twice the rows and
    # columns of real numbers: fmmloopy.maths.complex_blocks), their rows padded as real rows.
    launched = {name: operator_sets * sum(
                    _bytes(_rows_padded(real_block_shape(shape)), _F64) if complex_values
                    else _bytes(_rows_padded(shape), value) for shape in fields.values())
                for name, fields in scheme.step_matrix_shapes(n_e, ranks).items()}
    # Matrices go to the device only for steps that launch (M2L: a V list of its class), and
    # M2L's are transposed on the host.
    m2l_steps = [name for name, step in scheme.steps.items() if step.operator == "m2l"]
    running = {name for name in launched if _runs(scheme.steps[name], entries)}
    used_steps = [name for name in m2l_steps if name in running]
    m2l_used = sum(launched[name] for name in used_steps)
    host = {
        # Tree copies (coordinates, user <-> tree ids); charges and potentials of a call.
        "particles": (3 * _F64 + 2 * _I32 + 2 * value) * nsources
                     + (3 * _F64 + 2 * _I32) * separate_targets + 3 * value * ntargets,
        "tree and lists": (TREE_BYTES_PER_BOX + LIST_BYTES_PER_BOX) * nboxes
                          + _I32 * (all_entries + entries["v"]),
        "operators": operators,
    }
    temporaries = {
        # Computing a set of operators (unless the operator cache holds it) makes the dense M2L
        # of every transfer vector before compressing it; the FMM does not keep it.
        "precomputation (dense M2L)": _bytes((NTRANSFER_VECTORS, n_e, n_e), value),
        "tree build": TREE_BUILD_BYTES_PER_POINT * (nsources + separate_targets),
        "list build": LIST_BUILD_BYTES_PER_BOX * nboxes,
        # (A complex kernel's: the real blocks of every stack launched, made on the host.)
        "plan build": m2l_used + GROUPING_BYTES_PER_PAIR * entries["v"]
                      + (sum(launched[name] for name in running) if complex_values else 0),
    }
    name, largest = max(temporaries.items(), key=lambda item: item[1])
    host[f"set-up temporaries ({name})"] = largest

    buffers = evaluation_buffer_shapes(expansion, ranks, nboxes, nsources, ntargets,
                                       scheme=scheme, components=components)
    value_bytes = vectors_per_call * value  # bytes of a point's or a coefficient's values
    # One launch per matrix of a step (per level for M2M and L2L), one per pairwise step.
    launches = sum(max(1, len(step.matrices)) for step in scheme.steps.values())
    device = {
        # Coordinates of the sources and targets, charges and potentials.
        "particles": on_device * (3 * _F64 * (nsources + ntargets)
                                  + _bytes(buffers["strengths"], value_bytes)
                                  + _bytes(buffers["potential"], value_bytes)),
        "expansions": on_device * value_bytes * sum(
            values for name, values in allocations(buffers, scheme).items()
            if name not in ("strengths", "potential")),
        "matrices": on_device * (sum(launched[name] for name in running)
                                 + scheme.surface_uploads() * 3 * expansion.n_e * _F64),
        # Cut lists: a box index per entry, and a matrix index (or pair target) for V; per
        # launch its target boxes and row starts and level scales.
        "lists": _I32 * (all_entries + entries["v"]) + DEVICE_LIST_BYTES_PER_BOX * nboxes
                 + _compressed_m2l_list_bytes_per_box() * nboxes
                 + (launches + 2 * max(nlevels - 3, 0)) * (_F64 * nlevels + 64),
    }
    host["margin"] = MARGIN * (sum(host.values()) + sum(device.values()))
    # The matrices of each M2L class are one allocation each.
    largest_buffers = {"M2L matrices": on_device * max(
                           (launched[name] for name in used_steps), default=0.0),
                       "one expansion buffer": on_device * _bytes(buffers["multipole"], value),
                       "source coordinates": 3 * real_bytes * nsources,
                       "target coordinates": 3 * real_bytes * ntargets}
    return MemoryEstimate(host=host, device=device,
                          largest_buffer=max(largest_buffers.items(), key=lambda item: item[1]))


def _rows_padded(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A matrix (stack) shape ``(..., n_out, n_in)`` with ``n_out`` padded as a grouped layout
    may pad it on the device (:data:`~fmmloopy.tuning.device_facts.MATVEC_ROW_PADDING`: the
    most output coefficients a layout pads each matrix row to a multiple of,
    :attr:`fmmloopy.maths.layouts.Grouped.row_multiple`)."""
    if len(shape) < 2:
        return shape
    *outer, n_out, n_in = shape
    return (*outer, -(-n_out // MATVEC_ROW_PADDING) * MATVEC_ROW_PADDING, n_in)


def _runs(step, entries: dict[str, int]) -> bool:
    """Whether ``step`` launches (and uploads its matrices): every list it walks or selects
    its boxes by has entries (a ``v_<class>`` count absent: V's)."""
    names = [name for name in (step.box_list, step.boxes.listed, step.boxes.source_in) if name]
    return all(entries.get(name, entries[name.partition("_")[0]]) for name in names)


def _compressed_m2l_list_bytes_per_box() -> int:
    """Device bytes per box of the compressed M2L's cut lists: its compress and expand launches
    over the boxes' own rows, its launches over the classes of the V list beyond the one V
    launch that :data:`DEVICE_LIST_BYTES_PER_BOX` counts."""
    m2l_steps = [step for step in KIFMM.steps.values() if step.operator.startswith("m2l")]
    own_rows = sum(1 for step in m2l_steps if step.operator != "m2l")
    v_classes = sum(1 for step in m2l_steps if step.operator == "m2l")
    return own_rows * SELF_LAUNCH_BYTES_PER_BOX + v_classes * V_CLASS_LAUNCH_BYTES_PER_BOX


def estimate_before_tree(nsources: int, ntargets: int, targets_are_sources: bool, order: int,
                         n_crit: int, real_bytes: int = _F64, complex_values: bool = False,
                         components: int = 1) -> MemoryEstimate:
    """A lower bound known before the tree exists: every leaf full, no list entries (so no M2L
    matrices on the device); the precomputed operators are counted in full, one set of them
    (a kernel without homogeneity has one per level: counted once the tree has its levels)."""
    nboxes = max(1, math.ceil(max(nsources, ntargets) / n_crit))
    return estimate_memory(nsources=nsources, ntargets=ntargets,
                           targets_are_sources=targets_are_sources, order=order, nboxes=nboxes,
                           real_bytes=real_bytes, complex_values=complex_values,
                           components=components)


def describe_problem(nsources: int, ntargets: int, order: int, n_crit: int) -> str:
    """How refusals name a problem: ``the FMM of N sources and M targets at order p (n_crit c)``."""
    return (f"the FMM of {nsources} sources and {ntargets} targets at order {order} "
            f"(n_crit {n_crit})")


def with_vectors(estimate: MemoryEstimate, vectors: int, *, nsources: int, ntargets: int,
                 nboxes: int, order: int, ranks: dict[str, int] | None,
                 list_entries: dict[str, int], complex_values: bool = False,
                 real_bytes: int = _F64, scheme: KifmmScheme = KIFMM,
                 components: int = 1, vectors_per_call: int = 1) -> MemoryEstimate:
    """``estimate`` (an FMM with its single-vector plan) plus a plan for ``vectors`` strength
    vectors at once beside it: that plan's expansions and point values (``vectors`` times the
    single plan's), its matvec lists with the vectors folded into the boxes (three indices per
    entry and per box row, per vector; V's entries and eight rows per box for the other matvec
    launches), and on the host the call's strengths and results in four copies (the user's,
    stacked, tree order, scaled; ``real_bytes``: as :func:`estimate_memory`'s)."""
    if vectors == 1:
        return estimate
    value = _F64 * (2 if complex_values else 1)
    expansion = Expansion(order)
    buffers = evaluation_buffer_shapes(expansion, ranks if ranks is not None
                                       else full_ranks(components * expansion.n_e), nboxes,
                                       nsources, ntargets, scheme=scheme,
                                       components=components)
    per_vector = (real_bytes / _F64 * value * vectors_per_call
                  * sum(allocations(buffers, scheme).values()))
    folded_entries = list_entries.get("v", 0) + 8 * nboxes
    device = dict(estimate.device)
    device[f"plan for {vectors} vectors"] = vectors * (per_vector + 3 * _I32 * folded_entries)
    host = {name: bytes_ for name, bytes_ in estimate.host.items() if name != "margin"}
    host[f"strengths and results of {vectors} vectors"] = 4 * vectors * value * (
        nsources + ntargets)
    host["margin"] = MARGIN * (sum(host.values()) + sum(device.values()))
    expansion_buffer = (f"one expansion buffer of {vectors} vectors",
                        vectors * real_bytes / _F64 * _bytes(buffers["multipole"], value))
    return MemoryEstimate(host=host, device=device,
                          largest_buffer=max(estimate.largest_buffer, expansion_buffer,
                                             key=lambda item: item[1]))
