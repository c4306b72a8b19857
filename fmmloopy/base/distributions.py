"""Point distributions for examples, checks, tests and benchmarks (``(n, 3)`` float64)."""

from __future__ import annotations

import numpy as np


def sphere_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly on the unit sphere's surface."""
    points = rng.standard_normal((n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def uniform_cube(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly in the unit cube."""
    return rng.random((n, 3))


def plummer(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of a Plummer sphere (scale radius 1), radii capped at 20."""
    u = rng.uniform(0.0, 0.99, n)
    radius = np.minimum(1 / np.sqrt(u ** (-2 / 3) - 1), 20.0)
    return sphere_surface(n, rng) * radius[:, None]


DISTRIBUTIONS = {"sphere": sphere_surface, "cube": uniform_cube, "plummer": plummer}
