"""How well predicted strategy weights reproduce the transformer (docs/model.md#metrics).

For predicted weights w (C, S) the model's output at condition c is h_c = Σ_s w_cs · s — a
mixture of the strategies' probabilities, or the weighted average of their predictions
(regression) — and is compared with the transformer T_c token by token, over the scored
positions of the "id" and "ood" splits:

- tvd: ½ Σ_v |h − T| per (sequence, position), averaged (distributions);
- spearman: rank correlation of h and T across the d colours per (sequence, position),
  averaged (urns, markov; ties get average ranks, a constant row is left out);
- agreement: the fraction of sequences whose argmax label agrees (classification);
- r2: 1 − Σ(T − h)² / Σ(T − mean T)² over all entries of a condition (regression);
- kl: mean KL(T ‖ h), the fit objective (distributions); mse: mean (T − h)² (regression).

Per-condition metrics are averaged over conditions for the summaries; correlation is the
Pearson r between predicted w_M and the observed M-weight over conditions (w̃_M of docs/model.md#observed-weights
with two strategies; the convex observed weight of M with more).

With two strategies the metrics are read from tables built with the evidence, at nodes of
w_M (`bayesicl.evidence.metric_tables`): exact at the nodes, linear between them for tvd,
spearman and agreement (Hermite for kl), exact at any weight for mse and r2; no token is read
again. With more strategies (or ``from_tokens=True``) they read the outputs once more from the
evidence's source, one block of checkpoints at a time (`bayesicl.evidence.stream`), summing
over chunks of sequences as the evidence does (`bayesicl.evidence.statistics.sequence_chunk`).
`fit_metrics` computes the fit's metrics and both baselines in that one pass.

>>> import bayesicl as bic, numpy as np
>>> from bayesicl.evidence import evidence_from_arrays
>>> task = bic.task("urns", num_dims=3, context_length=2)
>>> rng = np.random.default_rng(0)
>>> s = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 2, 4, 2)))     # (R, S, split, B, P, O)
>>> t = np.log(0.3 * np.exp(s[:, 0]) + 0.7 * np.exp(s[:, 1]))        # one checkpoint
>>> ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4],
...     step=[10], loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
>>> table = condition_metrics(ev, np.array([[0.3, 0.7]]), from_tokens=True)
>>> table[["split", "tvd", "spearman"]].round(6).values.tolist()
[['id', 0.0, 1.0], ['ood', 0.0, 1.0]]
>>> tabulated = condition_metrics(ev, np.array([[0.3, 0.7]]))     # read between nodes
>>> bool(np.allclose(tabulated["tvd"], 0.0, atol=1e-3))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import observe
from .errors import BayesiclError
from .evidence.metric_tables import DEFAULT_METRICS, LINEAR, average_ranks, explained_fraction, standardized_ranks
from .evidence.statistics import PREPARED_BYTES, quintic_hermite, sequence_chunk
from .evidence.tabulation import REFERENCE
from .families import family_spec
from .seeds import stream

SPLITS = ("id", "ood")
SUBSETS = ("fit", "heldout", "all")
#: Floats per chunk of conditions (bounds memory).
CHUNK_FLOATS = 1 << 23


def metric_names(evidence) -> tuple[str, ...]:
    """The per-condition metrics of the evidence's family."""
    return family_spec(evidence.task).metrics or DEFAULT_METRICS


def condition_metrics(evidence, predicted_weights, from_tokens: bool = False) -> pd.DataFrame:
    """Per condition and split ("id", "ood"): the family's metrics of h_c = Σ_s w_cs s vs T_c.

    predicted_weights (C, S) in the order of `evidence.strategies`. Returns one row per
    (condition, split) with condition, run, diversity, seed, step, split and the metrics.
    Read from the evidence's metric tables where it has them (see the module docstring);
    `from_tokens` reads the outputs instead, exact at any weight.
    """
    return _metrics_tables(evidence, {"h": (_check_weights(evidence, predicted_weights), _mixture)},
                           from_tokens)["h"]


