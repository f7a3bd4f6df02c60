"""NUTS fit (docs/model.md#nuts): recovery with honest intervals, calibrated predictions, LOO.

Synthetic evidence as in test_fit_map: the "transformer" is the mixture w·M + (1 − w)·G of
the REAL urns strategies (d = 8, T = 32, 32 sequences) on 9 diversities (4 … 1024) × 20
log-spaced steps (20 … 100 000), with w computed in NumPy (tests/fit_reference.py) from known (α, β, γ).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from fit_reference import DIVERSITIES, STEPS, log_odds, random_truths

from bayesicl.inference import compare_variants, fit
from bayesicl.inference.chains import chain_devices
from bayesicl.inference.data import fit_data
from bayesicl.inference.map import fit_map
from bayesicl.inference.model import resolve_priors
from bayesicl.inference.nuts import fit_nuts
from bayesicl.inference.split import fit_split
from bayesicl.inference.synthetic import synthetic_evidence

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
    """The model's own noise (independent per condition), fitted without run effects."""
    covered, checks = 0, 0
    for truth in random_truths(grid, count=5, seed=2024):
        evidence = evidence_for(grid, truth, noise=0.1, seed=1)
        data = fit_data(evidence, fit_split(evidence.conditions, 0.2))
        start = fit_map(data, "urns", seed=0, random_starts=3)
        result = fit_nuts(data, resolve_priors("urns", reference_step=data.reference_step), start, seed=0,
                          effects="none")
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
        result = fit(evidence, method="nuts", seed=seed, random_starts=3, num_chains=2,
                     num_samples=500, num_warmup=500)
        table = result.conditions
        held = table[table["modeled"] & ~table["in_fit"] & table["observed_weight"].notna()]
        assert len(held) == 2 * (20 + 8 * 4)
        inside += int(((held["observed_weight"] >= held["observed_low"])
                       & (held["observed_weight"] <= held["observed_high"])).sum())
        total += len(held)
    assert 0.80 <= inside / total <= 0.97, inside / total


def test_leave_one_run_out_prefers_the_true_model(grid):
    evidence = evidence_for(grid, (0.6, 0.2, 0.85), noise=0.1, seed=3)
    table = compare_variants(evidence, variants=("full", "alpha0"), method="nuts", random_starts=3,
                             num_samples=500, num_warmup=500)
    assert table["variant"].tolist()[0] == "full"
    best, other = table.iloc[0], table.iloc[1]
    assert other["elpd_diff"] > 2 * other["se_diff"], (other["elpd_diff"], other["se_diff"])
    assert (table["n_runs"] == 8).all()         # the fitted diversities, one run each
    assert {"elpd_loro", "se_diff", "max_pareto_k", "heldout_correlation_id", "objective", "rank"} <= set(table.columns)


def test_run_log_likelihood_integrates_the_run_effect_like_a_brute_force_sum(grid):
    """Integrated over u ~ Normal(0, σ_run), a run's likelihood equals a fine Riemann sum of
    Π_c Normal(r_c; ρ(w(z_c + u)), s_c) · φ(u/σ)/σ written here with NumPy (run effects
    without trend: independent conditions)."""
    from scipy.stats import norm

    from bayesicl.inference.compare import run_log_likelihood

    evidence = evidence_for(grid, (0.6, 0.2, 0.85), noise=0.1, seed=3)
    data = fit_data(evidence, fit_split(evidence.conditions, 0.2))
    draws = {"alpha": np.array([0.6]), "beta": np.array([0.2]), "gamma": np.array([0.85]),
             "sigma_obs": np.array([0.01]), "sigma_logit": np.array([0.2]), "sigma_run": np.array([0.7])}
    ours = run_log_likelihood(data, draws, "run")[0]
    rows = data.likelihood_rows
    _, _, (loss, complexity) = grid
    z = log_odds((0.6, 0.2, 0.85), loss, complexity, evidence.conditions["diversity"].to_numpy()[rows],
                 evidence.conditions["step"].to_numpy()[rows])
    u = np.linspace(-6, 6, 4001) * 0.7
    for k, run in enumerate(data.fitted_runs[:3]):
        mine = data.run[rows] == run
        w = 1 / (1 + np.exp(-(z[mine][None, :] + u[:, None])))
        rho, slope = (np.asarray(a) for a in data.curves.with_slope(np.broadcast_to(data.run[rows][mine], w.shape), 0, w))
        scale = np.sqrt(1e-6 + 0.01 ** 2 + (0.2 * slope * w * (1 - w)) ** 2)
        logp = norm.logpdf(data.observed[rows][mine][None, :], rho, scale).sum(axis=1) + norm.logpdf(u, 0, 0.7)
        top = logp.max()
        brute = top + np.log(np.sum(np.exp(logp - top)) * (u[1] - u[0]))
        assert ours[k] == pytest.approx(brute, abs=1e-3)


