"""Leave-one-configuration-out validation of the pooling choices (docs/model.md#population-model).

For each configuration k, the population is refitted without k and k's observed weights are
predicted from what the fit implies for a configuration it never saw:

- "partial": θ_k = μ + B x_k + diag(τ) L z, z ~ N(0, I) per posterior draw (x_k standardized
  as the training configurations were);
- "full": the shared θ;
- "none": no population, hence no θ for k: the fit of the nearest configuration (closest in
  standardized log covariates; ties to the first) is used, and the table says which.

Every modeled condition of k (ID and OOD) is scored with a new run effect per run
(Normal(0, σ_run) per draw) and noise scales: for "partial" and "full" a fresh draw from the
population of configurations' noise scales (`bayesicl.inference.population_model.new_noise`), with
the variance of a trend that starts at zero; for "none" the nearest configuration's own (a
stationary trend). OOD uses the ID noise scales (k has
no OOD stage), so OOD elpd and coverage are reported but measure a harder question. Columns:
held_out, pool, scored_with, n_conditions, elpd_id (Σ over conditions of the pointwise log
predictive density of the unclipped r), elpd_id_mean (per condition), elpd_ood,
correlation_id/ood (Pearson, expected observed weight vs observed weight), tvd_id/ood (mean
over conditions, `bayesicl.metrics`), coverage_id/ood (share of observed weights inside the
90% posterior-predictive interval), extrapolates (k's covariates outside the training range).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import BayesiclError
from ..seeds import stream
from .observation import relative_distance_curves
from .population import build_configuration_evidence, fit_population
from .population_data import configurations, covariate_matrix
from .data import checkpoint_order
from .population_model import POOLS, TREND_START, new_noise, new_theta, theta_params
from .predict import (HIGH, LOW, log_predictive_density, observation_moments, observed_weight_draws, start_trend,
                      weights_for)

COLUMNS = ["held_out", "pool", "scored_with", "n_conditions", "elpd_id", "elpd_id_mean", "elpd_ood",
           "correlation_id", "correlation_ood", "tvd_id", "tvd_ood", "coverage_id", "coverage_ood",
           "extrapolates", "runtime_s"]


def cross_validate(runs, by: str = "config", pools: Sequence[str] = ("partial", "none", "full"),
                   covariates: Sequence[str] | None = None, seed: int = 0, num_chains: int = 4,
                   num_samples: int = 1000, num_warmup: int = 1000, effects: str | None = None,
                   holdout: float = 0.0, strategies=None, cutoff="paper", loss_sequences: int | None = None,
                   progress: bool = False, on_row=None) -> pd.DataFrame:
    """Leave-one-configuration-out table (one row per held-out configuration and pool; see
    the module docstring). `runs` as for `fit_population` (at least 3 configurations);
    training fits use `holdout` (default 0: every modeled condition of the other
    configurations) and skip the OOD stage. Seeded: the same arguments give the same table.
    `on_row`, if given, is called with the table so far after every row (to save partial
    results of a long run).

    Example: ``cross_validate("data/runs/urns-grid", pools=("partial", "none"))`` (a
    NUTS fit per held-out configuration and pool: minutes per fit on a CPU).
    """
    if by != "config":
        raise BayesiclError(f"cross_validate: by={by!r} is not supported; use by='config'")
    unknown = [p for p in pools if p not in POOLS]
    if unknown or not pools:
        raise BayesiclError(f"cross_validate: unknown pool(s) {unknown}; choose from {POOLS}")
    configs = configurations(runs, covariates)
    if len(configs) < 3:
        raise BayesiclError(f"cross_validate needs at least 3 configurations (fits of the others need 2), got {len(configs)}")
    evidence = build_configuration_evidence(configs, strategies, cutoff, loss_sequences, progress)
    names = [c.name for c in configs]
    spec_all, x_all = covariate_matrix(configs, covariates)
    common = dict(seed=seed, num_chains=num_chains, num_samples=num_samples, num_warmup=num_warmup,
                  effects=effects, holdout=holdout, progress=progress)
    rows = []
    single = None
    if "none" in pools:
        clock = time.perf_counter()
        single = fit_population(evidence, pool="none", covariates=covariates, **common)
        single_time = (time.perf_counter() - clock) / len(configs)
    for k, name in enumerate(names):
        others = [e for j, e in enumerate(evidence) if j != k]
        for pool in pools:
            clock = time.perf_counter()
            rng = stream((seed, 10, k), "fit")
            extrapolates = False
            if pool == "none":
                distance = np.sum((x_all - x_all[k]) ** 2, axis=1)
                distance[k] = np.inf
                nearest = names[int(np.argmin(distance))]
                draws = single.fits[nearest].draws
                params = {p: draws[p] for p in ("alpha", "beta", "gamma")}
                scored_with = f"nearest configuration {nearest}"
                elapsed = single_time
            else:
                result = fit_population(others, pool=pool, covariates=covariates, ood_stage=False, **common)
                # The held-out configuration's noise scales: fresh draws from the population's.
                draws = new_noise(result.state["noise_draws"], rng)
                if pool == "partial":
                    spec = result.state["covariates"]
                    values = configs[k].covariates
                    extrapolates = any(values[n] < lo or values[n] > hi for n, lo, hi in zip(spec.names, spec.low, spec.high))
                    theta = new_theta(result.state["population_draws"], spec.transform(values), rng)
                    params = theta_params(theta, result.state["reference_step"])
                    scored_with = "population draw for the held-out covariates"
                else:
                    first = next(iter(result.fits.values())).draws
                    params = {p: first[p] for p in ("alpha", "beta", "gamma")}
                    scored_with = "shared (alpha, beta, gamma)"
                elapsed = time.perf_counter() - clock
            scores = score_configuration(evidence[k], params, draws, rng,
                                         trend_start="stationary" if pool == "none" else TREND_START)
            rows.append({"held_out": name, "pool": pool, "scored_with": scored_with, **scores,
                         "extrapolates": extrapolates, "runtime_s": elapsed})
            if on_row is not None:
                on_row(pd.DataFrame(rows, columns=COLUMNS))
    return pd.DataFrame(rows, columns=COLUMNS)


def score_configuration(evidence, params: Mapping[str, np.ndarray], noise: Mapping[str, np.ndarray],
                        rng: np.random.Generator, trend_start: str = "stationary") -> dict:
    """Scores of (α, β, γ) draws `params` on every modeled condition of `evidence` (two
    strategies), with a new run effect per run from σ_run and the noise scales of `noise`
    (whose log-odds deviation has the variance of the fitted model's trend at each condition's
    checkpoint, `bayesicl.inference.predict.trend_share`)."""

    if len(evidence.strategies) != 2:
        raise BayesiclError("cross_validate scores fits of two strategies")
    table = evidence.conditions
    modeled = table["modeled"].to_numpy(dtype=bool)
    rows = np.flatnonzero(modeled)
    diversity = table["diversity"].to_numpy()[rows]
    loss = evidence.loss.loc[diversity].to_numpy(dtype=np.float64)
    complexity = evidence.complexity.loc[diversity].to_numpy(dtype=np.float64)
    step = table["step"].to_numpy(dtype=np.float64)[rows]
    run = table["run"].to_numpy()[rows]
    position = checkpoint_order(table["run"].to_numpy(), table["step"].to_numpy())[rows]
    curves = relative_distance_curves(evidence)
    n = np.asarray(params["alpha"]).size
    pick = np.arange(n) % np.asarray(noise["sigma_obs"]).size
    sigma_obs, sigma_logit = (np.asarray(noise[k])[pick] for k in ("sigma_obs", "sigma_logit"))
    runs, column = np.unique(run, return_inverse=True)
    offset = np.zeros((n, rows.size))
    if "sigma_run" in noise:
        offset = (rng.standard_normal((n, runs.size)) * np.asarray(noise["sigma_run"])[pick][:, None])[:, column]
    out = {"n_conditions": int(rows.size)}
    weights = weights_for(params, evidence.loss.loc[table["diversity"]].to_numpy(dtype=np.float64),
                          evidence.complexity.loc[table["diversity"]].to_numpy(dtype=np.float64),
                          table["step"].to_numpy(dtype=np.float64)).mean(axis=0)
    metric_table = metrics.condition_metrics(evidence, weights / weights.sum(axis=1, keepdims=True))
    for k, split in enumerate(("id", "ood")):
        mean, scale, sensitivity = observation_moments(params, offset, sigma_obs, sigma_logit, loss, complexity,
                                                       step, curves, run, k, with_sensitivity=True)
        if "trend_corr" in noise:
            scale = start_trend(scale, sensitivity, sigma_logit, np.asarray(noise["trend_corr"])[pick], position,
                                trend_start)
        observed_r = table[f"r_{split}"].to_numpy(dtype=np.float64)[rows]
        observed = table[f"observed_weight_{split}"].to_numpy(dtype=np.float64)[rows]
        lpd = log_predictive_density(mean, scale, observed_r)
        finite = np.isfinite(lpd)
        if split == "id":
            out["elpd_id"] = float(lpd[finite].sum())
            out["elpd_id_mean"] = float(lpd[finite].mean()) if finite.any() else np.nan
        else:
            out["elpd_ood"] = float(lpd[finite].sum())
        draws = observed_weight_draws(mean, scale, rng)
        low, high = np.quantile(draws, [LOW, HIGH], axis=0)
        ok = np.isfinite(observed)
        out[f"coverage_{split}"] = float(np.mean((observed[ok] >= low[ok]) & (observed[ok] <= high[ok])))
        mean0, _ = observation_moments(params, np.zeros((1, rows.size)), sigma_obs, sigma_logit, loss, complexity,
                                       step, curves, run, k)
        expected = ((np.clip(mean0, -1.0, 1.0) + 1.0) / 2.0).mean(axis=0)
        out[f"correlation_{split}"] = (float(np.corrcoef(expected[ok], observed[ok])[0, 1])
                                       if ok.sum() > 2 and np.std(observed[ok]) > 0 else np.nan)
        if "tvd" in metric_table.columns:
            tvd = metric_table[(metric_table["split"] == split) & metric_table["condition"].isin(table["condition"][rows])]
            out[f"tvd_{split}"] = float(tvd["tvd"].mean())
        else:
            out[f"tvd_{split}"] = np.nan
    return out