def fit_metrics(evidence, predicted_weights, in_fit, seed,
                expected_observed: dict[str, np.ndarray] | None = None, from_tokens: bool = False):
    """`condition_metrics`, `summarize_metrics` and `baselines` in one pass over the metric
    tables (or the outputs: `condition_metrics`): returns (table, summary, baselines).

    >>> import bayesicl as bic
    >>> from bayesicl.evidence import evidence_from_arrays
    >>> task = bic.task("urns", num_dims=3, context_length=2)
    >>> s = np.log(np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 2, 2, 4, 2)))
    >>> t = np.log(0.3 * np.exp(s[:, 0]) + 0.7 * np.exp(s[:, 1]))
    >>> ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4],
    ...     step=[10], loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    >>> table, summary, base = fit_metrics(ev, np.array([[0.3, 0.7]]), np.array([True]), seed=0)
    >>> round(summary["fit"]["id"]["tvd"], 9), base["constant"]["fit"]["id"]["tvd"] > 0
    (0.0, True)
    """
    weights = _check_weights(evidence, predicted_weights)
    random_weights = _random_weights(evidence, seed)
    unused = np.zeros_like(weights)                                # C ignores the weights
    tables = _metrics_tables(evidence, {"h": (weights, _mixture), "constant": (unused, _constant_output),
                                        "random": (random_weights, _mixture)}, from_tokens)
    num_conditions = evidence.num_conditions
    summary = _summarize(evidence, tables["h"], weights[:, 0], in_fit, expected_observed)
    base = {"constant": _summarize(evidence, tables["constant"], np.zeros(num_conditions), in_fit),
            "random": _summarize(evidence, tables["random"], random_weights[:, 0], in_fit)}
    return tables["h"], summary, base


