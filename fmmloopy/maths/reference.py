"""Host (numpy) references, independent of loopy: direct summation and the templates' meaning.

These are what the sequential recipe is itself checked against. The pairwise references
evaluate all target-source pairs of a launch in chunks of whole arrays (one call of the Green's
function per chunk, not per box pair: a kernel's symbolic derivatives are evaluated node by
node); :func:`direct_sum` is chunked to run on sampled targets of large N.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.maths.green import GreenKernel, is_zero_entry
from fmmloopy.maths.templates import BoxParticles, PointSet


def direct_sum(green: GreenKernel, sources: np.ndarray, charges: np.ndarray,
               targets: np.ndarray, chunk: int = 2 ** 22, scaled: bool = False,
               magnitudes: bool = False) -> np.ndarray:
    """``sum_i G(target - source_i) charge_i`` for ``(n, 3)`` sources and ``(m, 3)`` targets.

    For a kernel of several outputs or inputs (``green.with_fields``: gradients, dipoles)
    ``charges`` is ``(n_inputs, n)`` and the result ``(n_outputs, m)``: output ``o`` is
    ``sum_i sum_k G_ok(target - source_i) charges[k, i]``.

    ``scaled`` (a homogeneous kernel only): free of overflow and underflow, each offset ``d`` is
    divided by ``s = max |d_i|`` and ``G(d) = s**k G(d / s)`` (``k`` the homogeneity, less one
    per derivative an entry takes), so points 1e200 apart, or 1e-200, get their exact share
    (the plain sum squares their distances).

    ``magnitudes``: the sum of the terms' magnitudes, ``sum_i sum_k |G_ok charges[k, i]|``
    (real, >= the magnitude of the sum). Its ratio to the sum is the sum's condition number:
    an error of ``eps`` relative to each term (an FMM's far field) is up to that many times
    ``eps`` relative to the sum where the terms cancel.
    """
    if scaled and green.homogeneity is None:
        raise ValueError(f"kernel {green.name!r} has no homogeneity to scale distances by")
    sources = np.asarray(sources, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    strengths = np.asarray(charges).reshape(green.n_inputs, len(sources))
    if magnitudes:
        strengths = np.abs(strengths)
    result = np.zeros((green.n_outputs, len(targets)), dtype=np.float64 if magnitudes
                      else np.result_type(strengths, green.value_dtype()))
    rows = max(1, chunk // max(1, len(sources) * green.n_outputs * green.n_inputs))
    degrees = None if green.homogeneity is None else (
        green.homogeneity - green.derivative_orders())
    for start in range(0, len(targets), rows):
        offsets = targets[start:start + rows, None, :] - sources[None, :, :]
        if scaled:
            scale = np.abs(offsets).max(axis=-1)
            scale[scale == 0] = 1.0  # G(0) = 0 whatever the scale
            values = _entries(green, offsets / scale[..., None])
            values = values * scale[..., None, None] ** degrees
        else:
            values = _entries(green, offsets)
        if magnitudes:
            values = np.abs(values)
        # values: (rows, n, n_outputs, n_inputs)
        result[:, start:start + rows] = np.einsum("tsoi,is->ot", values, strengths)
    return result[0] if green.is_scalar else result


def _entries(green: GreenKernel, offsets: np.ndarray) -> np.ndarray:
    """``green.evaluate`` with the entry axes ``(n_outputs, n_inputs)`` always present."""
    values = green.evaluate(offsets)
    return values[..., None, None] if green.is_scalar else values


def _terms(green: GreenKernel, offsets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(k, n_outputs)``: each pair's entries ``G(offset)`` applied to its source's
    ``(n_inputs, k)`` ``weights``. Several strength vectors: the single kernel's entries applied
    to each vector's block of weights (the entries between vectors are zero: not evaluated)."""
    if green.is_scalar:
        return (green.evaluate(offsets) * weights[0])[:, None]
    if green.vectors == 1:
        return np.einsum("koi,ik->ko", green.evaluate(offsets), weights)
    single = green.single
    blocks = weights.reshape(green.vectors, single.n_inputs, len(offsets))
    terms = np.einsum("koi,vik->kvo", _entries(single, offsets), blocks)
    return terms.reshape(len(offsets), green.n_outputs)


class _Side:
    """One side (``target`` or ``source``) of the pairwise template's inputs: its points as
    *slots*, one per point, numbered box by box (particles: their sorted index; surfaces:
    ``box * npoints + j``), with their coordinates computed as the kernels compute them."""

    def __init__(self, inputs: dict, role: str, points: PointSet):
        self.inputs, self.role, self.points = inputs, role, points
        self.surface = not isinstance(points, BoxParticles)
        self._coordinates = None  # (3, slots), computed on first use

    def boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First slot and slot count of each of ``boxes``."""
        boxes = np.asarray(boxes, dtype=np.int64)
        if self.surface:
            npoints = self.points.npoints
            return boxes * npoints, np.full(len(boxes), npoints, dtype=np.int64)
        return (np.asarray(self.inputs[f"box_{self.role}_starts"], dtype=np.int64)[boxes],
                np.asarray(self.inputs[f"box_{self.role}_counts"], dtype=np.int64)[boxes])

    @property
    def slot_coordinates(self) -> np.ndarray:
        """``(3, slots)`` coordinates of every slot, each axis contiguous (gathers are fast):
        stored particles, or ``centre + half_width * unit`` for surface points (the template's
        operations, so the template's bits)."""
        if self._coordinates is None:
            if self.surface:
                half_width = self.inputs["level_half_widths"][self.inputs["box_levels"]]
                unit = np.asarray(self.inputs[f"{self.role}_surface"])  # (3, npoints)
                centres = np.asarray(self.inputs["box_centres"])  # (3, nboxes)
                self._coordinates = (centres[:, :, None] + half_width[None, :, None]
                                     * unit[:, None, :]).reshape(3, -1)
            else:
                self._coordinates = np.ascontiguousarray(self.inputs[f"{self.role}s"])
        return self._coordinates

    def index(self, slots: np.ndarray) -> tuple:
        """The index of ``slots``' values in a ``(components, ...)`` view
        (:func:`_by_component`)."""
        if self.surface:
            return (slice(None), *np.divmod(slots, self.points.npoints))
        return (slice(None), slots)

    @property
    def relative(self) -> bool:
        """Whether the points are particles stored relative to their box's centre."""
        return not self.surface and self.points.relative

    def coordinates(self, slots: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """``(k, 3)`` coordinates of ``slots`` (:attr:`slot_coordinates`; a view of ``(3, k)``
        values); particles stored relative to a box's centre are taken in ``boxes`` (the box
        that lists each slot)."""
        stored = np.take(self.slot_coordinates, slots, axis=1).T
        if not self.relative:
            return stored
        return np.take(np.asarray(self.inputs["box_centres"]), boxes, axis=1).T + stored

    def computed_size(self, slots: np.ndarray) -> np.ndarray:
        """The magnitude (max norm) of the coordinates the kernel computes at ``slots``: that
        of surface points; 0 for particles, which are stored, and twice the stored part for
        particles relative to their box's centre (the kernel's partial sums
        ``(c_t - c_s) + x_t`` exceed the offset by up to the stored parts)."""
        if not self.surface:
            if not self.relative:
                return np.zeros(len(slots))
            return 2 * np.abs(np.take(self.slot_coordinates, slots, axis=1)).max(axis=0)
        return np.abs(self.coordinates(slots)).max(axis=1)


_PARTICLES = BoxParticles()
#: Target-source pairs evaluated at once by the references (bounds their memory).
_PAIRS_PER_CHUNK = 2 ** 18


def _pair_chunks(inputs: dict, targets: _Side, sources: _Side, max_pairs: int = _PAIRS_PER_CHUNK):
    """The pairwise template's walk, flattened: every (target point, source point) pair of
    every target box and every box of its list, as ``(target_slots, source_slots, offsets,
    same_box)`` arrays of at most about ``max_pairs`` pairs (one list entry may exceed it
    alone); ``same_box``: whether the pair's target and source box are one box."""
    starts = np.asarray(inputs["source_box_starts"], dtype=np.int64)
    lists = np.asarray(inputs["source_box_lists"], dtype=np.int64)
    target_boxes = np.asarray(inputs["target_boxes"], dtype=np.int64)
    first_entry, end_entry = int(starts[0]), int(starts[len(target_boxes)])
    rows = np.repeat(np.arange(len(target_boxes)), np.diff(starts[:len(target_boxes) + 1]))
    target_first, target_count = targets.boxes(target_boxes[rows])
    source_first, source_count = sources.boxes(lists[first_entry:end_entry])
    pairs = target_count * source_count
    ends = np.cumsum(pairs)
    begin = 0
    while begin < len(pairs):
        limit = (ends[begin - 1] if begin else 0) + max_pairs
        end = max(begin + 1, int(np.searchsorted(ends, limit, side="right")))
        chunk = slice(begin, end)
        entry = np.repeat(np.arange(end - begin), pairs[chunk])
        local = np.arange(len(entry)) - np.repeat(
            np.cumsum(pairs[chunk]) - pairs[chunk], pairs[chunk])
        within_target, within_source = np.divmod(local, source_count[chunk][entry])
        target_slots = target_first[chunk][entry] + within_target
        source_slots = source_first[chunk][entry] + within_source
        pair_targets = target_boxes[rows[chunk][entry]]
        pair_sources = lists[first_entry + begin:first_entry + end][entry]
        offsets = (targets.coordinates(target_slots, pair_targets)
                   - sources.coordinates(source_slots, pair_sources))
        yield target_slots, source_slots, offsets, pair_targets == pair_sources
        begin = end


def _target_slots(inputs: dict, targets: _Side) -> np.ndarray:
    """Every slot of every target box of the launch."""
    first, count = targets.boxes(np.asarray(inputs["target_boxes"], dtype=np.int64))
    box = np.repeat(np.arange(len(first)), count)
    return first[box] + np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)


def _summed_by_slot(values: np.ndarray, slots: np.ndarray, size: int) -> np.ndarray:
    """``(components, size)``: ``values`` ``(k, components)`` summed by target slot."""
    def summed(column: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(column):
            return summed(column.real) + 1j * summed(column.imag)
        return np.bincount(slots, weights=column, minlength=size)
    return np.stack([summed(values[:, o]) for o in range(values.shape[1])])


def _slot_space(inputs: dict, side: _Side) -> int:
    """How many slots ``side`` numbers (the length of a component's values)."""
    if side.surface:
        return len(inputs["box_levels"]) * side.points.npoints
    return np.shape(inputs[f"{side.role}s"])[1]


def pairwise_reference(green: GreenKernel, inputs: dict, targets: PointSet = _PARTICLES,
                       sources: PointSet = _PARTICLES, accumulate: bool = True) -> np.ndarray:
    """What the pairwise template computes, in numpy (all pairs of a chunk at once): the new
    ``result`` (in the template's layout of several components: :func:`_by_component`)."""
    n_out, n_in = green.n_outputs, green.n_inputs
    target_side = _Side(inputs, "target", targets)
    source_side = _Side(inputs, "source", sources)
    result = np.array(inputs["result"], dtype=_value_dtype(inputs["result"]), copy=True)
    outputs = _by_component(result, targets, n_out)
    strengths = _by_component(np.asarray(inputs["strengths"]), sources, n_in)
    space = _slot_space(inputs, target_side)
    totals = np.zeros((n_out, space), dtype=result.dtype)
    for target_slots, source_slots, offsets, _ in _pair_chunks(inputs, target_side,
                                                                source_side):
        weights = strengths[source_side.index(source_slots)]  # (n_in, k)
        totals += _summed_by_slot(_terms(green, offsets, weights), target_slots, space)
    slots = _target_slots(inputs, target_side)
    index = target_side.index(slots)
    outputs[index] = (outputs[index] if accumulate else 0) + totals[:, slots]
    return result


#: Relative step of the radial perturbation that measures a kernel's sensitivity to its offset.
_RADIAL_STEP = 2.0 ** -20


def pairwise_magnitudes(green: GreenKernel, inputs: dict, targets: PointSet = _PARTICLES,
                        sources: PointSet = _PARTICLES) -> tuple[np.ndarray, np.ndarray]:
    """What bounds the rounding error of the pairwise template, per output entry (in
    ``result``'s layout), for :func:`fmmloopy.checking.verification.compare` in a precision
    below float64: ``(terms, coordinates)``.

    ``terms``: ``|result| + sum_s sum_i m_s |strengths[i, s]|`` over the entries ``(o, i)`` the
    kernel has (not the zeros between strength vectors), ``m_s`` the largest magnitude of the
    pair's entries (a gradient component that cancels still gets its pair's size).
    ``coordinates``: the same sum with each term weighted by ``(1 + rho) E / r``: ``r`` the
    pair's distance, ``E`` the magnitude (max norm) of the surface coordinates the kernel
    computes (``centre + half_width * unit``, whose roundings scale with it; particles are
    stored, their difference is rounded relative to itself; particles stored relative to their
    leaves count twice their stored parts, except two of one leaf), ``rho`` the kernel's radial
    sensitivity ``r |dG/dr| / m`` (measured: 1 for the Laplace potential, 2 for its gradient).
    """
    n_out, n_in = green.n_outputs, green.n_inputs
    present = np.array([[not is_zero_entry(green.expressions[o][i]) for i in range(n_in)]
                        for o in range(n_out)], dtype=np.float64)
    target_side = _Side(inputs, "target", targets)
    source_side = _Side(inputs, "source", sources)
    result = np.abs(np.asarray(inputs["result"])).astype(np.float64)
    coordinates = np.zeros_like(result)
    strengths = _by_component(np.abs(np.asarray(inputs["strengths"])), sources, n_in)
    space = _slot_space(inputs, target_side)
    term_totals = np.zeros((n_out, space))
    coordinate_totals = np.zeros((n_out, space))
    # Two particles of one box, both stored relative to its centre: their offset is one
    # rounding of the stored parts' difference, relative to itself.
    one_box = target_side.relative and source_side.relative
    for target_slots, source_slots, offsets, same_box in _pair_chunks(inputs, target_side,
                                                                       source_side):
        values = _entries(green, offsets)
        largest = np.abs(values).reshape(len(values), -1).max(axis=-1)
        moved = np.abs(_entries(green, offsets * (1 + _RADIAL_STEP)) - values) \
            .reshape(len(values), -1).max(axis=-1)
        distance = np.linalg.norm(offsets, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity = np.where(largest > 0, moved / (_RADIAL_STEP * largest), 0.0)
            growth = np.where((distance > 0) & ~(one_box & same_box),
                              (target_side.computed_size(target_slots)
                               + source_side.computed_size(source_slots)) / distance, 0.0)
        weights = strengths[source_side.index(source_slots)].T  # (k, n_in)
        per_input = largest[:, None] * weights
        weighted = (largest * (1 + sensitivity) * growth)[:, None] * weights
        term_totals += _summed_by_slot(per_input @ present.T, target_slots, space)
        coordinate_totals += _summed_by_slot(weighted @ present.T, target_slots, space)
    slots = _target_slots(inputs, target_side)
    index = target_side.index(slots)
    _by_component(result, targets, n_out)[index] += term_totals[:, slots]
    _by_component(coordinates, targets, n_out)[index] += coordinate_totals[:, slots]
    return result, coordinates


def matvec_magnitudes(inputs: dict) -> np.ndarray:
    """``|target_vectors| + |scale| sum_e |matrix_e| @ |source_vector_e|`` per entry: what
    bounds the matvec template's rounding error (:func:`pairwise_magnitudes`)."""
    absolute = {name: np.abs(np.asarray(inputs[name])).astype(np.float64)
                for name in ("target_vectors", "source_vectors", "matrices", "level_scales")}
    return matvec_reference(dict(inputs, **absolute))


def _by_component(values: np.ndarray, points: PointSet, components: int) -> np.ndarray:
    """A view of a point set's values with the component first: particles store
    ``(components, n)`` (or ``(n,)``), surfaces ``(nboxes * components, npoints)`` (a box's
    components in turn); the view is ``(components, n)`` or ``(components, nboxes, npoints)``."""
    if isinstance(points, BoxParticles):
        return values.reshape((components, -1)) if components > 1 else values[None]
    return values.reshape((-1, components, values.shape[-1])).transpose(1, 0, 2)


def _value_dtype(values) -> np.dtype:
    """float64, or complex128 for complex values (the references compute in double)."""
    return np.dtype(np.complex128 if np.iscomplexobj(values) else np.float64)


def matvec_reference(inputs: dict, accumulate: bool = True) -> np.ndarray:
    """What the matvec template computes, box by box in numpy: the new ``target_vectors``."""
    result = np.array(inputs["target_vectors"], dtype=_value_dtype(inputs["target_vectors"]),
                      copy=True)
    starts, lists = inputs["source_box_starts"], inputs["source_box_lists"]
    matrices, indices = inputs["matrices"], inputs["matrix_indices"]
    for itgt_box, tgt_box in enumerate(inputs["target_boxes"]):
        entries = range(starts[itgt_box], starts[itgt_box + 1])
        total = sum((matrices[indices[e]] @ inputs["source_vectors"][lists[e]] for e in entries),
                    np.zeros(result.shape[1], dtype=result.dtype))
        scale = inputs["level_scales"][inputs["box_levels"][tgt_box]]
        result[tgt_box] = (result[tgt_box] if accumulate else 0) + scale * total
    return result
