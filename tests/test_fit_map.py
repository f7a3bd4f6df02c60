"""MAP fit (docs/model.md#map): the paper's objective, computed exactly, minimized from any start.

Synthetic evidence: the "transformer" is the mixture w·M + (1 − w)·G of the REAL urns
strategies (d = 8, T = 32, 32 sequences) on each run's own inputs, over 9 diversities
(4 … 1024) × 20 log-spaced steps (20 … 100 000), with w from known (α, β, γ) computed in
NumPy (tests/fit_reference.py) and per-condition noise on the log-odds (sd 0.1) unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fit_reference import DIVERSITIES, MG, STEPS, log_odds, random_truths

import bayesicl as bic
from bayesicl.inference.data import fit_data
from bayesicl.inference.map import fit_map
from bayesicl.inference.split import fit_split
from bayesicl.inference.synthetic import strategy_outputs, synthetic_evidence, synthetic_terms

PAPER_START = (0.6, 0.2, 0.85)


def evidence_for(grid, params, noise=0.1, seed=0):
    task, outputs, terms = grid

    def weights(loss, complexity, diversity, step):
        z = log_odds(params, loss, complexity, diversity, step)
        z = z + noise * np.random.default_rng(seed).standard_normal(z.size)
        return 1.0 / (1.0 + np.exp(-z))

    return synthetic_evidence(task, DIVERSITIES, STEPS, weights=weights, outputs=outputs, terms=terms)


def direct_objective(evidence, in_fit, params):
    """The paper's objective in float64 NumPy: mean over fit conditions of the mean over
    sequences × positions of KL(T ‖ w M + (1 − w) G), log-probabilities floored at 1e-30 and
    renormalized, the mixture floored at 1e-30."""
    def normalized(log_p):
        log_p = np.maximum(np.asarray(log_p, dtype=np.float64), math.log(1e-30))
        top = log_p.max(axis=-1, keepdims=True)
        return log_p - top - np.log(np.exp(log_p - top).sum(axis=-1, keepdims=True))

    table = evidence.conditions
    split = list(evidence.arrays["split"].values).index("id")
    z = log_odds(params, evidence.loss, evidence.complexity, table["diversity"].to_numpy(), table["step"].to_numpy())
    w_m = 1.0 / (1.0 + np.exp(-z))
    values = []
    for c in np.flatnonzero(in_fit):
        log_t = normalized(evidence.arrays["transformer"].values[c, split])
        run = table["run"][c]
        p_m, p_g = (np.exp(normalized(evidence.arrays["strategy"].values[run, s, split])) for s in (0, 1))
        h = np.maximum(w_m[c] * p_m + (1 - w_m[c]) * p_g, 1e-30)
        values.append(np.sum(np.exp(log_t) * (log_t - np.log(h)), axis=-1).mean())
    return float(np.mean(values))


@pytest.fixture(scope="module")
def paper_truth(grid):
    evidence = evidence_for(grid, PAPER_START)
    return evidence, fit_data(evidence, fit_split(evidence.conditions, 0.2))


def test_split_fits_the_smallest_diversities_and_earliest_checkpoints(paper_truth):
    evidence, data = paper_truth
    table = evidence.conditions
    expected = table["diversity"].isin(DIVERSITIES[:math.ceil(0.8 * 9)]) & table["step"].isin(STEPS[:16])
    np.testing.assert_array_equal(data.in_fit, expected.to_numpy())
    assert data.in_fit.sum() == 8 * 16


def test_map_objective_equals_a_direct_float64_computation(paper_truth):
    evidence, data = paper_truth
    result = fit_map(data, "urns", seed=0)
    params = (result.params["alpha"], result.params["beta"], result.params["gamma"])
    assert result.objective == pytest.approx(direct_objective(evidence, data.in_fit, params), rel=1e-5)
    # The exact evaluation at any other point agrees too (not only at the optimum).
    other = (0.5, 0.25, 2.0)
    z = log_odds(other, evidence.loss, evidence.complexity, evidence.conditions["diversity"].to_numpy(),
                 evidence.conditions["step"].to_numpy())[data.in_fit]
    w = 1.0 / (1.0 + np.exp(-z))
    exact = data.objective.exact(np.stack([w, 1 - w], axis=1))
    assert exact == pytest.approx(direct_objective(evidence, data.in_fit, other), rel=1e-5)


def test_hermite_surrogate_tracks_the_exact_objective(paper_truth):
    _, data = paper_truth
    rng = np.random.default_rng(7)
    w = rng.uniform(0.0, 1.0, data.objective.num_conditions)
    weights = np.stack([w, 1 - w], axis=1)
    exact = data.objective.exact(weights)
    assert float(data.objective.surrogate(weights)) == pytest.approx(exact, rel=1e-4)


def test_map_reaches_the_same_optimum_from_the_paper_start_and_random_starts(paper_truth):
    _, data = paper_truth
    rng = np.random.default_rng(11)
    starts = [dict(zip(("alpha", "beta", "gamma"), PAPER_START))]
    starts += [{"alpha": rng.uniform(0.1, 0.95), "beta": math.exp(rng.uniform(math.log(0.05), math.log(1.0))),
                "gamma": 0.85 * math.exp(rng.uniform(math.log(0.01), math.log(100.0)))} for _ in range(4)]
    results = [fit_map(data, "urns", starts=[start]) for start in starts]
    best = min(r.objective for r in results)
    for start, result in zip(starts, results):
        assert result.objective == pytest.approx(best, rel=1e-5), start
        for name in ("alpha", "beta", "gamma"):
            assert result.params[name] == pytest.approx(results[0].params[name], rel=1e-3)


def test_map_recovers_known_parameters_within_five_percent(grid):
    for truth in random_truths(grid, count=5, seed=2024):
        evidence = evidence_for(grid, truth, noise=0.1, seed=1)
        data = fit_data(evidence, fit_split(evidence.conditions, 0.2))
        estimate = fit_map(data, "urns", seed=0).params
        for name, value in zip(("alpha", "beta", "gamma"), truth):
            assert estimate[name] == pytest.approx(value, rel=0.05), (name, truth, estimate)


def test_constant_complexity_variant_freezes_complexity_at_the_smallest_diversity(paper_truth):
    evidence, _ = paper_truth
    frozen = fit_data(evidence, fit_split(evidence.conditions, 0.2), variant="constant_complexity")
    np.testing.assert_array_equal(frozen.complexity.to_numpy(),
                                  np.broadcast_to(evidence.complexity.loc[4].to_numpy(), frozen.complexity.shape))


def test_regression_objective_is_the_exact_mean_squared_error():
    task = bic.task("regression", num_dims=4, context_length=8)
    truth = (0.65, 0.3, 0.01)
    outputs = strategy_outputs(task, MG, (4, 16, 64), num_sequences=16, seed=0)
    terms = synthetic_terms(task, MG, outputs[1], loss_sequences=256)
    steps = np.unique(np.geomspace(20, 100_000, 8).astype(np.int64))

    def weights(loss, complexity, diversity, step):
        z = log_odds(truth, loss, complexity, diversity, step)
        return 1.0 / (1.0 + np.exp(-(z + 0.1 * np.random.default_rng(0).standard_normal(z.size))))

    evidence = synthetic_evidence(task, (4, 16, 64), steps, weights=weights, outputs=outputs, terms=terms)
    data = fit_data(evidence, np.ones(evidence.num_conditions, bool))
    rng = np.random.default_rng(3)
    w = rng.uniform(-0.2, 1.2, evidence.num_conditions)
    t = evidence.arrays["transformer"].values[:, 0, :, :, 0].astype(np.float64)           # ID split
    s = evidence.arrays["strategy"].values[:, :, 0, :, :, 0].astype(np.float64)
    run = evidence.conditions["run"].to_numpy()
    direct = np.mean([np.mean((t[c] - w[c] * s[run[c], 0] - (1 - w[c]) * s[run[c], 1]) ** 2) for c in range(len(w))])
    assert data.objective.exact(np.stack([w, 1 - w], axis=1)) == pytest.approx(direct, rel=1e-10)
    assert float(data.objective.surrogate(np.stack([w, 1 - w], axis=1))) == pytest.approx(direct, rel=1e-10)


def test_three_strategy_objective_is_computed_from_the_tokens():
    task = bic.task("urns", num_dims=4, context_length=8)
    kinds = ("memorizing", "generalizing", "constant")
    outputs = strategy_outputs(task, kinds, (4, 32), num_sequences=8, seed=0)
    terms = synthetic_terms(task, kinds, outputs[1], loss_sequences=64)
    rng = np.random.default_rng(5)
    evidence = synthetic_evidence(task, (4, 32), [10, 100, 1000], outputs=outputs, terms=terms, strategies=kinds,
                                  weights=lambda *a: rng.dirichlet(np.ones(3), size=6))
    data = fit_data(evidence, np.ones(6, bool))
    assert data.objective.mode == "tokens"
    w = rng.dirichlet(np.ones(3), size=6)
    probs = np.exp(evidence.arrays["strategy"].values.astype(np.float64))
    probs /= probs.sum(-1, keepdims=True)
    direct = []
    for c in range(6):
        log_t = evidence.arrays["transformer"].values[c, 0].astype(np.float64)
        log_t -= np.log(np.exp(log_t).sum(-1, keepdims=True))
        h = np.einsum("s,sbpo->bpo", w[c], probs[evidence.conditions["run"][c], :, 0])
        direct.append(np.sum(np.exp(log_t) * (log_t - np.log(h)), -1).mean())
    assert data.objective.exact(w) == pytest.approx(np.mean(direct), rel=1e-8)
    assert float(data.objective.surrogate(w)) == pytest.approx(np.mean(direct), rel=1e-8)


def test_ablations_never_beat_the_full_model_they_restrict(paper_truth):
    from bayesicl.inference import compare_variants

    evidence, _ = paper_truth
    table = compare_variants(evidence, method="map", random_starts=2).set_index("variant")
    assert set(table.index) == {"full", "alpha0", "beta1", "gamma1", "constant_complexity"}
    assert table.loc["full", "rank"] == 1
    assert table.loc["alpha0", "alpha"] == 0.0 and table.loc["beta1", "beta"] == 1.0
    assert table.loc["gamma1", "gamma"] == 1.0
    for nested in ("alpha0", "beta1", "gamma1"):          # the full model contains these
        assert table.loc["full", "objective"] <= table.loc[nested, "objective"] * (1 + 1e-9)
    assert table.loc["full", "heldout_correlation_id"] > table.loc["alpha0", "heldout_correlation_id"]
