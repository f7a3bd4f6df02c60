"""NUTS fit (SPEC §8): recovery with honest intervals, calibrated predictions, LOO.

Synthetic evidence as in test_fit_map: the "transformer" is the mixture w·M + (1 − w)·G of
the REAL urns strategies (d = 8, T = 32, 32 sequences) on 9 diversities (4 … 1024) × 20
log-spaced steps (20 … 100 000), with w computed in NumPy (tests/fit_reference.py) from known (α, β, γ).
"""

from __future__ import annotations

import arviz as az
import numpy as np
from fit_reference import DIVERSITIES, STEPS, log_odds, random_truths

from bayesicl.fit import compare_variants, fit
from bayesicl.fit.data import fit_data
from bayesicl.fit.map import fit_map
from bayesicl.fit.model import resolve_priors
from bayesicl.fit.nuts import fit_nuts
from bayesicl.fit.split import fit_split
from bayesicl.fit.synthetic import synthetic_evidence

NAMES = ("alpha", "beta", "gamma")


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