def summarize_metrics(evidence, predicted_weights, in_fit, table: pd.DataFrame | None = None,
                      expected_observed: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Metrics per subset (fit, heldout, all) and split (id, ood), as in summary.json.

    fit = `in_fit` (C,) bool; heldout = modeled conditions not in the fit; all = both.
    Each leaf holds correlation (Pearson r of predicted w_M vs observed M-weight over
    conditions with a finite observed weight; None with a ``correlation_reason`` when it is
    undefined), the family's metrics averaged over conditions, and n_conditions. `table`, if
    given, is `condition_metrics(evidence, predicted_weights)` already computed by the caller
    (it is the expensive part, so a fit computes it once for both its table and its summary).
    `expected_observed` ({split: (C,)}), if given, is what the correlation compares with the
    observed weight instead of w_M (see the module docstring).
    """
    weights = _check_weights(evidence, predicted_weights)
    if table is None:
        table = condition_metrics(evidence, weights)
    return _summarize(evidence, table, weights[:, 0], in_fit, expected_observed)


def baselines(evidence, in_fit, seed) -> dict[str, Any]:
    """The same summaries for two baselines (docs/model.md#metrics).

    constant: the constant strategy C (uniform over the outputs, or the prediction 0);
    random: convex weights w ~ Dirichlet(1) per condition, drawn from stream(seed,
    "random_weights"). Returns {"constant": ..., "random": ...}, each shaped like
    `summarize_metrics`.
    """
    num_conditions, num_strategies = evidence.num_conditions, len(evidence.strategies)
    random_weights = _random_weights(evidence, seed)
    unused = np.zeros((num_conditions, num_strategies))            # C ignores the weights
    tables = _metrics_tables(evidence, {"constant": (unused, _constant_output),
                                        "random": (random_weights, _mixture)})
    return {
        "constant": _summarize(evidence, tables["constant"], np.zeros(num_conditions), in_fit),
        "random": _summarize(evidence, tables["random"], random_weights[:, 0], in_fit),
    }


def _random_weights(evidence, seed) -> np.ndarray:
    """The random baseline's weights: Dirichlet(1) per condition from stream(seed, "random_weights")."""
    return stream(seed, "random_weights").dirichlet(np.ones(len(evidence.strategies)),
                                                    size=evidence.num_conditions)


# -- per-token metrics ------------------------------------------------------------------------------

def total_variation(p, q) -> np.ndarray:
    """½ Σ_v |p_v − q_v| over the last axis.

    >>> float(total_variation(np.array([0.5, 0.5]), np.array([0.9, 0.1])))
    0.4
    """
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


def rank_correlation(p, q) -> np.ndarray:
    """Spearman correlation of p and q across the last axis (average ranks for ties; NaN
    where either is constant).

    >>> float(rank_correlation(np.array([0.1, 0.5, 0.4]), np.array([0.2, 0.7, 0.1])))
    0.5
    """
    return _ranked_correlation(average_ranks(p), average_ranks(q))


def _ranked_correlation(rank_p: np.ndarray, rank_q: np.ndarray) -> np.ndarray:
    """Pearson correlation of ranks over the last axis (NaN where either is constant)."""
    z_p, defined_p = standardized_ranks(rank_p)
    z_q, defined_q = standardized_ranks(rank_q)
    return np.where(defined_p & defined_q, (z_p * z_q).sum(axis=-1), np.nan)


def r_squared(truth, prediction, axis) -> np.ndarray:
    """R² = 1 − Σ(truth − prediction)² / Σ(truth − mean truth)², over `axis`.

    >>> float(r_squared(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]), axis=-1))
    0.5
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    residual = ((truth - prediction) ** 2).sum(axis=axis)
    total = ((truth - truth.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis)
    return explained_fraction(residual, total)


# -- internals ------------------------------------------------------------------------------------

def _check_weights(evidence, predicted_weights) -> np.ndarray:
    weights = np.asarray(predicted_weights, dtype=np.float64)
    expected = (evidence.num_conditions, len(evidence.strategies))
    if weights.shape != expected:
        raise BayesiclError(f"predicted weights have shape {weights.shape}, expected {expected} "
                            f"(conditions, strategies {list(evidence.strategies)})")
    if not np.all(np.isfinite(weights)) or np.any(weights < -1e-9) \
            or not np.allclose(weights.sum(axis=1), 1.0, atol=1e-6):
        raise BayesiclError("predicted weights must be finite, non-negative and sum to 1 per condition")
    return weights


def _mixture(weights: np.ndarray, strategies: observe.Prepared) -> np.ndarray:
    """h = Σ_s w_cs s: weights (c, S), strategies (S, B, P, O) → (c, B, P, O) probabilities
    (a mixture of distributions) or predictions."""
    natural = strategies.values if strategies.probs is None else strategies.probs
    return np.einsum("cs,s...->c...", weights, natural)


def _constant_output(weights: np.ndarray, strategies: observe.Prepared) -> np.ndarray:
    """The constant strategy C: prediction 0, or the uniform distribution over the outputs."""
    shape = (len(weights),) + strategies.values.shape[1:]
    if strategies.probs is None:
        return np.zeros(shape)
    return np.full(shape, 1.0 / shape[-1])


def _metrics_tables(evidence, predictors: dict[str, tuple[np.ndarray, Any]],
                    from_tokens: bool = False) -> dict[str, pd.DataFrame]:
    """Per (condition, split) metrics of h = predict(weights (c, S), strategies) against T, for
    every {name: (weights, predict)} at once: from the metric tables when the evidence has
    them (and not `from_tokens`), else from the tokens (`_token_metrics`)."""
    names = metric_names(evidence)
    if not from_tokens and "metric_split" in evidence.statistics.dims:
        values = {name: _tabulated(evidence, weights, predict) for name, (weights, predict) in predictors.items()}
    else:
        values = _token_metrics(evidence, predictors)
    out = {}
    for name in predictors:
        frames = []
        for k, split in enumerate(SPLITS):
            frame = evidence.conditions[["condition", "run", "diversity", "seed", "step"]].copy()
            frame.insert(5, "split", split)
            for metric in names:
                frame[metric] = values[name][metric][:, k]
            frames.append(frame)
        out[name] = pd.concat(frames, ignore_index=True)
    return out


def _tabulated(evidence, weights: np.ndarray, predict) -> dict[str, np.ndarray]:
    """{metric: (C, 2) over the splits} of h = predict(weights) read from the metric tables."""
    statistics = evidence.statistics
    split_order = [list(statistics["metric_split"].values).index(split) for split in SPLITS]
    out: dict[str, np.ndarray] = {}
    if predict is _constant_output:
        for metric in metric_names(evidence):
            out[metric] = statistics[f"constant_{metric}"].values[:, split_order]
        return out
    nodes = statistics["node_value"].values
    w = np.clip(weights[:, 0], 0.0, 1.0)
    for metric in metric_names(evidence):
        if metric in LINEAR:
            out[metric] = _linear(statistics["metric_node_value"].values,
                                  statistics[f"metric_{metric}"].values[:, split_order], w)
        elif metric == "kl":
            tables = [statistics[f"metric_kl{suffix}"].values[:, split_order] for suffix in ("", "_slope", "_curvature")]
            out[metric] = quintic_hermite(nodes, *tables, np.repeat(w[:, None], len(SPLITS), axis=1))[0]
        else:                                                         # mse, r2 of the regression quadratic
            others = [s for s in range(weights.shape[1]) if s != REFERENCE]
            delta = weights[:, None, others] - statistics["metric_quadratic_center"].values[:, split_order]
            matrix = statistics["metric_quadratic_matrix"].values[:, split_order]
            mse = statistics["metric_quadratic_star"].values[:, split_order] \
                + np.einsum("cki,ckij,ckj->ck", delta, matrix, delta)
            if metric == "mse":
                out[metric] = mse
            else:
                out[metric] = explained_fraction(mse, statistics["transformer_variance"].values[:, split_order])
    return out


def _linear(nodes: np.ndarray, table: np.ndarray, w: np.ndarray) -> np.ndarray:
    """table (C, split, K) at the nodes, read linearly at w (C,) → (C, split); a NaN node
    value only reaches the weights that lean on it."""
    k = np.clip(np.searchsorted(nodes, w, side="right") - 1, 0, nodes.size - 2)
    fraction = ((w - nodes[k]) / (nodes[k + 1] - nodes[k]))[:, None]
    rows = np.arange(len(w))
    low, high = table[rows, :, k], table[rows, :, k + 1]
    return np.where(fraction < 1, (1 - fraction) * low, 0.0) + np.where(fraction > 0, fraction * high, 0.0)


def _token_metrics(evidence, predictors: dict[str, tuple[np.ndarray, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """{predictor: {metric: (C, 2)}} of every predictor, from the tokens.

    One pass over the evidence's source: run by run (each run's strategies are prepared
    once), block by block of its checkpoints, over chunks of a block's conditions; T is
    prepared (and, for Spearman, ranked) once per chunk for every predictor.
    """
    source = evidence.source
    if source is None:
        raise BayesiclError("the metrics need the evidence's outputs; this evidence carries none")
    names = metric_names(evidence)
    kind = evidence.output_kind
    splits = evidence.splits
    scored = evidence.scored
    num_conditions = evidence.num_conditions
    sums = {(name, split, metric): np.zeros(num_conditions) for name in predictors for split in SPLITS
            for metric in names}
    counts = {key: np.zeros(num_conditions) for key in sums}
    for r in range(source.num_runs):
        strategies = np.asarray(source.strategy(r))                                  # (S, split, B, P, O)
        # Floats per sequence: the strategies' mixture, or the O × O rank comparisons. The
        # metrics are means over (sequence, position), summed over chunks of sequences
        # (`bayesicl.evidence.statistics.sequence_chunk`); R² needs whole conditions.
        per_sequence = int(np.prod(strategies.shape[3:])) * max(strategies.shape[0], strategies.shape[-1])
        size = sequence_chunk(strategies.shape[2], per_sequence, whole=kind == "predictions")
        parts = [slice(start, start + size) for start in range(0, strategies.shape[2], size)]
        chunk = max(1, CHUNK_FLOATS // max(per_sequence * size, 1))
        # float64 values and probabilities of the strategies on both metric splits
        keep = len(parts) == 1 or 16 * strategies.size // len(splits) * len(SPLITS) <= PREPARED_BYTES
        prepared: dict = {}

        def strategy_part(split, p):
            found = prepared.get((split, p))
            if found is None:
                found = observe.prepare(strategies[:, splits.index(split), parts[p]], kind, scored)
                if keep:
                    prepared[(split, p)] = found
            return found

        for block_rows, block in source.blocks(r):
            for start in range(0, block_rows.size, chunk):
                rows = block_rows[start:start + chunk]
                for split in SPLITS:
                    for p, part in enumerate(parts):
                        t = observe.prepare(block[start:start + chunk, splits.index(split), part], kind, scored)
                        t_ranks = average_ranks(t.probs) if "spearman" in names else None
                        for name, (weights, predict) in predictors.items():
                            h = predict(weights[rows], strategy_part(split, p))     # (c, b, P', O)
                            for metric, (total, count) in _chunk_metrics(names, t, h, t_ranks).items():
                                sums[(name, split, metric)][rows] += total
                                counts[(name, split, metric)][rows] += count
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in predictors:
        out[name] = {}
        for metric in names:
            with np.errstate(invalid="ignore", divide="ignore"):         # no defined value: NaN
                out[name][metric] = np.stack([sums[(name, split, metric)] / counts[(name, split, metric)]
                                              for split in SPLITS], axis=1)
    return out


def _chunk_metrics(names, t: observe.Prepared, h: np.ndarray,
                   t_ranks: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per condition (sum, count) of each metric over a chunk of sequences: prepared T and h
    (c, b, P', O) (probabilities or predictions); `t_ranks` the average ranks of T's
    probabilities (computed here when None). A condition's metric is the sum over its chunks
    over the count (R², of whole conditions only, is its value with count 1; Spearman counts
    the rows where it is defined)."""
    out = {}
    tokens = np.full(len(h), float(np.prod(h.shape[1:-1])))
    if t.probs is None:
        if "r2" in names:
            out["r2"] = (r_squared(t.values.reshape(len(h), -1), h.reshape(len(h), -1), axis=-1), np.ones(len(h)))
        if "mse" in names:
            out["mse"] = (observe.squared_error(t.values, h).sum(axis=(1, 2)), tokens)
        return out
    if "tvd" in names:
        out["tvd"] = (total_variation(h, t.probs).sum(axis=(1, 2)), tokens)
    if "spearman" in names:
        ranks = average_ranks(t.probs) if t_ranks is None else t_ranks
        rho = _ranked_correlation(average_ranks(h), ranks).reshape(len(h), -1)     # NaN: a constant row
        defined = ~np.isnan(rho)
        out["spearman"] = (np.where(defined, rho, 0.0).sum(axis=1), defined.sum(axis=1).astype(np.float64))
    if "agreement" in names:
        out["agreement"] = ((h.argmax(-1) == t.probs.argmax(-1)).sum(axis=(1, 2)), tokens)
    if "kl" in names:
        log_h = np.log(np.maximum(h, observe.PROBABILITY_FLOOR))
        out["kl"] = (observe.kl(t.values, log_h).sum(axis=(1, 2)), tokens)
    return out


def _observed_m_weight(evidence, split: str) -> tuple[np.ndarray, str]:
    """The observed M-weight of every condition on `split` (C,) and what it is: the convex
    weight with more than two strategies, else the observed weight from r."""
    kind = "convex" if len(evidence.strategies) > 2 else "relative_distance"
    return evidence.observed_m_weight(split).to_numpy(), kind


def _summarize(evidence, table: pd.DataFrame, predicted_m: np.ndarray, in_fit,
               expected_observed: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    in_fit = np.asarray(in_fit, dtype=bool)
    if in_fit.shape != (evidence.num_conditions,):
        raise BayesiclError(f"in_fit has shape {in_fit.shape}, expected ({evidence.num_conditions},)")
    modeled = evidence.conditions["modeled"].to_numpy(dtype=bool)
    subsets = {"fit": in_fit, "heldout": modeled & ~in_fit, "all": in_fit | modeled}
    names = metric_names(evidence)
    summary: dict[str, Any] = {}
    for subset, mask in subsets.items():
        summary[subset] = {}
        for split in SPLITS:
            observed, source = _observed_m_weight(evidence, split)
            rows = table[table["split"] == split]          # in condition order
            leaf: dict[str, Any] = {"n_conditions": int(mask.sum()), "observed_weight": source}
            compared = predicted_m if expected_observed is None else np.asarray(expected_observed[split])
            leaf["correlation_of"] = "predicted_weight" if expected_observed is None else "expected_observed_weight"
            leaf["correlation"], reason = _pearson(compared[mask], observed[mask])
            if reason:
                leaf["correlation_reason"] = reason
            for name in names:
                column = rows[name].to_numpy()[mask]
                finite = column[np.isfinite(column)]
                leaf[name] = float(finite.mean()) if finite.size else None
            summary[subset][split] = leaf
    return summary


def _pearson(predicted: np.ndarray, observed: np.ndarray) -> tuple[float | None, str | None]:
    keep = np.isfinite(observed) & np.isfinite(predicted)
    if keep.sum() < 3:
        return None, f"{int(keep.sum())} conditions with a finite observed weight (need 3)"
    x, y = predicted[keep] - predicted[keep].mean(), observed[keep] - observed[keep].mean()
    norm = np.sqrt((x * x).sum() * (y * y).sum())
    if norm <= 0:
        return None, "predicted or observed weights are constant over these conditions"
    return float((x * y).sum() / norm), None