def test_inference_data_holds_the_groups_arviz_needs(grid):
    evidence = evidence_for(grid, (0.6, 0.2, 0.85), noise=0.1, seed=4)
    result = fit(evidence, method="nuts", random_starts=1)
    idata = result.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive",
                  "predictions"):
        assert group in idata.groups()
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == 1000
    assert result.info["sampler"]["chain_devices"] == chain_devices(4)     # how the chains were split
    assert idata.log_likelihood["r"].dims == ("chain", "draw", "condition")
    assert idata.posterior_predictive["w_M"].sizes["condition"] == evidence.num_conditions
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    summary = result.summary()
    for name in NAMES:
        leaf = summary["params"][name]
        assert leaf["low"] <= leaf["mean"] <= leaf["high"] and leaf["sd"] > 0


def test_a_seen_runs_heldout_conditions_are_forecast_from_its_fit_residuals():
    """condition_on_runs equals Gaussian conditioning on the full joint covariance of each
    run (AR(1) in checkpoint order, docs/model.md#run-effects-and-honest-intervals), leaves
    the given rows and the rows of runs without given rows as they were."""
    from bayesicl.inference.model import RESOLUTION
    from bayesicl.inference.predict import condition_on_runs

    rng = np.random.default_rng(3)
    draws, run = 5, np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2])
    position = np.array([0, 1, 2, 3, 4, 0, 1, 0, 1, 2])
    given = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1], dtype=bool)
    mean, sens = rng.normal(size=(draws, 10)), rng.uniform(0.1, 1.0, size=(draws, 10))
    sigma_obs, sigma_logit = rng.uniform(0.01, 0.1, draws), rng.uniform(0.2, 1.0, draws)
    corr = rng.uniform(0.1, 0.9, draws)
    scale = np.sqrt(RESOLUTION ** 2 + sigma_obs[:, None] ** 2 + (sigma_logit[:, None] * sens) ** 2)
    observed = rng.normal(size=10)
    got_mean, got_scale = condition_on_runs(mean, scale, sens, sigma_obs, sigma_logit, corr, observed, given,
                                            run, position)
    for n in range(draws):
        same_run = run[:, None] == run[None, :]
        lag = np.abs(position[:, None] - position[None, :])
        cov = np.where(same_run, sigma_logit[n] ** 2 * np.outer(sens[n], sens[n]) * corr[n] ** lag, 0.0)
        cov += np.eye(10) * (RESOLUTION ** 2 + sigma_obs[n] ** 2)
        g = np.flatnonzero(given)
        for h in np.flatnonzero(~given):
            if not given[run == run[h]].any():
                assert got_mean[n, h] == mean[n, h] and got_scale[n, h] == scale[n, h]
                continue
            gain = np.linalg.solve(cov[np.ix_(g, g)], cov[g, h])
            assert got_mean[n, h] == pytest.approx(mean[n, h] + gain @ (observed[g] - mean[n, g]), rel=1e-9)
            assert got_scale[n, h] ** 2 == pytest.approx(cov[h, h] - cov[h, g] @ gain, rel=1e-9)
        assert np.array_equal(got_mean[n, given], mean[n, given])
