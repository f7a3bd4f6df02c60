"""What the observed relative distance r should be if the transformer were the model's h.

The likelihood of the NUTS fit (see `bayesicl.inference.model`) is on the unclipped observed
relative distance r_c = (d(T,G) − d(T,M)) / d(M,G) of docs/model.md#observed-weights. If T_c were exactly the
strategy model's mixture h_w = w·M + (1 − w)·G, its r would be

    ρ_r(w) = (d(h_w, G) − d(h_w, M)) / d(M, G)

which for squared error is exactly 2w − 1, but for SKL is a monotone warp of it (at D = 4,
d = 8, a 50/50 mixture shows r ≈ −0.16 instead of 0). Modelling r as Normal(2w − 1, σ)
would therefore bias (α, β, γ); modelling it as Normal(ρ_r(w), σ) does not. ρ depends only on
the run's M and G on its evaluation inputs, so it is tabulated once per run and split, with
its derivative, at Chebyshev nodes, and read by cubic Hermite interpolation.

For SKL with δ = M − G and h = G + wδ (means over sequences × scored positions of Σ_v):
d(h, G) = ½ w Σ δ (log h − log G), d(h, M) = ½ (w − 1) Σ δ (log h − log M) and
ρ'(w) = 1 + ½ Σ δ² / h / d(M, G).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from .. import observe
from ..evidence.tabulation import NODES, chebyshev_nodes, curve_sums
from .objective import hermite_with_slope

SPLITS = ("id", "ood")


@dataclasses.dataclass(frozen=True, eq=False)
class RelativeDistanceCurves:
    """ρ_r,split(w_M) at the nodes: values and slopes (R, 2, K) for splits ("id", "ood")."""

    nodes: np.ndarray
    values: np.ndarray
    slopes: np.ndarray

    def __call__(self, run, split_index, weight_m):
        """ρ for runs (…) and M-weights (…) on split `split_index` (JAX)."""
        return self.with_slope(run, split_index, weight_m)[0]

    def with_slope(self, run, split_index, weight_m):
        """(ρ, dρ/dw_M) for runs (…) and M-weights (…) on split `split_index` (JAX)."""
        values = jnp.asarray(self.values)[:, split_index]
        slopes = jnp.asarray(self.slopes)[:, split_index]
        return hermite_with_slope(jnp.asarray(self.nodes), values, slopes, weight_m, rows=run)


def relative_distance_curves(evidence, nodes: int = NODES) -> RelativeDistanceCurves:
    """Tabulate ρ_r(w) for every run of the evidence on the ID and OOD splits.

    >>> import bayesicl as bic, numpy as np
    >>> from bayesicl.evidence import evidence_from_arrays
    >>> task = bic.task("urns", num_dims=3, context_length=2)
    >>> s = np.log(np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 2, 2, 4, 2)))
    >>> t = np.log(0.3 * np.exp(s[:, 0]) + 0.7 * np.exp(s[:, 1]))
    >>> ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4],
    ...     step=[10], loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    >>> curves = relative_distance_curves(ev)
    >>> bool(np.isclose(float(curves(0, 0, 0.3)), ev.sel(split="id")["r"][0], atol=1e-5))
    True
    """
    grid = chebyshev_nodes(nodes)
    statistics = evidence.statistics
    stored = statistics["node_value"].values
    if stored.shape == grid.shape and np.allclose(stored, grid, rtol=0, atol=1e-15):
        # Tabulated when the evidence was built (`bayesicl.evidence.statistics`).
        return RelativeDistanceCurves(grid, np.asarray(statistics["curve_value"].values),
                                      np.asarray(statistics["curve_slope"].values))
    names = evidence.splits
    scored = evidence.scored
    num_runs = evidence.source.num_runs
    values = np.empty((num_runs, len(SPLITS), grid.size))
    slopes = np.empty((num_runs, len(SPLITS), grid.size))
    for r in range(num_runs):
        strategies = np.asarray(evidence.source.strategy(r))      # (S, split, B, P, O)
        for k, split in enumerate(SPLITS):
            pair = strategies[:2, names.index(split)]             # (2, B, P, O)
            prepared = observe.prepare(pair, evidence.output_kind, scored)
            if prepared.probs is None:                            # squared error: exactly 2w − 1
                values[r, k], slopes[r, k] = 2 * grid - 1, 2.0
            else:
                values[r, k], slopes[r, k] = _skl_curve(prepared, grid)
    return RelativeDistanceCurves(grid, values, slopes)


def _skl_curve(prepared: observe.Prepared, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = int(np.prod(prepared.probs.shape[1:-1]))              # sequences × scored positions
    m, g = prepared.probs[0].reshape(-1), prepared.probs[1].reshape(-1)
    log_m, log_g = prepared.values[0].reshape(-1), prepared.values[1].reshape(-1)
    d_mg = 0.5 * np.sum((m - g) * (log_m - log_g)) / count
    if d_mg < observe.MIN_STRATEGY_DISTANCE:                      # r is undefined (docs/model.md#observed-weights)
        return 2 * grid - 1, np.full(grid.size, 2.0)
    to_g, to_m, curvature = curve_sums(prepared, grid)
    d_hg = 0.5 * grid * to_g / count
    d_hm = 0.5 * (grid - 1.0) * to_m / count
    return (d_hg - d_hm) / d_mg, 1.0 + 0.5 * curvature / count / d_mg
