"""A regular grid on the probability simplex over the three channels, and linear interpolation
onto it (used by the market theory's propensity distribution, docs/theory.md §4.1).

Grid points are (i/n, j/n, (n − i − j)/n) for i, j ≥ 0 with i + j ≤ n. A point of the simplex
lies in one triangle of the grid; :func:`interpolate` splits it over that triangle's three
vertices with barycentric weights. The weights are non-negative, sum to one and reproduce the
point as their weighted mean, so moving probability mass onto the grid this way conserves the
mass and its first moment exactly (it adds a little spread, at most of order 1/n² per move).
"""

from __future__ import annotations

import numpy as np

Float = np.ndarray


def size(n: int) -> int:
    """Number of grid points at resolution n."""
    return (n + 1) * (n + 2) // 2


def index(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Flat index of grid point (i, j), clipped into the grid (only used with zero weight when
    a clip changes the point)."""
    i = np.clip(i, 0, n)
    j = np.clip(j, 0, n - i)
    return i * (n + 1) - (i * (i - 1)) // 2 + j


def points(n: int) -> Float:
    """The grid points, (size(n), 3), in flat-index order."""
    if n < 1:
        raise ValueError(f"grid resolution must be >= 1, got {n}")
    ij = [(i, j) for i in range(n + 1) for j in range(n + 1 - i)]
    a = np.array(ij, dtype=float) / n
    return np.column_stack([a[:, 0], a[:, 1], 1.0 - a[:, 0] - a[:, 1]])


def interpolate(p: Float, n: int) -> tuple[np.ndarray, Float]:
    """Vertices (…, 3) and barycentric weights (…, 3) of simplex points ``p`` (…, 3)."""
    a = np.clip(p[..., 0], 0.0, 1.0) * n
    b = np.clip(p[..., 1], 0.0, 1.0) * n
    b = np.minimum(b, n - a)
    i = np.minimum(np.floor(a), n).astype(np.intp)
    j = np.minimum(np.floor(b), n - i).astype(np.intp)
    fa = np.clip(a - i, 0.0, 1.0)
    fb = np.clip(b - j, 0.0, 1.0)
    lower = fa + fb <= 1.0
    verts = np.where(
        lower[..., None],
        np.stack([index(i, j, n), index(i + 1, j, n), index(i, j + 1, n)], axis=-1),
        np.stack([index(i + 1, j + 1, n), index(i, j + 1, n), index(i + 1, j, n)], axis=-1),
    )
    weights = np.where(
        lower[..., None],
        np.stack([1.0 - fa - fb, fa, fb], axis=-1),
        np.stack([fa + fb - 1.0, 1.0 - fa, 1.0 - fb], axis=-1),
    )
    return verts, weights
