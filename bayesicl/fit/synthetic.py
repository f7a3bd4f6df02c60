"""Synthetic evidence with a known answer: a "transformer" that IS a mixture of real strategies.

For each diversity D the real strategies (`bayesicl.strategies`) run on the run's own ID and
OOD evaluation inputs (`task.eval_sets(task.pool(D, seed), seed)`); L̄_s(D) and K_s(D) come
from `bayesicl.evidence.terms.strategy_terms` on the same pools. At each step N the synthetic
transformer outputs h = Σ_s w_s · s (log of the mixture of probabilities, or the weighted
average of predictions) with weights given by the caller — a known (α, β, γ) through the
rational model, or any function of the terms (noise and misfit included). Recovering the
weights' parameters from this evidence is the fit's end-to-end check (tests, benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .. import observe, rational
from ..errors import BayesiclError

Weights = Callable[[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray], np.ndarray]


def strategy_outputs(task, strategies: Sequence[str], diversities: Sequence[int], num_sequences: int,
                     seed: int = 0) -> tuple[np.ndarray, dict]:
    """The strategies' outputs on each run's (ID, OOD) inputs: (R, S, 2, B, P, O) and the pools.

    Log-probabilities floored at 1e-30 (distributions) or predictions with O = 1.
    """
    from ..evidence.terms import make_strategy

    kind = "predictions" if task.family == "regression" else "log_probs"
    pools, outputs = {}, []
    for diversity in diversities:
        pool = task.pool(int(diversity), seed=seed)
        pools[(int(diversity), seed)] = pool
        inputs = task.eval_sets(pool, seed=seed, num_sequences=num_sequences)
        per_strategy = []
        for name in strategies:
            strategy = make_strategy(task, name, pool)
            per_split = []
            for split in ("id", "ood"):
                values = np.asarray(strategy(inputs[split]), dtype=np.float64)
                if kind == "predictions":
                    values = values[..., None]
                else:
                    values = observe.log_probs(values[:, None] if values.ndim == 2 else values)
                per_split.append(values)
            per_strategy.append(np.stack(per_split))
        outputs.append(np.stack(per_strategy))
    return np.stack(outputs), pools


def synthetic_evidence(task, diversities: Sequence[int], steps: Sequence[int], *, params=None,
                       weights: Weights | None = None, strategies=("memorizing", "generalizing"),
                       num_sequences: int = 32, loss_sequences: int = 512, seed: int = 0,
                       outputs: tuple[np.ndarray, dict] | None = None,
                       terms: tuple[pd.DataFrame, pd.DataFrame] | None = None, cutoff="all"):
    """Evidence whose transformer outputs are Σ_s w_s s at every (D, N) of the grid.

    Give `params` = (α, β, γ) (weights from `bayesicl.rational.log_weights`) or `weights`, a
    function (loss, complexity, diversity (C,), step (C,)) → M-weights (C,) with two
    strategies, convex weights (C, S) with more. Conditions are ordered diversity-major.
    `outputs` reuses `strategy_outputs(...)` and `terms` reuses (L̄, K) from
    `synthetic_terms(...)` computed earlier (neither depends on the weights).

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [4, 16], [100, 1000], params=(0.5, 0.3, 1.0),
    ...                         num_sequences=8, loss_sequences=64)
    >>> ev.conditions[["diversity", "step"]].values.tolist()
    [[4, 100], [4, 1000], [16, 100], [16, 1000]]
    """
    from ..evidence import evidence_from_arrays

    if (params is None) == (weights is None):
        raise BayesiclError("synthetic_evidence: give either params (alpha, beta, gamma) or weights")
    strategies = tuple(strategies)
    diversities = [int(d) for d in diversities]
    steps = np.asarray(steps, dtype=np.int64)
    per_run, pools = outputs if outputs is not None else strategy_outputs(
        task, strategies, diversities, num_sequences, seed)
    loss, complexity = terms if terms is not None else synthetic_terms(task, strategies, pools, loss_sequences)
    diversity = np.repeat(diversities, steps.size)
    step = np.tile(steps, len(diversities))
    if params is not None:
        _, w = rational.log_weights(params, loss.loc[diversity].to_numpy(),
                                    complexity.loc[diversity].to_numpy(), step.astype(np.float64))
        w = np.asarray(w)
    else:
        w = np.asarray(weights(loss, complexity, diversity, step), dtype=np.float64)
        if w.ndim == 1:
            w = np.stack([w, 1.0 - w], axis=1)
    if w.shape != (diversity.size, len(strategies)):
        raise BayesiclError(f"synthetic weights have shape {w.shape}, expected {(diversity.size, len(strategies))}")
    run = np.repeat(np.arange(len(diversities)), steps.size)
    kind = "predictions" if task.family == "regression" else "log_probs"
    transformer = np.stack([mixture_output(per_run[r], w[c], kind) for c, r in enumerate(run)])
    return evidence_from_arrays(task, strategies, transformer.astype(np.float32), per_run.astype(np.float32),
                                diversity=diversity, step=step, seed=np.full(diversity.size, seed),
                                loss=loss, complexity=complexity, cutoff=cutoff,
                                target=None, run=run)


def synthetic_terms(task, strategies: Sequence[str], pools: dict, loss_sequences: int = 512):
    """L̄_s(D) and K_s(D) of the pools of `strategy_outputs` (not cached on disk)."""
    from ..evidence.terms import strategy_terms

    return strategy_terms(task, tuple(strategies), pools, num_sequences=loss_sequences, cache=False)


def mixture_output(strategy_outputs: np.ndarray, weights: np.ndarray, kind: str) -> np.ndarray:
    """Σ_s w_s s for one run: (S, split, B, P, O) outputs, (S,) weights → (split, B, P, O).

    >>> s = np.log(np.array([[0.9, 0.1], [0.5, 0.5]]))[:, None, None, None, :]
    >>> np.exp(mixture_output(s, np.array([0.5, 0.5]), "log_probs")).round(2).ravel().tolist()
    [0.7, 0.3]
    """
    w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (strategy_outputs.ndim - 1))
    if kind == "predictions":
        return np.sum(w * strategy_outputs, axis=0)
    probs = np.exp(observe.normalize_log_probs(strategy_outputs))
    return observe.log_probs(np.sum(w * probs, axis=0))


def misfit_weights(params, run_sd: float = 0.0, trend_sd: float = 0.0, trend_corr: float = 0.0,
                   noise_sd: float = 0.0, seed: int = 0, strategies: Sequence[str] = ("memorizing", "generalizing")
                   ) -> Weights:
    """A `weights` function for `synthetic_evidence` whose runs misfit the rational model the
    way real runs do: the model's log-odds of M against G at (α, β, γ) = `params`, plus per
    run (one per diversity here) an offset ~ Normal(0, `run_sd`), an AR(1) deviation along the
    run's checkpoints (stationary sd `trend_sd`, lag-1 correlation `trend_corr`) and
    independent noise of sd `noise_sd`, all drawn from `stream((seed, 1), "synthetic")`.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [4, 16], [100, 1000], num_sequences=8, loss_sequences=64,
    ...                         weights=misfit_weights((0.5, 0.3, 1.0), run_sd=1.0, seed=1))
    >>> ev.num_conditions
    4
    """
    from ..seeds import stream

    def weights(loss, complexity, diversity, step):
        names = list(strategies)
        eta, _ = rational.log_weights(params, loss.loc[diversity, names].to_numpy(),
                                      complexity.loc[diversity, names].to_numpy(), np.asarray(step, dtype=np.float64))
        z = np.array(eta[:, 0] - eta[:, 1], dtype=np.float64)
        rng = stream((seed, 1), "synthetic")
        for d in np.unique(diversity):
            rows = np.flatnonzero(diversity == d)
            rows = rows[np.argsort(np.asarray(step)[rows], kind="stable")]
            z[rows] += run_sd * rng.standard_normal()
            deviation = trend_sd * rng.standard_normal()
            for row in rows:
                z[row] += deviation
                deviation = trend_corr * deviation + math.sqrt(1.0 - trend_corr ** 2) * trend_sd * rng.standard_normal()
        z += noise_sd * rng.standard_normal(z.size)
        return 1.0 / (1.0 + np.exp(-z))

    return weights
