"""Small real problems for the automatic check: point sets sorted into boxes, with box lists.

Each problem sorts sources and targets into the cells of a uniform grid over their bounding cube
and lists, for every box holding targets, the boxes adjacent to it (itself included) -- the shape
of the U list. Grids of several resolutions give boxes at several levels; distributions with
empty boxes, crowded boxes and targets apart from sources exercise the CSR loops' edge cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmmloopy.templates import INDEX_DTYPE

_NEIGHBOUR_OFFSETS = np.array(
    [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.int64)


@dataclass
class CheckProblem:
    """Points sorted by box, box geometry and a CSR list of source boxes per target box."""

    name: str
    sources: np.ndarray  # (3, nsources), sorted by box
    targets: np.ndarray  # (3, ntargets), sorted by box
    box_source_starts: np.ndarray
    box_target_starts: np.ndarray
    box_centers: np.ndarray  # (3, nboxes)
    box_levels: np.ndarray
    level_half_widths: np.ndarray
    target_boxes: np.ndarray
    source_box_starts: np.ndarray
    source_box_lists: np.ndarray
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def nboxes(self) -> int:
        return len(self.box_levels)

    def arguments(self, template: str, sizes: dict[str, int]) -> dict[str, np.ndarray | int]:
        """Every array a kernel of ``template`` may take, filled from this problem."""
        rng = np.random.default_rng(self.seed + 1)
        nboxes = self.nboxes
        n_entries = len(self.source_box_lists)
        common = {
            "target_boxes": self.target_boxes, "source_box_starts": self.source_box_starts,
            "source_box_lists": self.source_box_lists, "box_levels": self.box_levels,
            "nboxes": nboxes, "ntarget_boxes": len(self.target_boxes),
            "nsource_list_entries": n_entries, "nlevels": len(self.level_half_widths),
        }
        if template == "pairwise":
            counts = np.diff(self.box_target_starts)
            return common | {
                "sources": self.sources, "targets": self.targets,
                "box_source_starts": self.box_source_starts,
                "box_target_starts": self.box_target_starts,
                "box_centers": self.box_centers, "level_half_widths": self.level_half_widths,
                "strengths": rng.standard_normal(self.sources.shape[1]),
                "result": rng.standard_normal(self.targets.shape[1]),
                "nsources": self.sources.shape[1], "ntargets": self.targets.shape[1],
                "max_box_targets": int(counts.max()),
            }
        if template == "matvec":
            n_out, n_in = sizes["n_target_coeffs"], sizes["n_source_coeffs"]
            nmatrices = 7
            return common | {
                "matrices": rng.standard_normal((nmatrices, n_out, n_in)),
                "matrix_indices": rng.integers(0, nmatrices, n_entries).astype(INDEX_DTYPE),
                "source_vectors": rng.standard_normal((nboxes, n_in)),
                "target_vectors": rng.standard_normal((nboxes, n_out)),
                "level_scales": 2.0 ** -np.arange(len(self.level_half_widths)),
                "nmatrices": nmatrices,
            }
        raise ValueError(f"unknown template {template!r}")


def _sort_into_grid(points: np.ndarray, lower: np.ndarray, width: float, cells: int,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``(n, 3)`` points by grid cell; return them as ``(3, n)`` and the cell starts."""
    ijk = np.clip(((points - lower) / width * cells).astype(np.int64), 0, cells - 1)
    cell = (ijk[:, 0] * cells + ijk[:, 1]) * cells + ijk[:, 2]
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], np.arange(cells ** 3 + 1)).astype(INDEX_DTYPE)
    return np.ascontiguousarray(points[order].T), starts


def grid_problem(name: str, sources: np.ndarray, targets: np.ndarray, level: int,
                 seed: int = 0) -> CheckProblem:
    """Sort points into the ``2**level`` per axis grid; list adjacent boxes of target boxes."""
    both = np.vstack([sources, targets])
    lower = both.min(axis=0)
    width = float((both.max(axis=0) - lower).max()) * (1 + 1e-9) or 1.0
    cells = 2 ** level
    src, box_source_starts = _sort_into_grid(sources, lower, width, cells)
    tgt, box_target_starts = _sort_into_grid(targets, lower, width, cells)
    ijk = np.stack(np.unravel_index(np.arange(cells ** 3), (cells,) * 3), axis=1)
    centers = lower + (ijk + 0.5) * (width / cells)
    target_boxes = np.flatnonzero(np.diff(box_target_starts)).astype(INDEX_DTYPE)
    neighbours = ijk[target_boxes][:, None, :] + _NEIGHBOUR_OFFSETS[None, :, :]
    inside = np.all((neighbours >= 0) & (neighbours < cells), axis=2)
    flat = (neighbours[..., 0] * cells + neighbours[..., 1]) * cells + neighbours[..., 2]
    source_box_lists = flat[inside].astype(INDEX_DTYPE)
    source_box_starts = np.concatenate([[0], np.cumsum(inside.sum(axis=1))]).astype(INDEX_DTYPE)
    half_widths = width / 2 ** (np.arange(level + 1) + 1)
    return CheckProblem(
        name=name, sources=src, targets=tgt, box_source_starts=box_source_starts,
        box_target_starts=box_target_starts, box_centers=np.ascontiguousarray(centers.T),
        box_levels=np.full(cells ** 3, level, dtype=INDEX_DTYPE),
        level_half_widths=half_widths, target_boxes=target_boxes,
        source_box_starts=source_box_starts, source_box_lists=source_box_lists, seed=seed)


def sphere_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly on the unit sphere's surface."""
    points = rng.standard_normal((n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def plummer(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of a Plummer sphere (scale radius 1), radii capped at 20."""
    u = rng.uniform(0.0, 0.99, n)
    radius = np.minimum(1 / np.sqrt(u ** (-2 / 3) - 1), 20.0)
    return sphere_surface(n, rng) * radius[:, None]


def check_problems(seed: int = 0, n: int = 1500) -> list[CheckProblem]:
    """The problems ``fmmloopy check`` runs: four distributions, three grid levels."""
    rng = np.random.default_rng(seed)
    cube = rng.random((n, 3))
    sphere = sphere_surface(n, rng)
    cluster = plummer(n, rng)
    return [
        grid_problem("uniform-cube", cube, cube, level=2, seed=seed),
        grid_problem("sphere", sphere, sphere, level=3, seed=seed),
        grid_problem("plummer", cluster, cluster, level=3, seed=seed),
        grid_problem("tgt!=src", cube, rng.random((n // 2, 3)) * 1.2 - 0.1, level=1, seed=seed),
    ]
