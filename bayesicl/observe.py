"""What the transformer is observed to do (docs/model.md#observed-weights): distances to the strategies and weights.

Arrays follow the evidence layout: outputs are ``(..., sequence, position, output)``, where
``output`` holds log-probabilities over the d colours / L labels (`kind="log_probs"`) or a
single prediction (`kind="predictions"`, regression). A strategy axis, where there is one,
comes just before ``sequence``. Distances are averaged over sequences × scored positions
(``scored`` is a bool mask over positions) and computed in float64 (float32 on request) from
log-probabilities, never from float16 storage.

Log-probabilities are floored at `LOG_FLOOR` = log(1e-30) (so that a zero probability, or a
float16 −inf, does not turn a KL into NaN) and renormalized with a logsumexp over ``output``
before any distance: float16 storage of a log-softmax does not sum to exactly one.

>>> import numpy as np
>>> m = np.log(np.array([[[0.9, 0.1]]]))          # (sequence, position, output) = (1, 1, 2)
>>> g = np.log(np.array([[[0.5, 0.5]]]))
>>> t = np.log(0.5 * np.exp(m) + 0.5 * np.exp(g))
>>> d_t, d_pair = distances(t, np.stack([m, g], axis=-4), "log_probs", np.ones(1, bool))
>>> w = observed_weight(relative_distance(d_t[..., 0], d_t[..., 1], d_pair[..., 0, 1]))
>>> round(float(w), 2)       # a 50/50 mixture; not 0.5, SKL is not linear in the weight
0.44
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from .errors import BayesiclError

#: Floor on probabilities before taking logs: log(max(p, 1e-30)).
PROBABILITY_FLOOR = 1e-30
LOG_FLOOR = float(np.log(PROBABILITY_FLOOR))
#: d(M, G) below this makes r undefined (docs/model.md#observed-weights): w̃ = NaN, the condition is excluded.
MIN_STRATEGY_DISTANCE = 1e-8
#: What an output axis holds: log-probabilities (distributions) or predictions (regression).
OUTPUT_KINDS = ("log_probs", "predictions")


def log_probs(probabilities, dtype=np.float64) -> np.ndarray:
    """log(max(p, 1e-30)): strategies' probabilities as floored log-probabilities.

    >>> log_probs(np.array([0.5, 0.0])).round(2).tolist()
    [-0.69, -69.08]
    """
    return np.log(np.maximum(np.asarray(probabilities, dtype=dtype), PROBABILITY_FLOOR))


def normalize_log_probs(log_p, dtype=np.float64) -> np.ndarray:
    """Floor at `LOG_FLOOR` and renormalize over the last axis: log p − logsumexp(log p).

    >>> normalize_log_probs(np.log([0.2, 0.2])).round(3).tolist()
    [-0.693, -0.693]
    """
    log_p = np.maximum(np.asarray(log_p, dtype=dtype), LOG_FLOOR, order="C")   # a new array: changed in place
    top = log_p.max(axis=-1, keepdims=True)
    log_p -= top
    total = np.exp(log_p).sum(axis=-1, keepdims=True)
    log_p -= np.log(total)
    return log_p


def kl(log_p, log_q, dtype=np.float64) -> np.ndarray:
    """KL(p‖q) = Σ_v p_v (log p_v − log q_v) over the last axis, from log-probabilities.

    >>> float(kl(np.log([0.5, 0.5]), np.log([0.9, 0.1])).round(4))
    0.5108
    """
    log_p = np.asarray(log_p, dtype=dtype)
    return np.sum(np.exp(log_p) * (log_p - np.asarray(log_q, dtype=dtype)), axis=-1)


def skl(log_p, log_q, dtype=np.float64) -> np.ndarray:
    """Symmetrized KL, SKL(p, q) = ½[KL(p‖q) + KL(q‖p)], over the last axis.

    >>> float(skl(np.log([0.5, 0.5]), np.log([0.9, 0.1])).round(4))
    0.4394
    """
    log_p = np.asarray(log_p, dtype=dtype)
    log_q = np.asarray(log_q, dtype=dtype)
    return 0.5 * np.sum((np.exp(log_p) - np.exp(log_q)) * (log_p - log_q), axis=-1)


def squared_error(a, b, dtype=np.float64) -> np.ndarray:
    """(a − b)² summed over the last (``output``, length 1 for regression) axis.

    >>> squared_error(np.array([[1.0], [2.0]]), np.array([[0.5], [2.0]])).tolist()
    [0.25, 0.0]
    """
    diff = np.asarray(a, dtype=dtype) - np.asarray(b, dtype=dtype)
    return np.sum(diff * diff, axis=-1)


def pointwise_distance(a, b, kind: str, dtype=np.float64) -> np.ndarray:
    """d per (sequence, position): SKL of floored, renormalized log-probs, or squared error."""
    if kind == "log_probs":
        return skl(normalize_log_probs(a, dtype), normalize_log_probs(b, dtype), dtype)
    if kind == "predictions":
        return squared_error(a, b, dtype)
    raise BayesiclError(f"unknown output kind {kind!r}; expected one of {OUTPUT_KINDS}")


class Prepared(NamedTuple):
    """Outputs at the scored positions, ready for repeated distances: float log-probs
    (floored, renormalized) with their probabilities, or predictions with ``probs`` None."""

    values: np.ndarray          # (..., B, P', O)
    probs: np.ndarray | None    # (..., B, P', O) for kind "log_probs"


def prepare(outputs, kind: str, scored, dtype=np.float64) -> Prepared:
    """Keep the scored positions of (..., B, P, O) outputs and precompute what distances need.

    >>> prepare(np.log([[[0.5, 0.5], [0.2, 0.8]]]), "log_probs", [False, True]).probs.round(3).tolist()
    [[[0.2, 0.8]]]
    """
    outputs = np.asarray(outputs)
    outputs = outputs[..., _scored(scored, outputs.shape[-2]), :]
    if kind == "log_probs":
        log_p = normalize_log_probs(outputs, dtype)
        return Prepared(log_p, np.exp(log_p))
    if kind == "predictions":
        return Prepared(np.ascontiguousarray(outputs, dtype=dtype), None)
    raise BayesiclError(f"unknown output kind {kind!r}; expected one of {OUTPUT_KINDS}")


def prepared_mean_distance(a: Prepared, b: Prepared) -> np.ndarray:
    """d(a, b) of prepared outputs, averaged over sequences × scored positions → (...)."""
    if a.probs is None:
        diff = a.values - b.values
        return np.sum(diff * diff, axis=-1).mean(axis=(-2, -1))
    per_token = 0.5 * np.sum((a.probs - b.probs) * (a.values - b.values), axis=-1)
    return per_token.mean(axis=(-2, -1))


def mean_distance(a, b, kind: str, scored, dtype=np.float64) -> np.ndarray:
    """d(a, b) averaged over sequences × scored positions: (..., B, P, O) → (...).

    >>> a = np.zeros((2, 3, 1)); b = np.ones((2, 3, 1))
    >>> float(mean_distance(a, b, "predictions", np.array([True, True, False])))
    1.0
    """
    return prepared_mean_distance(prepare(a, kind, scored, dtype), prepare(b, kind, scored, dtype))


def distances(transformer, strategy_outputs, kind: str, scored, dtype=np.float64):
    """Distances of the transformer to each strategy, and between strategies.

    transformer (..., B, P, O) and strategy_outputs (..., S, B, P, O) →
    d_T (..., S) with d_T[s] = d(T, s), and d_pair (..., S, S) with d_pair[s, s'] = d(s, s').

    >>> t = np.zeros((4, 2, 1)); s = np.stack([np.zeros((4, 2, 1)), np.ones((4, 2, 1))])
    >>> d_t, d_pair = distances(t, s, "predictions", np.ones(2, bool))
    >>> d_t.tolist(), d_pair.tolist()
    ([0.0, 1.0], [[0.0, 1.0], [1.0, 0.0]])
    """
    transformer = np.asarray(transformer)
    strategy_outputs = np.asarray(strategy_outputs)
    d_t = mean_distance(transformer[..., None, :, :, :], strategy_outputs, kind, scored, dtype)
    d_pair = mean_distance(strategy_outputs[..., :, None, :, :, :],
                           strategy_outputs[..., None, :, :, :, :], kind, scored, dtype)
    return d_t, d_pair


def relative_distance(d_tm, d_tg, d_mg) -> np.ndarray:
    """r = (d(T,G) − d(T,M)) / d(M,G), unclipped; NaN where d(M,G) < 1e-8 (docs/model.md#observed-weights).

    >>> relative_distance(0.0, 2.0, 2.0).tolist(), relative_distance(1.0, 5.0, 2.0).tolist()
    (1.0, 2.0)
    """
    d_tm, d_tg, d_mg = (np.asarray(x, dtype=np.float64) for x in (d_tm, d_tg, d_mg))
    defined = d_mg >= MIN_STRATEGY_DISTANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, (d_tg - d_tm) / np.where(defined, d_mg, 1.0), np.nan)


def observed_weight(r) -> np.ndarray:
    """Observed M-weight w̃_M = (clip(r, −1, 1) + 1) / 2; 1 behaves like M, 0 like G.

    >>> observed_weight(np.array([-3.0, 0.0, 0.5, np.nan])).tolist()
    [0.0, 0.5, 0.75, nan]
    """
    return (np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0


def mixture(strategy_outputs, weights, kind: str, dtype=np.float64) -> np.ndarray:
    """h = Σ_s w_s · s: log of the mixture of probabilities, or the weighted prediction.

    strategy_outputs (..., S, B, P, O), weights (..., S) → (..., B, P, O).

    >>> s = np.log(np.array([[[[0.9, 0.1]]], [[[0.1, 0.9]]]]))
    >>> np.exp(mixture(s, np.array([0.25, 0.75]), "log_probs")).round(3).tolist()
    [[[0.3, 0.7]]]
    """
    weights = np.asarray(weights, dtype=dtype)[..., None, None, None]
    if kind == "predictions":
        return np.sum(weights * np.asarray(strategy_outputs, dtype=dtype), axis=-4)
    probs = np.exp(normalize_log_probs(strategy_outputs, dtype))
    return np.log(np.maximum(np.sum(weights * probs, axis=-4), PROBABILITY_FLOOR))


def interpolation_distance(transformer, memorizing, generalizing, weight, kind: str, scored,
                           dtype=np.float64) -> np.ndarray:
    """d(T, w̃·M + (1 − w̃)·G): how far T is from the strategies' span (NaN where w̃ is NaN).

    transformer, memorizing, generalizing (..., B, P, O); weight (...) → (...).

    >>> t = np.full((3, 2, 1), 0.5)
    >>> float(interpolation_distance(t, np.ones((3, 2, 1)), np.zeros((3, 2, 1)), 0.5,
    ...                              "predictions", np.ones(2, bool)))
    0.0
    """
    weight = np.asarray(weight, dtype=dtype)
    w = np.nan_to_num(weight)
    pair = np.stack(np.broadcast_arrays(np.asarray(memorizing), np.asarray(generalizing)), axis=-4)
    h = mixture(pair, np.stack([w, 1.0 - w], axis=-1), kind, dtype)
    return np.where(np.isnan(weight), np.nan, mean_distance(transformer, h, kind, scored, dtype))


def convex_weights(transformer, strategy_outputs, kind: str, scored, *, max_iterations: int = 100,
                   tolerance: float = 1e-12, dtype=np.float64) -> np.ndarray:
    """The convex weights minimizing d(T, Σ_s w_s s) over the simplex (docs/model.md#observed-weights, > 2 strategies).

    transformer (..., B, P, O), strategy_outputs (..., S, B, P, O) → weights (..., S).
    Squared error is a quadratic in w and is solved exactly. SKL of a mixture of probabilities
    is convex in w; it is minimized by projected Newton steps, each an exact quadratic program
    on the simplex (S is small: every support is tried), with backtracking.

    >>> s = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:, None, :, None]   # (S, B, P, O)
    >>> t = np.array([0.3, 0.5])[None, :, None]
    >>> convex_weights(t, s, "predictions", np.ones(2, bool)).round(6).tolist()
    [0.2, 0.3, 0.5]
    """
    transformer = np.asarray(transformer)
    strategy_outputs = np.asarray(strategy_outputs)
    lead = np.broadcast_shapes(transformer.shape[:-3], strategy_outputs.shape[:-4])
    num_strategies = strategy_outputs.shape[-4]
    scored = _scored(scored, strategy_outputs.shape[-2])
    if kind not in OUTPUT_KINDS:
        raise BayesiclError(f"unknown output kind {kind!r}; expected one of {OUTPUT_KINDS}")
    # Keep scored positions (and normalize) before broadcasting, so shared strategies are
    # prepared once; then flatten leading dims: t (N, B, P', O), s (N, S, B, P', O).
    t = prepare(transformer, kind, scored, dtype).values
    s = prepare(strategy_outputs, kind, scored, dtype).values
    t = np.broadcast_to(t, lead + t.shape[-3:]).reshape((-1,) + t.shape[-3:])
    s = np.broadcast_to(s, lead + s.shape[-4:]).reshape((-1, num_strategies) + t.shape[-3:])
    if kind == "predictions":
        weights = _convex_squared_error(t, s)
    else:
        weights = _convex_skl(t, s, max_iterations, tolerance)
    return weights.reshape(lead + (num_strategies,))


def summed_weights(weights, strategies, groups) -> dict[str, np.ndarray]:
    """Convex weights summed over named groups of strategies: {name: Σ_{s ∈ group} w_s}.

    weights (..., S) in the order of `strategies`; `groups` maps a name to strategy names
    (markov: w_mem = w_M1 + w_M2, w_bigram = w_M2 + w_G2). NaN weights stay NaN.

    >>> w = np.array([[0.4, 0.3, 0.2, 0.1]])
    >>> summed_weights(w, ("M2", "G2", "M1", "G1"), {"w_mem": ("M1", "M2")})["w_mem"].round(3).tolist()
    [0.6]
    """
    weights = np.asarray(weights, dtype=np.float64)
    strategies = list(strategies)
    if weights.shape[-1:] != (len(strategies),):
        raise BayesiclError(f"weights have shape {weights.shape}, expected (..., {len(strategies)}) "
                            f"for the strategies {strategies}")
    out = {}
    for name, members in groups.items():
        missing = [m for m in members if m not in strategies]
        if missing:
            raise BayesiclError(f"weight group {name!r} names strategies {missing} that are not among {strategies}")
        out[name] = weights[..., [strategies.index(m) for m in members]].sum(axis=-1)
    return out


def dominant_strategy(weights, strategies) -> np.ndarray:
    """The strategy with the largest convex weight, per row of weights (..., S); "" where the
    weights are NaN.

    >>> dominant_strategy(np.array([[0.1, 0.7, 0.2], [np.nan] * 3]), ("M", "G", "C")).tolist()
    ['G', '']
    """
    weights = np.asarray(weights, dtype=np.float64)
    names = np.asarray(list(strategies), dtype=object)
    defined = ~np.isnan(weights).any(axis=-1)
    best = np.argmax(np.where(np.isnan(weights), -np.inf, weights), axis=-1)
    return np.where(defined, names[best], "")


def cutoff_step(distance: xr.DataArray, q: float = 0.2, split: str = "id") -> int:
    """N_0 (docs/model.md#cutoff): the first checkpoint modeled.

    `distance` is the interpolation distance per condition and split (condition, split), its
    conditions labelled by diversity and step and, where it has them, seed and configuration
    (`Evidence.dataset["interpolation_distance"]`). For each run (a configuration, diversity
    and seed) take its trajectory on `split`; its cutoff is the first step whose distance is
    ≤ min + q·(max − min) of that trajectory. N_0 is the largest cutoff over runs (q = 0.2;
    0.1 for regression). Runs whose distances are all NaN are ignored; if every run is, N_0
    is the first step.

    >>> distance = xr.DataArray([[5.0], [1.0], [0.0], [5.0], [4.0], [0.5]], dims=("condition", "split"),
    ...     coords={"split": ["id"], "diversity": ("condition", [4, 4, 4, 8, 8, 8]),
    ...             "step": ("condition", [10, 20, 30] * 2)})
    >>> cutoff_step(distance, q=0.2)
    30
    """
    missing = {"diversity", "step"} - set(distance.coords)
    if missing:
        raise BayesiclError(f"cutoff_step: the distances lack coordinate(s) {sorted(missing)}")
    if "split" not in distance.dims or split not in distance["split"].values:
        raise BayesiclError(f"cutoff_step: the distances have no split {split!r}")
    on_split = distance.sel(split=split)
    if on_split.sizes.get("condition", 0) == 0:
        raise BayesiclError("cutoff_step: no conditions")
    keys = [k for k in ("configuration", "diversity", "seed") if k in on_split.coords]
    conditions = pd.DataFrame({k: on_split[k].values for k in (*keys, "step")})
    conditions["distance"] = on_split.values.astype(np.float64)
    cutoffs = []
    for _, run in conditions.groupby(keys, sort=True):
        run = run.sort_values("step")
        trajectory = run["distance"].to_numpy()
        finite = np.isfinite(trajectory)
        if not finite.any():
            continue
        low, high = trajectory[finite].min(), trajectory[finite].max()
        below = finite & (trajectory <= low + q * (high - low))
        cutoffs.append(int(run["step"].to_numpy()[np.argmax(below)]))
    return max(cutoffs) if cutoffs else int(conditions["step"].min())


# -- internals ------------------------------------------------------------------------------------

def _scored(scored, num_positions: int) -> np.ndarray:
    scored = np.asarray(scored, dtype=bool)
    if scored.shape != (num_positions,):
        raise BayesiclError(f"scored mask has shape {scored.shape}, expected ({num_positions},)")
    if not scored.any():
        raise BayesiclError("scored mask selects no position")
    return scored


def _simplex_qp(hessian: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """argmin_x ½ xᵀHx + cᵀx over the simplex, exactly, for a batch (N, S, S), (N, S).

    The minimizer solves the equality-constrained problem on its own support; trying every
    support (2^S − 1 of them, S is a handful) and keeping the best feasible solution is exact.
    """
    n, size = linear.shape
    hessian = hessian + 1e-12 * (np.trace(hessian, axis1=-2, axis2=-1)[:, None, None] + 1.0) \
        * np.eye(size)
    best_x = np.zeros((n, size))
    best_value = np.full(n, np.inf)
    for k in range(1, size + 1):
        for support in itertools.combinations(range(size), k):
            idx = np.array(support)
            kkt = np.zeros((n, k + 1, k + 1))
            kkt[:, :k, :k] = hessian[:, idx[:, None], idx[None, :]]
            kkt[:, :k, k] = kkt[:, k, :k] = 1.0
            rhs = np.concatenate([-linear[:, idx], np.ones((n, 1))], axis=1)
            sol = (np.linalg.pinv(kkt) @ rhs[..., None])[..., 0]
            x_support = sol[:, :k]
            feasible = np.all(x_support >= -1e-10, axis=1) & np.all(np.isfinite(x_support), axis=1)
            x = np.zeros((n, size))
            x[:, idx] = np.clip(x_support, 0.0, None)
            x /= np.maximum(x.sum(axis=1, keepdims=True), 1e-300)
            value = 0.5 * np.einsum("ns,nst,nt->n", x, hessian, x) + np.einsum("ns,ns->n", linear, x)
            better = feasible & (value < best_value)
            best_x[better] = x[better]
            best_value[better] = value[better]
    return best_x


def _convex_squared_error(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    # mean (t − Σ w s)² = wᵀAw − 2bᵀw + const, A_ss' = mean Σ_o s s', b_s = mean Σ_o t s.
    count = t.shape[1] * t.shape[2]
    gram = np.einsum("nsbpo,nrbpo->nsr", s, s) / count
    cross = np.einsum("nbpo,nsbpo->ns", t, s) / count
    return _simplex_qp(2.0 * gram, -2.0 * cross)


def _convex_skl(log_t: np.ndarray, log_s: np.ndarray, max_iterations: int,
                tolerance: float) -> np.ndarray:
    """Newton on the simplex for normalized log-probs log_t (N, B, P, O), log_s (N, S, B, P, O)."""
    p_t = np.exp(log_t)
    p_s = np.exp(log_s)
    n, size = log_s.shape[:2]
    count = log_t.shape[1] * log_t.shape[2]

    def objective(w, rows):
        h = np.maximum(np.einsum("ns,nsbpo->nbpo", w, p_s[rows]), PROBABILITY_FLOOR)
        log_h = np.log(h)
        return 0.5 * np.sum((h - p_t[rows]) * (log_h - log_t[rows]), axis=(1, 2, 3)) / count

    w = np.full((n, size), 1.0 / size)
    value = objective(w, slice(None))
    active = np.ones(n, dtype=bool)
    for _ in range(max_iterations):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        ps, pt, lt = p_s[rows], p_t[rows], log_t[rows]
        h = np.maximum(np.einsum("ns,nsbpo->nbpo", w[rows], ps), PROBABILITY_FLOOR)
        # ∂SKL/∂w_s = ½ mean Σ_v [−t p_s / h + p_s (log h − log t + 1)]; the Hessian is
        # ½ mean Σ_v p_s p_s' (t / h² + 1 / h). Both are exact for the mixture of probabilities.
        grad = 0.5 * np.einsum("nsbpo,nbpo->ns", ps, np.log(h) - lt + 1.0 - pt / h) / count
        hess = 0.5 * np.einsum("nsbpo,nrbpo,nbpo->nsr", ps, ps, (pt / h + 1.0) / h) / count
        target = _simplex_qp(hess, grad - np.einsum("nsr,nr->ns", hess, w[rows]))
        step = target - w[rows]
        improved = np.zeros(rows.size, dtype=bool)
        scale = 1.0
        for _ in range(30):
            todo = ~improved
            trial = w[rows[todo]] + scale * step[todo]
            trial_value = objective(trial, rows[todo])
            accept = trial_value <= value[rows[todo]]
            where = np.flatnonzero(todo)[accept]
            gain = value[rows[where]] - trial_value[accept]
            w[rows[where]] = trial[accept]
            value[rows[where]] = trial_value[accept]
            improved[where] = True
            # Converged rows: the Newton step barely moves w or barely lowers the objective.
            done = (np.abs(step[where]).max(axis=1) < 1e-10) | (gain <= tolerance)
            active[rows[where[done]]] = False
            if improved.all():
                break
            scale *= 0.5
        active[rows[~improved]] = False                         # no descent left: optimal
    return w
