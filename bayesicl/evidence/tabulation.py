"""The grid and the sums the evidence tabulates the fit's objective and ρ curves with.

The evidence stage tabulates, once, what the fit later reads (docs/model.md#map,
docs/model.md#observed-weights): f_c of the paper's objective at `NODES` Chebyshev-spaced
nodes in w_M, the exact quadratic of the regression objective (`quadratic_tables`), and the
sums behind ρ (`curve_sums`). Both `bayesicl.evidence.statistics` and the fit
(`bayesicl.inference.objective`, `bayesicl.inference.observation`) use them, so they live here, below both.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import observe
from ..errors import BayesiclError

#: Interpolation nodes in w_M ∈ [0, 1] for the two-strategy KL surrogate.
NODES = 129
#: The generalizing strategy (index 1) is the reference of the regression quadratic.
REFERENCE = 1
#: Token entries per tabulation chunk (bounds memory at ~NODES × this × 8 bytes).
CHUNK_ENTRIES = 1 << 15
#: Token entries per chunk of `curve_sums` (NODES × this float64 stay in a processor's cache).
CURVE_CHUNK_ENTRIES = 2048


def chebyshev_nodes(count: int = NODES) -> np.ndarray:
    """(1 − cos(πk/(K−1)))/2, k = 0..K−1: nodes on [0, 1], dense at both ends.

    >>> chebyshev_nodes(5).round(4).tolist()
    [0.0, 0.1464, 0.5, 0.8536, 1.0]
    """
    if count < 2:
        raise BayesiclError(f"need at least two interpolation nodes, got {count}")
    return (1.0 - np.cos(np.pi * np.arange(count) / (count - 1))) / 2.0


def quadratic_tables(transformer, strategies, run_index) -> dict[str, Any]:
    """f*, v*, A per condition with f_c(w) = f* + (v − v*)ᵀA(v − v*), v = w without G (the
    regression objective of `bayesicl.inference.objective`); transformer (C, …), strategies (R, S, …)
    with `run_index` (C,) picking each condition's run.

    Written around the least-squares optimum v* so that f_c stays accurate when T_c lies on
    the strategies' span (no cancellation between large terms).
    """
    num_conditions, num_strategies = transformer.shape[0], strategies.shape[1]
    others = [s for s in range(num_strategies) if s != REFERENCE]
    star = np.empty(num_conditions)
    center = np.empty((num_conditions, len(others)))
    matrix = np.empty((num_conditions, len(others), len(others)))
    for c in range(num_conditions):
        s = strategies[run_index[c]].reshape(num_strategies, -1).astype(np.float64)   # (S, n)
        x = (s[others] - s[REFERENCE]).T                                               # (n, S−1)
        y = transformer[c].reshape(-1).astype(np.float64) - s[REFERENCE]
        count = y.size
        solution = np.linalg.lstsq(x, y, rcond=None)[0]
        residual = y - x @ solution
        star[c] = residual @ residual / count
        center[c] = solution
        matrix[c] = x.T @ x / count
    return {"star": jnp.asarray(star), "center": jnp.asarray(center), "matrix": jnp.asarray(matrix)}


def curve_sums(pair: observe.Prepared, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sums over token entries behind ρ for M and G (`pair`: (2, …, O)) at the nodes
    `grid`: Σ δ(log h − log G), Σ δ(log h − log M) and Σ δ²/h, with δ = M − G and h = G + wδ,
    in chunks of `CHUNK_ENTRIES` entries (the streamed evidence adds them over sequences; `bayesicl.inference.observation` uses them on
    whole conditions)."""
    m, g = pair.probs[0].reshape(-1), pair.probs[1].reshape(-1)
    log_m, log_g = pair.values[0].reshape(-1), pair.values[1].reshape(-1)
    to_g, to_m, curvature = (np.zeros(grid.size) for _ in range(3))
    h = np.empty((grid.size, min(CURVE_CHUNK_ENTRIES, m.size)))
    for start in range(0, m.size, CURVE_CHUNK_ENTRIES):          # cache-sized chunks, in place
        part = slice(start, start + CURVE_CHUNK_ENTRIES)
        delta = m[part] - g[part]
        block = h[:, :delta.size]
        np.multiply(grid[:, None], delta[None, :], out=block)
        block += g[part]
        np.maximum(block, observe.PROBABILITY_FLOOR, out=block)
        curvature += (delta * delta) @ (1.0 / block).T
        np.log(block, out=block)
        to_g += (block - log_g[part]) @ delta
        to_m += (block - log_m[part]) @ delta
    return to_g, to_m, curvature
