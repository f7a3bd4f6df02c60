"""Per-condition statistics computed in one streamed pass over the transformer's outputs.

`collect` reads a source (`bayesicl.evidence.stream`) run by run, block by block, and keeps
per condition only what the fit and its guards need:

- per split (id, ood): d_TM, d_TG, d_MG, r, the observed weight, the interpolation distance
  and, with more than two strategies, the convex weights (docs/model.md#observed-weights);
- the paper's objective f_c on the ID split (docs/model.md#map), tabulated once:
  two distributions: f_c, f_c' and f_c'' at the Chebyshev nodes in w_M (read by quintic
  Hermite interpolation, `quintic_hermite`, which is exact for quintics and matches f_c to
  ~1e-8 relative mid-range and ~1e-5 near w = 0 or 1 on arbitrary distributions); regression: the exact quadratic f*_c, v*_c, A_c; more than two
  distributions: nothing (that objective is computed from the tokens, `bayesicl.fit.objective`);
- per run and split: ρ_r(w) of `bayesicl.fit.observation` (values and slopes at the nodes).

Strategy outputs are prepared once per run; the transformer's outputs are held one block at a
time, so the memory of the pass does not grow with the number of checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import observe

#: Splits whose distances enter the table (and, ID only, the fit).
DISTANCE_SPLITS = ("id", "ood")
#: Token entries per tabulation chunk (bounds memory at ~nodes × this × 8 bytes).
CHUNK_ENTRIES = 1 << 15
#: Floats per chunk of conditions when computing distances (bounds the temporaries, ~32 MB each).
CHUNK_FLOATS = 1 << 22


class RunObserver:
    """The statistics of one run's conditions: strategies (S, split, B, P, O) prepared once."""

    def __init__(self, strategy: np.ndarray, splits: Sequence[str], strategies: Sequence[str],
                 output_kind: str, scored: np.ndarray, nodes: np.ndarray):
        self.splits = list(splits)
        self.strategies = tuple(strategies)
        self.kind = output_kind
        self.scored = scored
        self.nodes = nodes
        self.strategy = strategy
        self.prepared = {split: observe.prepare(strategy[:, self.splits.index(split)], output_kind, scored)
                         for split in DISTANCE_SPLITS}
        self.d_mg = {split: float(observe.prepared_mean_distance(_pick(p, 0), _pick(p, 1)))
                     for split, p in self.prepared.items()}

    @property
    def objective_mode(self) -> str:
        if self.kind == "predictions":
            return "quadratic"
        return "hermite" if len(self.strategies) == 2 else "tokens"

    def observe(self, transformer: np.ndarray, tables: bool = True) -> tuple[dict, dict]:
        """(columns, objective tables) of a block of conditions, transformer (c, split, B, P, O)
        ({name: (c, ...) array} each; no tables when `tables` is False)."""
        columns: dict[str, np.ndarray] = {}
        found: dict[str, list] = {}
        count, num_strategies = transformer.shape[0], len(self.strategies)
        per_condition = int(np.prod(self.strategy.shape[2:])) * num_strategies
        chunk = max(1, CHUNK_FLOATS // max(per_condition, 1))
        for split in DISTANCE_SPLITS:
            k = self.splits.index(split)
            s = self.prepared[split]
            m, g = _pick(s, 0), _pick(s, 1)
            d_t = np.empty((count, num_strategies))
            interpolation = np.empty(count)
            convex = np.full((count, num_strategies), np.nan)
            d_mg = np.full(count, self.d_mg[split])
            for start in range(0, count, chunk):
                rows = slice(start, start + chunk)
                t = observe.prepare(transformer[rows, k], self.kind, self.scored)      # (c, B, P', O)
                d_t[rows] = observe.prepared_mean_distance(_expand(t), s)
                weight = observe.observed_weight(observe.relative_distance(d_t[rows, 0], d_t[rows, 1], d_mg[rows]))
                interpolation[rows] = np.where(np.isnan(weight), np.nan,
                                               observe.prepared_mean_distance(t, _interpolate(m, g, weight)))
                if num_strategies > 2:
                    convex[rows] = observe.convex_weights(transformer[rows, k], self.strategy[:, k][None],
                                                          self.kind, self.scored)
                if split == "id" and tables:
                    for name, value in self._tables(t).items():
                        found.setdefault(name, []).append(value)
            r_split = observe.relative_distance(d_t[:, 0], d_t[:, 1], d_mg)
            columns[f"d_TM_{split}"] = d_t[:, 0]
            columns[f"d_TG_{split}"] = d_t[:, 1]
            columns[f"d_MG_{split}"] = d_mg
            columns[f"r_{split}"] = r_split
            columns[f"observed_weight_{split}"] = observe.observed_weight(r_split)
            columns[f"interpolation_distance_{split}"] = interpolation
            if num_strategies > 2:
                for j, kind in enumerate(self.strategies):
                    columns[f"observed_{kind}_{split}"] = convex[:, j]
        return columns, {name: np.concatenate(parts) for name, parts in found.items()}

    def _tables(self, t: observe.Prepared) -> dict[str, np.ndarray]:
        """The ID objective tables of prepared conditions t (c, B, P', O)."""
        if self.objective_mode == "quadratic":
            return quadratic_tables(t.values, self.prepared["id"].values)
        if self.objective_mode == "hermite":
            return kl_tables(t.values, t.probs, self.prepared["id"].probs, self.nodes)
        return {}

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """ρ_r(w_M) values and slopes (2, K) on the id and ood splits (`bayesicl.fit.observation`)."""
        from ..fit.observation import _skl_curve

        values = np.empty((len(DISTANCE_SPLITS), self.nodes.size))
        slopes = np.empty_like(values)
        for k, split in enumerate(DISTANCE_SPLITS):
            pair = self.prepared[split]
            if pair.probs is None:                                  # squared error: exactly 2w − 1
                values[k], slopes[k] = 2 * self.nodes - 1, 2.0
            else:
                values[k], slopes[k] = _skl_curve(_first_two(pair), self.nodes)
        return values, slopes


def kl_tables(log_t: np.ndarray, p_t: np.ndarray, probs: np.ndarray, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """f_c(w) = mean KL(T_c ‖ w·M + (1 − w)·G) and its first two derivatives at the nodes.

    log_t, p_t (c, B, P', O) normalized log-probabilities of T and their exp; probs (2, B,
    P', O) the probabilities of M and G. Returns objective_value, objective_slope,
    objective_curvature, each (c, K); the mean is over sequences × scored positions.
    """
    count = int(np.prod(log_t.shape[1:-1]))
    lt = log_t.reshape(log_t.shape[0], -1)
    pt = p_t.reshape(p_t.shape[0], -1)
    m, g = probs[0].reshape(-1), probs[1].reshape(-1)
    value = np.einsum("ci,ci->c", pt, lt)[:, None] * np.ones(nodes.size)
    slope = np.zeros((lt.shape[0], nodes.size))
    curvature = np.zeros((lt.shape[0], nodes.size))
    for start in range(0, m.size, CHUNK_ENTRIES):
        part = slice(start, start + CHUNK_ENTRIES)
        delta = m[part] - g[part]
        h = np.maximum(g[part][None, :] + nodes[:, None] * delta[None, :], observe.PROBABILITY_FLOOR)
        ratio = delta[None, :] / h
        # einsum, not `@`: a multi-threaded BLAS on a busy 2-core machine spends longer
        # waiting for its threads than computing (see bayesicl.fit.objective).
        value -= np.einsum("ci,ki->ck", pt[:, part], np.log(h))
        slope -= np.einsum("ci,ki->ck", pt[:, part], ratio)
        curvature += np.einsum("ci,ki->ck", pt[:, part], ratio * ratio)
    return {"objective_value": value / count, "objective_slope": slope / count,
            "objective_curvature": curvature / count}


def quadratic_tables(transformer: np.ndarray, strategies: np.ndarray) -> dict[str, np.ndarray]:
    """f*, v*, A of the regression objective per condition (`bayesicl.fit.objective`).

    transformer (c, B, P', 1), strategies (S, B, P', 1) → quadratic_star (c,),
    quadratic_center (c, S − 1), quadratic_matrix (c, S − 1, S − 1).
    """
    from ..fit.objective import _quadratic_tables

    tables = _quadratic_tables(transformer, strategies[None], np.zeros(transformer.shape[0], dtype=np.int64))
    return {"quadratic_star": np.asarray(tables["star"]), "quadratic_center": np.asarray(tables["center"]),
            "quadratic_matrix": np.asarray(tables["matrix"])}


def quintic_hermite(nodes, values, slopes, curvatures, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quintic Hermite interpolation of (f, f', f'') given at `nodes` (K,), evaluated at x.

    values, slopes, curvatures (..., K); x (...) is clipped to [nodes[0], nodes[-1]].
    Returns (f, f', f'') at x, each (...). Exact for polynomials of degree ≤ 5.

    >>> nodes = np.array([0.0, 0.5, 1.0]); f = lambda x: x ** 5 - x ** 2
    >>> value, slope, curvature = quintic_hermite(nodes, f(nodes), 5 * nodes ** 4 - 2 * nodes,
    ...                                           20 * nodes ** 3 - 2, np.array(0.3))
    >>> bool(np.isclose(value, f(0.3))), bool(np.isclose(slope, 5 * 0.3 ** 4 - 0.6))
    (True, True)
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    values, slopes, curvatures = (np.asarray(a, dtype=np.float64) for a in (values, slopes, curvatures))
    x = np.clip(np.asarray(x, dtype=np.float64), nodes[0], nodes[-1])
    k = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    x0, width = nodes[k], nodes[k + 1] - nodes[k]
    t = (x - x0) / width

    def take(table, i):
        return np.take_along_axis(table, np.broadcast_to(i, table.shape[:-1])[..., None], axis=-1)[..., 0]

    f0, f1 = take(values, k), take(values, k + 1)
    d0, d1 = take(slopes, k) * width, take(slopes, k + 1) * width
    c0, c1 = take(curvatures, k) * width ** 2, take(curvatures, k + 1) * width ** 2
    t2, t3, t4, t5 = t ** 2, t ** 3, t ** 4, t ** 5
    basis = [1 - 10 * t3 + 15 * t4 - 6 * t5, t - 6 * t3 + 8 * t4 - 3 * t5, 0.5 * (t2 - 3 * t3 + 3 * t4 - t5),
             10 * t3 - 15 * t4 + 6 * t5, -4 * t3 + 7 * t4 - 3 * t5, 0.5 * (t3 - 2 * t4 + t5)]
    first = [-30 * t2 + 60 * t3 - 30 * t4, 1 - 18 * t2 + 32 * t3 - 15 * t4, 0.5 * (2 * t - 9 * t2 + 12 * t3 - 5 * t4),
             30 * t2 - 60 * t3 + 30 * t4, -12 * t2 + 28 * t3 - 15 * t4, 0.5 * (3 * t2 - 8 * t3 + 5 * t4)]
    second = [-60 * t + 180 * t2 - 120 * t3, -36 * t + 96 * t2 - 60 * t3, 0.5 * (2 - 18 * t + 36 * t2 - 20 * t3),
              60 * t - 180 * t2 + 120 * t3, -24 * t + 84 * t2 - 60 * t3, 0.5 * (6 * t - 24 * t2 + 20 * t3)]
    coefficients = (f0, d0, c0, f1, d1, c1)

    def combine(weights):
        return sum(w * c for w, c in zip(weights, coefficients))

    return combine(basis), combine(first) / width, combine(second) / width ** 2


def collect(source, strategies: Sequence[str], output_kind: str, scored: np.ndarray,
            num_conditions: int, nodes: int | None = None,
            progress=None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stream `source` once: (the per-condition columns of `bayesicl.evidence.Evidence`'s
    table, the statistics' variables {name: (dims, values)})."""
    from ..fit.objective import NODES, chebyshev_nodes

    grid = chebyshev_nodes(NODES if nodes is None else nodes)
    columns: dict[str, np.ndarray] = {}
    tables: dict[str, np.ndarray] = {}
    curve_values = np.empty((source.num_runs, len(DISTANCE_SPLITS), grid.size))
    curve_slopes = np.empty_like(curve_values)
    runs = range(source.num_runs) if progress is None else progress(range(source.num_runs))
    for r in runs:
        observer = RunObserver(source.strategy(r), source.splits, strategies, output_kind, scored, grid)
        if len(strategies) >= 2:
            curve_values[r], curve_slopes[r] = observer.curves()
        for rows, block in source.blocks(r):
            found, tabled = observer.observe(block)
            for name, value in found.items():
                columns.setdefault(name, np.full(num_conditions, np.nan))[rows] = value
            for name, value in tabled.items():
                if name not in tables:
                    tables[name] = np.full((num_conditions,) + value.shape[1:], np.nan)
                tables[name][rows] = value
        del observer
    variables: dict[str, Any] = {"curve_value": (("run", "curve_split", "node"), curve_values),
                                 "curve_slope": (("run", "curve_split", "node"), curve_slopes),
                                 "node_value": (("node",), grid)}
    dims = {"objective_value": ("condition", "node"), "objective_slope": ("condition", "node"),
            "objective_curvature": ("condition", "node"), "quadratic_star": ("condition",),
            "quadratic_center": ("condition", "other"), "quadratic_matrix": ("condition", "other", "other_2")}
    for name, value in tables.items():
        variables[name] = (dims[name], value)
    return pd.DataFrame(columns), variables


# -- internals ------------------------------------------------------------------------------------

def _pick(prepared: observe.Prepared, index: int) -> observe.Prepared:
    return observe.Prepared(prepared.values[index],
                            None if prepared.probs is None else prepared.probs[index])


def _first_two(prepared: observe.Prepared) -> observe.Prepared:
    return observe.Prepared(prepared.values[:2], None if prepared.probs is None else prepared.probs[:2])


def _expand(prepared: observe.Prepared) -> observe.Prepared:
    """(c, B, P, O) → (c, 1, B, P, O), to broadcast against the strategy axis."""
    return observe.Prepared(prepared.values[:, None],
                            None if prepared.probs is None else prepared.probs[:, None])


def _interpolate(m: observe.Prepared, g: observe.Prepared, weight: np.ndarray) -> observe.Prepared:
    """w̃·M + (1 − w̃)·G per condition (probabilities mixed, predictions averaged); NaN w̃ → 0."""
    w = np.nan_to_num(weight)[:, None, None, None]
    if m.probs is None:
        return observe.Prepared(w * m.values + (1 - w) * g.values, None)
    probs = w * m.probs + (1 - w) * g.probs
    return observe.Prepared(np.log(np.maximum(probs, observe.PROBABILITY_FLOOR)), probs)


def statistics_dataset(variables: dict[str, Any], conditions: pd.DataFrame, splits: Sequence[str],
                       strategies: Sequence[str], scored: np.ndarray) -> xr.Dataset:
    """The statistics as one labelled xarray Dataset (what the cache stores)."""
    runs = conditions.drop_duplicates("run").sort_values("run")
    data = dict(variables)
    data["scored"] = (("position",), np.asarray(scored, dtype=bool))
    coords = {"condition": conditions["condition"].to_numpy(), "run": runs["run"].to_numpy(),
              "split": list(splits), "strategy_kind": list(strategies),
              "curve_split": list(DISTANCE_SPLITS), "position": np.arange(len(scored)),
              "diversity": ("condition", conditions["diversity"].to_numpy()),
              "step": ("condition", conditions["step"].to_numpy()),
              "run_diversity": ("run", runs["diversity"].to_numpy()),
              "run_seed": ("run", runs["seed"].to_numpy())}
    return xr.Dataset(data, coords=coords)
