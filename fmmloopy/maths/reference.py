"""Host (numpy) references, independent of loopy: direct summation and the templates' meaning.

These are what the sequential recipe is itself checked against; they are written for clarity on
small inputs, except :func:`direct_sum`, which is chunked to run on sampled targets of large N.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.templates import BoxParticles, PointSet


def direct_sum(green: GreenKernel, sources: np.ndarray, charges: np.ndarray,
               targets: np.ndarray, chunk: int = 2 ** 22, scaled: bool = False) -> np.ndarray:
    """``sum_i G(target - source_i) charge_i`` for ``(n, 3)`` sources and ``(m, 3)`` targets.

    ``scaled`` (a homogeneous kernel only): free of overflow and underflow, each offset ``d`` is
    divided by ``s = max |d_i|`` and ``G(d) = s**k G(d / s)`` (``k`` the homogeneity), so points
    1e200 apart, or 1e-200, get their exact share (the plain sum squares their distances).
    """
    if scaled and green.homogeneity is None:
        raise ValueError(f"kernel {green.name!r} has no homogeneity to scale distances by")
    sources = np.asarray(sources, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    result = np.zeros(len(targets))
    rows = max(1, chunk // max(1, len(sources)))
    for start in range(0, len(targets), rows):
        offsets = targets[start:start + rows, None, :] - sources[None, :, :]
        if scaled:
            scale = np.abs(offsets).max(axis=-1)
            scale[scale == 0] = 1.0  # G(0) = 0 whatever the scale
            values = green.evaluate(offsets / scale[..., None]) * scale ** green.homogeneity
        else:
            values = green.evaluate(offsets)
        result[start:start + rows] = values @ charges
    return result


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


def pairwise_reference(green: GreenKernel, inputs: dict, targets: PointSet = _PARTICLES,
                       sources: PointSet = _PARTICLES, accumulate: bool = True) -> np.ndarray:
    """What the pairwise template computes, box by box in numpy: the new ``result``."""
    result = np.array(inputs["result"], dtype=np.float64, copy=True)
    starts, lists = inputs["source_box_starts"], inputs["source_box_lists"]
    for itgt_box, tgt_box in enumerate(inputs["target_boxes"]):
        target_points, target_index = _box_points(inputs, "target", targets, tgt_box)
        total = np.zeros(len(target_points))
        for src_box in lists[starts[itgt_box]:starts[itgt_box + 1]]:
            source_points, source_index = _box_points(inputs, "source", sources, src_box)
            offsets = target_points[:, None, :] - source_points[None, :, :]
            total += green.evaluate(offsets) @ inputs["strengths"][source_index]
        result[target_index] = (result[target_index] if accumulate else 0) + total
    return result


def matvec_reference(inputs: dict, accumulate: bool = True) -> np.ndarray:
    """What the matvec template computes, box by box in numpy: the new ``target_vectors``."""
    result = np.array(inputs["target_vectors"], dtype=np.float64, copy=True)
    starts, lists = inputs["source_box_starts"], inputs["source_box_lists"]
    matrices, indices = inputs["matrices"], inputs["matrix_indices"]
    for itgt_box, tgt_box in enumerate(inputs["target_boxes"]):
        entries = range(starts[itgt_box], starts[itgt_box + 1])
        total = sum((matrices[indices[e]] @ inputs["source_vectors"][lists[e]] for e in entries),
                    np.zeros(result.shape[1]))
        scale = inputs["level_scales"][inputs["box_levels"][tgt_box]]
        result[tgt_box] = (result[tgt_box] if accumulate else 0) + scale * total
    return result
