"""Per-condition statistics computed in one streamed pass over the transformer's outputs.

`collect` reads a source (`bayesicl.evidence.stream`) run by run, block by block, and keeps
per condition only what the fit and its guards need:

- per split (id, ood): d_TM, d_TG, d_MG, r, the observed weight, the interpolation distance
  and, with more than two strategies, the convex weights (docs/model.md#observed-weights);
- the paper's objective f_c on the ID split (docs/model.md#map), tabulated once:
  two distributions: f_c, f_c' and f_c'' at the Chebyshev nodes in w_M (read by quintic
  Hermite interpolation, `quintic_hermite`, which is exact for quintics and matches f_c to
  ~1e-8 relative mid-range and ~1e-5 near w = 0 or 1 on arbitrary distributions);
  regression: the exact quadratic f*_c, v*_c, A_c; more than two distributions: nothing
  (that objective is computed from the tokens, `bayesicl.inference.objective`);
- per run and split: ρ_r(w) of `bayesicl.inference.observation` (values and slopes at the nodes);
- with two strategies, per split: the fit's metrics at nodes in w_M and the constant
  baseline's (`bayesicl.evidence.metric_tables`), so that a fit reads no token again.

The transformer's outputs are held one block of checkpoints at a time; each block's chunk
of sequences is prepared once (the tables multiply it with what the strategies give at every
node, computed once per block: `kl_sums`), and worked through in chunks of conditions
(`sequence_chunk`, `CHUNK_FLOATS`) for the rest: every statistic above
is a sum over sequences (the interpolation distance takes a second sweep over a condition's
chunks, once its observed weight is known), so the memory of the pass grows neither with the
number of checkpoints nor, beyond the outputs themselves, with the number of sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from .. import observe
from .metric_tables import LINEAR, METRIC_NODES, StrategyMetrics, constant_sums, tabulated, total_squares
from .tabulation import NODES, chebyshev_nodes, curve_sums
from .tabulation import quadratic_tables as condition_quadratics

#: Splits whose distances enter the evidence (and, ID only, the fit).
DISTANCE_SPLITS = ("id", "ood")
#: What is observed per condition and split (docs/model.md#observed-weights): the distances
#: of T to M and G and of M to G, the relative distance r, the observed weight (r + 1)/2
#: clipped, and the distance of T to its interpolation w̃M + (1 − w̃)G.
OBSERVATIONS = ("d_TM", "d_TG", "d_MG", "r", "observed_weight", "interpolation_distance")
#: Floats per chunk of a block's conditions × sequences (bounds the temporaries, ~32 MB each).
CHUNK_FLOATS = 1 << 22
#: Most sequences of one condition (per split) handled at once. Distances, observed weights,
#: interpolation distances, the tabulated objective and the ρ curves are sums over sequences,
#: accumulated chunk by chunk, so the temporaries of a checkpoint stay bounded by a chunk
#: (≤ `CHUNK_FLOATS` floats, or one chunk of sequences when that is larger) whatever the
#: number of sequences. The paper's urns size (500 per split) is one chunk. Regression tables
#: and convex weights (more than two strategies) need a whole condition: no sequence chunks.
CHUNK_SEQUENCES = 512
#: Token entries per chunk of the objective's tables (`kl_sums`): 3 × `NODES` × this float64
#: stay in a processor's cache.
KL_CHUNK_ENTRIES = 2048
#: Bytes of prepared (float64) strategy outputs kept per run; above it, each chunk of
#: sequences is prepared again when it is needed (memory bounded, some time spent).
PREPARED_BYTES = 64 << 20


def sequence_chunk(num_sequences: int, floats_per_sequence: int, whole: bool = False) -> int:
    """Sequences per chunk: at most `CHUNK_SEQUENCES` and `CHUNK_FLOATS` floats' worth, at
    least one; all of them when `whole`.

    >>> sequence_chunk(500, 2048), sequence_chunk(5000, 2048), sequence_chunk(5000, 1 << 21)
    (500, 512, 2)
    """
    if whole:
        return max(1, int(num_sequences))
    fits = max(1, CHUNK_FLOATS // max(int(floats_per_sequence), 1))
    return max(1, min(int(num_sequences), CHUNK_SEQUENCES, fits))


class RunObserver:
    """The statistics of one run's conditions, strategies (S, split, B, P, O) as given.

    The strategies are prepared chunk of sequences by chunk (kept when they fit in
    `PREPARED_BYTES`); `observe` reads a block of conditions over chunks of conditions ×
    sequences (`sequence_chunk`), summing over the chunks.
    """

    def __init__(self, strategy: np.ndarray, splits: Sequence[str], strategies: Sequence[str],
                 output_kind: str, scored: np.ndarray, nodes: np.ndarray, metrics: Sequence[str] = ()):
        self.splits = list(splits)
        #: The metrics tabulated over w_M (`bayesicl.evidence.metric_tables`); none with more
        #: than two strategies (a fit then reads the tokens for them).
        self.metrics = tuple(metrics) if tabulated(metrics, output_kind, len(strategies), strategy.shape[-1]) else ()
        self.strategies = tuple(strategies)
        self.kind = output_kind
        self.scored = np.asarray(scored, dtype=bool)
        self.nodes = nodes
        self.strategy = strategy
        num_strategies, _, num_sequences, _, num_outputs = strategy.shape
        per_sequence = int(self.scored.sum()) * num_outputs       # token entries of one sequence
        self.whole = self.kind == "predictions" or num_strategies > 2
        size = sequence_chunk(num_sequences, per_sequence * num_strategies, self.whole)
        self.parts = [slice(start, start + size) for start in range(0, num_sequences, size)]
        self.tokens = num_sequences * int(self.scored.sum())     # sequences × scored positions
        prepared = 2 * 8 * num_strategies * num_sequences * per_sequence * len(DISTANCE_SPLITS)
        self._keep = len(self.parts) == 1 or prepared <= PREPARED_BYTES
        self._prepared: dict[tuple[str, int], observe.Prepared] = {}
        self._metric_views: dict[tuple[str, int], StrategyMetrics] = {}
        self.d_mg = {split: sum(float(_distance_sum(_pick(s, 0), _pick(s, 1)))
                                for s in self._each_part(split)) / self.tokens
                     for split in DISTANCE_SPLITS}

    @property
    def objective_mode(self) -> str:
        if self.kind == "predictions":
            return "quadratic"
        return "hermite" if len(self.strategies) == 2 else "tokens"

    def prepared(self, split: str, part: int) -> observe.Prepared:
        """The strategies on chunk `part` of the sequences of `split`, prepared (S, b, P', O)."""
        found = self._prepared.get((split, part))
        if found is None:
            found = observe.prepare(self.strategy[:, self.splits.index(split), self.parts[part]],
                                    self.kind, self.scored)
            if self._keep:
                self._prepared[(split, part)] = found
        return found

    def metric_view(self, split: str, part: int) -> StrategyMetrics:
        """The metric tables' view of the strategies on chunk `part` of `split` (kept as
        `prepared` keeps its chunks)."""
        found = self._metric_views.get((split, part))
        if found is None:
            found = StrategyMetrics(self.metrics, self.prepared(split, part), chebyshev_nodes(METRIC_NODES))
            if self._keep:
                self._metric_views[(split, part)] = found
        return found

    def _each_part(self, split: str):
        return (self.prepared(split, p) for p in range(len(self.parts)))

    def observe(self, transformer: np.ndarray, tables: bool = True) -> tuple[dict, dict]:
        """(observations, tables) of a block of conditions, transformer (c, split, B, P, O).
        Observations are {name: (c, 2) array} over `DISTANCE_SPLITS` for each of
        `OBSERVATIONS` (and convex_weight (c, 2, S) with more than two strategies); tables
        {name: (c, ...) array}: the ID objective's and the metric tables (none when `tables`
        is False).

        Each split's chunk of sequences is prepared for the whole block once: the tables are
        products of the block's conditions with what the strategies give at the nodes, which
        is computed once per block; the distances and the metric sums work through it in
        chunks of conditions (`CHUNK_FLOATS`).
        """
        count, num_strategies = transformer.shape[0], len(self.strategies)
        columns: dict[str, np.ndarray] = {name: np.empty((count, len(DISTANCE_SPLITS))) for name in OBSERVATIONS}
        if num_strategies > 2:
            columns["convex_weight"] = np.empty((count, len(DISTANCE_SPLITS), num_strategies))
        objective: dict[str, np.ndarray] = {}
        split_tables: dict[str, np.ndarray] = {}       # the metric tables, (c, split, ...)
        part_floats = (self.parts[0].stop - self.parts[0].start) * int(self.scored.sum()) \
            * transformer.shape[-1] * num_strategies
        chunk = max(1, CHUNK_FLOATS // max(part_floats, 1))
        chunks = [slice(start, start + chunk) for start in range(0, count, chunk)]
        single = len(self.parts) == 1
        metrics = self.metrics if tables else ()
        for i, split in enumerate(DISTANCE_SPLITS):
            k = self.splits.index(split)
            sums = np.zeros((count, num_strategies))
            tabled: dict[str, np.ndarray] = {}
            metric_sums: dict[str, list[np.ndarray]] = {}
            kept = None
            for p, part in enumerate(self.parts):
                s = self.prepared(split, p)
                t = observe.prepare(transformer[:, k, part], self.kind, self.scored)   # (c, b, P', O)
                kept = t if single else None
                for rows in chunks:
                    t_rows = _rows(t, rows)
                    sums[rows] += _distance_sum(_expand(t_rows), s)
                    if metrics:
                        found = self.metric_view(split, p).sums(t_rows)
                        found.update({f"constant_{name}": value for name, value in constant_sums(metrics, t_rows).items()})
                        if self.kind == "predictions":
                            found["transformer_variance"] = (total_squares(t_rows),
                                                             np.full(len(t_rows.values), float(t_rows.values[0].size)))
                        for name, (total, number) in found.items():
                            if name not in metric_sums:
                                metric_sums[name] = [np.zeros((count,) + total.shape[1:]),
                                                     np.zeros((count,) + total.shape[1:])]
                            metric_sums[name][0][rows] += total
                            metric_sums[name][1][rows] += number
                if (split == "id" or metrics) and tables:
                    for name, value in self._tables(t, s).items():
                        tabled[name] = tabled[name] + value if name in tabled else value
                del t
            tabled = {name: value / self.tokens if name in KL_SUMS else value for name, value in tabled.items()}
            if split == "id":
                objective = tabled
            metric_tables: dict[str, np.ndarray] = {}
            for name, (total, number) in metric_sums.items():
                key = name if name.startswith("constant_") or name == "transformer_variance" else f"metric_{name}"
                with np.errstate(invalid="ignore", divide="ignore"):
                    metric_tables[key] = np.where(number > 0, total / np.where(number > 0, number, 1.0), np.nan)
            for name, value in tabled.items():           # kl and the regression quadratic, on this split
                if metrics and name in METRIC_TABLES:
                    metric_tables[METRIC_TABLES[name]] = value
            for name, value in metric_tables.items():
                if name not in split_tables:
                    split_tables[name] = np.full((count, len(DISTANCE_SPLITS)) + value.shape[1:], np.nan)
                split_tables[name][:, i] = value
            d_t = sums / self.tokens
            d_mg = np.full(count, self.d_mg[split])
            weight = observe.observed_weight(observe.relative_distance(d_t[:, 0], d_t[:, 1], d_mg))
            between = np.zeros(count)
            for p, part in enumerate(self.parts):        # d(T, w̃M + (1 − w̃)G) needs w̃ of all the sequences
                s = self.prepared(split, p)
                t = kept if single else observe.prepare(transformer[:, k, part], self.kind, self.scored)
                for rows in chunks:
                    between[rows] += _distance_sum(_rows(t, rows), _interpolate(_pick(s, 0), _pick(s, 1), weight[rows]))
            interpolation = np.where(np.isnan(weight), np.nan, between / self.tokens)
            if num_strategies > 2:
                columns["convex_weight"][:, i] = np.concatenate([
                    observe.convex_weights(transformer[rows, k], self.strategy[:, k][None], self.kind, self.scored)
                    for rows in chunks])
            r_split = observe.relative_distance(d_t[:, 0], d_t[:, 1], d_mg)
            columns["d_TM"][:, i], columns["d_TG"][:, i], columns["d_MG"][:, i] = d_t[:, 0], d_t[:, 1], d_mg
            columns["r"][:, i] = r_split
            columns["observed_weight"][:, i] = observe.observed_weight(r_split)
            columns["interpolation_distance"][:, i] = interpolation
        return columns, {**objective, **split_tables}

    def _tables(self, t: observe.Prepared, s: observe.Prepared) -> dict[str, np.ndarray]:
        """The ID objective tables of prepared conditions t (c, b, P', O) against the prepared
        strategies s on the same sequences: sums over them (`KL_SUMS`), or the regression
        tables of whole conditions."""
        if self.objective_mode == "quadratic":
            return quadratic_tables(t.values, s.values)
        if self.objective_mode == "hermite":
            return kl_sums(t.values, t.probs, s.probs, self.nodes)
        return {}

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """ρ_r(w_M) values and slopes (2, K) on the id and ood splits (`bayesicl.inference.observation`),
        summed over chunks of sequences."""
        values = np.empty((len(DISTANCE_SPLITS), self.nodes.size))
        slopes = np.empty_like(values)
        for k, split in enumerate(DISTANCE_SPLITS):
            if self.kind == "predictions":                          # squared error: exactly 2w − 1
                values[k], slopes[k] = 2 * self.nodes - 1, 2.0
                continue
            d_mg = self.d_mg[split]
            if d_mg < observe.MIN_STRATEGY_DISTANCE:                # r is undefined (docs/model.md#observed-weights)
                values[k], slopes[k] = 2 * self.nodes - 1, 2.0
                continue
            to_g, to_m, curvature = (np.zeros(self.nodes.size) for _ in range(3))
            for pair in self._each_part(split):
                part = _curve_sums(_first_two(pair), self.nodes)
                to_g, to_m, curvature = to_g + part[0], to_m + part[1], curvature + part[2]
            d_hg = 0.5 * self.nodes * to_g / self.tokens
            d_hm = 0.5 * (self.nodes - 1.0) * to_m / self.tokens
            values[k], slopes[k] = (d_hg - d_hm) / d_mg, 1.0 + 0.5 * curvature / self.tokens / d_mg
        return values, slopes


#: The tables `kl_sums` returns: sums over token entries, divided by their count at the end.
KL_SUMS = ("objective_value", "objective_slope", "objective_curvature")
#: The objective's tables on each split, as the metric tables name them: KL(T‖h) is the
#: metric kl, and the regression quadratic gives mse and r2 (`bayesicl.evidence.metric_tables`).
METRIC_TABLES = {"objective_value": "metric_kl", "objective_slope": "metric_kl_slope",
                 "objective_curvature": "metric_kl_curvature", "quadratic_star": "metric_quadratic_star",
                 "quadratic_center": "metric_quadratic_center", "quadratic_matrix": "metric_quadratic_matrix"}


def kl_tables(log_t: np.ndarray, p_t: np.ndarray, probs: np.ndarray, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """f_c(w) = mean KL(T_c ‖ w·M + (1 − w)·G) and its first two derivatives at the nodes.

    log_t, p_t (c, B, P', O) normalized log-probabilities of T and their exp; probs (2, B,
    P', O) the probabilities of M and G. Returns objective_value, objective_slope,
    objective_curvature, each (c, K); the mean is over sequences × scored positions.

    >>> p = np.array([[[[0.5, 0.5]]]]); s = np.array([[[[0.9, 0.1]]], [[[0.1, 0.9]]]])
    >>> kl_tables(np.log(p), p, s, np.array([0.5]))["objective_value"].round(12).tolist()
    [[0.0]]
    """
    count = int(np.prod(log_t.shape[1:-1]))
    return {name: value / count for name, value in kl_sums(log_t, p_t, probs, nodes).items()}


def kl_sums(log_t: np.ndarray, p_t: np.ndarray, probs: np.ndarray, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """`kl_tables` times the number of (sequence, position) pairs: sums, so that chunks of
    sequences add up.

    Works through the token entries in chunks of `KL_CHUNK_ENTRIES`: for each, log h, δ/h and
    (δ/h)² at every node (what the strategies give, computed once for all the conditions given)
    are stacked into one matrix and multiplied with the conditions' probabilities (one BLAS
    product; small chunks stay in the processor's cache)."""
    lt = log_t.reshape(log_t.shape[0], -1)
    pt = p_t.reshape(p_t.shape[0], -1)
    m, g = probs[0].reshape(-1), probs[1].reshape(-1)
    size = nodes.size
    stacked = np.empty((3 * size, min(KL_CHUNK_ENTRIES, m.size)))
    products = np.zeros((lt.shape[0], 3 * size))
    for start in range(0, m.size, KL_CHUNK_ENTRIES):
        part = slice(start, start + KL_CHUNK_ENTRIES)
        delta = m[part] - g[part]
        width = delta.size
        h, ratio, squared = stacked[:size, :width], stacked[size:2 * size, :width], stacked[2 * size:, :width]
        np.multiply(nodes[:, None], delta[None, :], out=h)
        h += g[part]
        np.maximum(h, observe.PROBABILITY_FLOOR, out=h)
        np.divide(delta[None, :], h, out=ratio)
        np.multiply(ratio, ratio, out=squared)
        np.log(h, out=h)
        products += pt[:, part] @ stacked[:, :width].T
    entropy = np.einsum("ci,ci->c", pt, lt)[:, None]
    return {"objective_value": entropy - products[:, :size], "objective_slope": -products[:, size:2 * size],
            "objective_curvature": products[:, 2 * size:].copy()}


def quadratic_tables(transformer: np.ndarray, strategies: np.ndarray) -> dict[str, np.ndarray]:
    """f*, v*, A of the regression objective per condition (`bayesicl.inference.objective`).

    transformer (c, B, P', 1), strategies (S, B, P', 1) → quadratic_star (c,),
    quadratic_center (c, S − 1), quadratic_matrix (c, S − 1, S − 1).
    """
    tables = condition_quadratics(transformer, strategies[None], np.zeros(transformer.shape[0], dtype=np.int64))
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
            progress=None, metrics: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Stream `source` once: (the observations of every condition, {name: (C, split[, S])}
    as `RunObserver.observe`, the statistics' variables {name: (dims, values)}), with the
    tables of the metrics `metrics` (`bayesicl.evidence.metric_tables`) where they can be built."""
    grid = chebyshev_nodes(NODES if nodes is None else nodes)
    columns: dict[str, np.ndarray] = {}
    tables: dict[str, np.ndarray] = {}
    curve_values = np.empty((source.num_runs, len(DISTANCE_SPLITS), grid.size))
    curve_slopes = np.empty_like(curve_values)
    runs = range(source.num_runs) if progress is None else progress(range(source.num_runs))
    with threadpool_limits(1, user_api="blas"):
        _collect_runs(source, runs, strategies, output_kind, scored, grid, metrics, num_conditions,
                      columns, tables, curve_values, curve_slopes)
    variables: dict[str, Any] = {"curve_value": (("run", "curve_split", "node"), curve_values),
                                 "curve_slope": (("run", "curve_split", "node"), curve_slopes),
                                 "node_value": (("node",), grid)}
    if any(name.removeprefix("metric_") in LINEAR for name in tables):
        variables["metric_node_value"] = (("metric_node",), chebyshev_nodes(METRIC_NODES))
    dims = {"objective_value": ("condition", "node"), "objective_slope": ("condition", "node"),
            "objective_curvature": ("condition", "node"), "quadratic_star": ("condition",),
            "quadratic_center": ("condition", "other"), "quadratic_matrix": ("condition", "other", "other_2")}
    for name, value in tables.items():
        if name in dims:
            variables[name] = (dims[name], value)
        elif name.startswith("metric_quadratic_"):
            variables[name] = (("condition", "metric_split") + dims[name.removeprefix("metric_")][1:], value)
        elif name.startswith("metric_kl"):         # (condition, metric_split, node)
            variables[name] = (("condition", "metric_split", "node"), value)
        elif value.ndim == 3:                      # metric_<linear>: (condition, metric_split, metric_node)
            variables[name] = (("condition", "metric_split", "metric_node"), value)
        else:                                      # constant_<name>, transformer_variance: (condition, metric_split)
            variables[name] = (("condition", "metric_split"), value)
    return columns, variables


def _collect_runs(source, runs, strategies, output_kind, scored, grid, metrics, num_conditions,
                  columns, tables, curve_values, curve_slopes) -> None:
    """`collect`'s loop over the runs, filling its arrays."""
    for r in runs:
        observer = RunObserver(source.strategy(r), source.splits, strategies, output_kind, scored, grid, metrics)
        if len(strategies) >= 2:
            curve_values[r], curve_slopes[r] = observer.curves()
        for rows, block in source.blocks(r):
            found, tabled = observer.observe(block)
            for name, value in found.items():
                if name not in columns:
                    columns[name] = np.full((num_conditions,) + value.shape[1:], np.nan)
                columns[name][rows] = value
            for name, value in tabled.items():
                if name not in tables:
                    tables[name] = np.full((num_conditions,) + value.shape[1:], np.nan)
                tables[name][rows] = value
        del observer


# -- internals ------------------------------------------------------------------------------------

def _distance_sum(a: observe.Prepared, b: observe.Prepared) -> np.ndarray:
    """`observe.prepared_mean_distance` summed instead of averaged over sequences × positions."""
    if a.probs is None:
        diff = a.values - b.values
        return np.sum(diff * diff, axis=-1).sum(axis=(-2, -1))
    return (0.5 * np.sum((a.probs - b.probs) * (a.values - b.values), axis=-1)).sum(axis=(-2, -1))


def _curve_sums(pair: observe.Prepared, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sums behind ρ for a chunk of sequences of M and G (2, b, P', O), as
    `bayesicl.evidence.tabulation.curve_sums`."""
    return curve_sums(pair, grid)


def _rows(prepared: observe.Prepared, rows: slice) -> observe.Prepared:
    """Conditions `rows` of prepared outputs (c, ...)."""
    return observe.Prepared(prepared.values[rows], None if prepared.probs is None else prepared.probs[rows])


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
              **({"metric_split": list(DISTANCE_SPLITS)} if any("metric_split" in v[0] for v in variables.values()
                                                               if isinstance(v, tuple)) else {}),
              "diversity": ("condition", conditions["diversity"].to_numpy()),
              "step": ("condition", conditions["step"].to_numpy()),
              "run_diversity": ("run", runs["diversity"].to_numpy()),
              "run_seed": ("run", runs["seed"].to_numpy())}
    return xr.Dataset(data, coords=coords)
