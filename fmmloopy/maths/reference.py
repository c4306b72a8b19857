"""Host (numpy) references, independent of loopy: direct summation and the templates' meaning.

These are what the sequential recipe is itself checked against; they are written for clarity on
small inputs, except :func:`direct_sum`, which is chunked to run on sampled targets of large N.
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


def _box_points(inputs: dict, role: str, points: PointSet, box: int,
                ) -> tuple[np.ndarray, slice | tuple]:
    """Coordinates ``(k, 3)`` of ``role``'s points in ``box`` and the index of their values."""
    if isinstance(points, BoxParticles):
        start = int(inputs[f"box_{role}_starts"][box])
        span = slice(start, start + int(inputs[f"box_{role}_counts"][box]))
        return inputs[f"{role}s"][:, span].T, span
    surface = inputs[f"{role}_surface"]
    half_width = inputs["level_half_widths"][inputs["box_levels"][box]]
    points = inputs["box_centres"][:, box][None, :] + half_width * surface.T
    return points, (box, slice(None))


_PARTICLES = BoxParticles()


def _box_pairs(inputs: dict, targets: PointSet, sources: PointSet):
    """The pairwise template's walk, box by box: per target box ``(target_points, index,
    sources)``, ``index`` that of its values in a ``(components, ...)`` view
    (:func:`_by_component`) and ``sources`` an iterator of ``(source_points, index, offsets)``
    over the boxes of its list, ``offsets`` ``(targets, sources, 3)``."""
    starts, lists = inputs["source_box_starts"], inputs["source_box_lists"]

    def listed(itgt_box: int, target_points: np.ndarray):
        for src_box in lists[starts[itgt_box]:starts[itgt_box + 1]]:
            source_points, source_index = _box_points(inputs, "source", sources, src_box)
            yield (source_points, (slice(None), *np.index_exp[source_index]),
                   target_points[:, None, :] - source_points[None, :, :])
    for itgt_box, tgt_box in enumerate(inputs["target_boxes"]):
        target_points, target_index = _box_points(inputs, "target", targets, tgt_box)
        yield (target_points, (slice(None), *np.index_exp[target_index]),
               listed(itgt_box, target_points))


def pairwise_reference(green: GreenKernel, inputs: dict, targets: PointSet = _PARTICLES,
                       sources: PointSet = _PARTICLES, accumulate: bool = True) -> np.ndarray:
    """What the pairwise template computes, box by box in numpy: the new ``result``
    (in the template's layout of several components: :func:`_by_component`)."""
    n_out, n_in = green.n_outputs, green.n_inputs
    result = np.array(inputs["result"], dtype=_value_dtype(inputs["result"]), copy=True)
    outputs = _by_component(result, targets, n_out)
    strengths = _by_component(np.asarray(inputs["strengths"]), sources, n_in)
    for target_points, index, listed in _box_pairs(inputs, targets, sources):
        total = np.zeros((n_out, len(target_points)), dtype=result.dtype)
        for _, source_index, offsets in listed:
            total += np.einsum("tsoi,is->ot", _entries(green, offsets),
                               strengths[source_index])
        outputs[index] = (outputs[index] if accumulate else 0) + total
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
    stored, their difference is rounded relative to itself), ``rho`` the kernel's radial
    sensitivity ``r |dG/dr| / m`` (measured: 1 for the Laplace potential, 2 for its gradient).
    """
    n_out, n_in = green.n_outputs, green.n_inputs
    present = np.array([[not is_zero_entry(green.expressions[o][i]) for i in range(n_in)]
                        for o in range(n_out)], dtype=np.float64)
    result = np.abs(np.asarray(inputs["result"])).astype(np.float64)
    coordinates = np.zeros_like(result)
    terms_view = _by_component(result, targets, n_out)
    coordinates_view = _by_component(coordinates, targets, n_out)
    strengths = _by_component(np.abs(np.asarray(inputs["strengths"])), sources, n_in)

    def computed(points: PointSet, coordinates_: np.ndarray) -> np.ndarray:
        if isinstance(points, BoxParticles):
            return np.zeros(len(coordinates_))
        return np.abs(coordinates_).max(axis=1)
    for target_points, index, listed in _box_pairs(inputs, targets, sources):
        target_size = computed(targets, target_points)
        for source_points, source_index, offsets in listed:
            values = _entries(green, offsets)
            per_pair = offsets.shape[:2] + (-1,)
            largest = np.abs(values).reshape(per_pair).max(axis=-1)
            moved = np.abs(_entries(green, offsets * (1 + _RADIAL_STEP)) - values) \
                .reshape(per_pair).max(axis=-1)
            distance = np.linalg.norm(offsets, axis=-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                sensitivity = np.where(largest > 0, moved / (_RADIAL_STEP * largest), 0.0)
                growth = np.where(distance > 0, (target_size[:, None] + computed(
                    sources, source_points)[None, :]) / distance, 0.0)
            weights = strengths[source_index]  # (n_in, s)
            per_input = np.einsum("ts,is->ti", largest, weights)
            weighted = np.einsum("ts,is->ti", largest * (1 + sensitivity) * growth, weights)
            terms_view[index] += (per_input @ present.T).T
            coordinates_view[index] += (weighted @ present.T).T
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
