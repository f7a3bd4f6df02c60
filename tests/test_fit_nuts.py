"""NUTS fit (SPEC §8): recovery with honest intervals, calibrated predictions, LOO.

Synthetic evidence as in test_fit_map: the "transformer" is the mixture w·M + (1 − w)·G of
the REAL urns strategies (d = 8, T = 32, 32 sequences) on 9 diversities (4 … 1024) × 20
log-spaced steps (20 … 100 000), with w computed here in NumPy from known (α, β, γ).
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest

import bayesicl as bic
from bayesicl.fit import compare_variants, fit
from bayesicl.fit.data import fit_data
from bayesicl.fit.map import fit_map
from bayesicl.fit.model import resolve_priors
from bayesicl.fit.nuts import fit_nuts
from bayesicl.fit.split import fit_split
from bayesicl.fit.synthetic import strategy_outputs, synthetic_evidence, synthetic_terms

MG = ("memorizing", "generalizing")
DIVERSITIES = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEPS = np.unique(np.geomspace(20, 100_000, 20).astype(np.int64))
NAMES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def grid():
    task = bic.task("urns", num_dims=8, context_length=32)
    outputs = strategy_outputs(task, MG, DIVERSITIES, num_sequences=32, seed=0)
    terms = synthetic_terms(task, MG, outputs[1], loss_sequences=512)
    return task, outputs, terms


def log_odds(params, loss, complexity, diversity, step):
    """η_M − η_G in NumPy (SPEC §6)."""
    alpha, beta, gamma = params
    lm, lg = loss.loc[diversity, MG[0]].to_numpy(), loss.loc[diversity, MG[1]].to_numpy()
    km, kg = complexity.loc[diversity, MG[0]].to_numpy(), complexity.loc[diversity, MG[1]].to_numpy()
    return -gamma * step.astype(float) ** (1 - alpha) * (lm - lg) - math.log(2) * (km ** beta - kg ** beta)


def evidence_for(grid, params, noise, seed, offset=0.0):
    """Weights from `params`, with per-diversity log-odds offsets (sd `offset`) and
    per-condition log-odds noise (sd `noise`): misfit the model does not know about."""
    task, outputs, terms = grid

    def weights(loss, complexity, diversity, step):
        rng = np.random.default_rng(seed)
        per_diversity = dict(zip(DIVERSITIES, offset * rng.standard_normal(len(DIVERSITIES))))
        z = log_odds(params, loss, complexity, diversity, step)
        z = z + np.array([per_diversity[d] for d in diversity]) + noise * rng.standard_normal(z.size)
        return 1.0 / (1.0 + np.exp(-z))

    return synthetic_evidence(task, DIVERSITIES, STEPS, weights=weights, outputs=outputs, terms=terms)


def random_truths(grid, count, seed):
    """Truths whose N*(D) lies inside the step grid for at least half the diversities."""
    _, _, (loss, complexity) = grid
    rng = np.random.default_rng(seed)
    truths = []
    while len(truths) < count:
        alpha, beta = rng.uniform(0.4, 0.8), rng.uniform(0.1, 0.35)
        target = math.exp(rng.uniform(math.log(100), math.log(5000)))         # N*(D = 16)
        a = math.log(2) * (complexity.loc[16, MG[0]] ** beta - complexity.loc[16, MG[1]] ** beta)
        gamma = a / ((loss.loc[16, MG[1]] - loss.loc[16, MG[0]]) * target ** (1 - alpha))
        b = gamma * (loss[MG[1]] - loss[MG[0]])
        n_star = (math.log(2) * (complexity[MG[0]] ** beta - complexity[MG[1]] ** beta) / b) ** (1 / (1 - alpha))
        if ((n_star >= STEPS[0]) & (n_star <= STEPS[-1])).sum() >= math.ceil(len(DIVERSITIES) / 2):
            truths.append((alpha, beta, gamma))
    return truths


def test_nuts_intervals_contain_the_truth_and_chains_mix(grid):
    covered, checks = 0, 0
    for truth in random_truths(grid, count=5, seed=2024):
        evidence = evidence_for(grid, truth, noise=0.1, seed=1)
        data = fit_data(evidence, fit_split(evidence.conditions, 0.2))
        start = fit_map(data, "urns", seed=0, random_starts=3)
        result = fit_nuts(data, resolve_priors("urns"), start, seed=0)
        assert result.diagnostics["r_hat_max"] <= 1.01, (truth, result.diagnostics)
        assert result.diagnostics["divergences"] == 0, (truth, result.diagnostics)
        for name, value in zip(NAMES, truth):
            low, high = np.quantile(result.draws[name], [0.05, 0.95])
            covered += bool(low <= value <= high)
            checks += 1
    assert checks == 15
    assert covered >= 12


def test_heldout_predictive_intervals_are_calibrated_under_misfit(grid):
    """Misfit: per-diversity log-odds offsets (sd 0.3) and per-condition log-odds noise
    (sd 0.3), pooled over four seeds; the held-out conditions (largest diversity, last 20% of
    steps) are extrapolations, ID and OOD observed weights both count."""
    inside, total = 0, 0
    for seed in range(4):
        evidence = evidence_for(grid, (0.8, 0.15, 1.0), noise=0.3, seed=seed, offset=0.3)
        result = fit(evidence, method="nuts", seed=seed, random_starts=3)
        table = result.conditions
        held = table[table["modeled"] & ~table["in_fit"] & table["observed_weight"].notna()]
        assert len(held) == 2 * (20 + 8 * 4)
        inside += int(((held["observed_weight"] >= held["predicted_low"])
                       & (held["observed_weight"] <= held["predicted_high"])).sum())
        total += len(held)
    assert 0.80 <= inside / total <= 0.97, inside / total


def test_posterior_has_log_likelihood_per_condition_and_loo_prefers_the_true_model(grid):
    evidence = evidence_for(grid, (0.6, 0.2, 0.85), noise=0.1, seed=3)
    table = compare_variants(evidence, variants=("full", "alpha0"), method="nuts", random_starts=3)
    assert table["variant"].tolist()[0] == "full"
    best, other = table.iloc[0], table.iloc[1]
    assert best["elpd_loo"] - other["elpd_loo"] > 4 * other["se_loo"]
    assert {"elpd_loo", "elpd_waic", "heldout_correlation_id", "objective", "rank"} <= set(table.columns)


def test_inference_data_holds_the_groups_arviz_needs(grid):
    evidence = evidence_for(grid, (0.6, 0.2, 0.85), noise=0.1, seed=4)
    result = fit(evidence, method="nuts", random_starts=1)
    idata = result.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive"):
        assert group in idata.groups()
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == 1000
    assert idata.log_likelihood["r"].dims == ("chain", "draw", "condition")
    assert idata.posterior_predictive["w_M"].sizes["condition"] == evidence.num_conditions
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    summary = result.summary()
    for name in NAMES:
        leaf = summary["params"][name]
        assert leaf["hdi_low"] <= leaf["mean"] <= leaf["hdi_high"] and leaf["sd"] > 0
