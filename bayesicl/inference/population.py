"""Fits across configurations: `fit_population` with partial, full or no pooling of (α, β, γ)
(docs/model.md#population-model), and its result `PopulationResult`.

- pool "none": the single-configuration `bayesicl.inference.fit` per configuration (the paper's practice);
- pool "full": one shared (α, β, γ) for every configuration;
- pool "partial" (default with more than one configuration): θ_j = μ + B x_j + diag(τ) L z_j
  (`bayesicl.inference.population_model`).

Every configuration's conditions are split, predicted and scored exactly as a single fit's
(`bayesicl.inference.pipeline`); the OOD noise is estimated per configuration in the cut stage of
`bayesicl.inference.cut`, so OOD data never inform θ. Predicting a configuration nobody trained:
`PopulationResult.predict` (`bayesicl.inference.population_predict`); leave-one-configuration-out
validation: `bayesicl.inference.population_cv.cross_validate`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from .. import metrics, rational
from ..atomic import _jsonable
from ..errors import BayesiclError
from ..evidence import build_evidence
from . import guards as guard
from .cut import fit_ood_stage
from .data import fit_data
from .map import RANDOM_STARTS, fit_map
from .model import check_effects, resolve_priors
from .nuts import NutsResult
from .pipeline import (_condition_table, _coverage, _effects_summary, _elpd, _info, _ood_stage_guard, _predictive,
                       _transition_records, fit)
from .population_data import Configuration, Covariates, configurations, covariate_matrix, stack
from .population_model import POOLS, TREND_START, config_draws, noise_draws, population_draws, sample_population
from .population_result import PopulationResult
from .predict import HIGH, LOW, transition_table
from .result import FitResult, param_summary
from .split import fit_split
from .synthetic import THETA_NAMES

#: Leapfrog steps of a NUTS tree at the default maximum depth 10.
MAX_STEPS = 2 ** 10 - 1

__all__ = ["PopulationResult", "fit_population", "configurations", "Configuration"]


def fit_population(runs_or_folder, pool: str | None = None, covariates: Sequence[str] | None = None,
                   method: str = "nuts", seed: int = 0, num_chains: int = 4, num_samples: int = 1000,
                   num_warmup: int = 1000, holdout: float = 0.2, effects: str | None = None,
                   priors: Mapping | None = None, progress: bool = False, strategies=None,
                   cutoff="paper", loss_sequences: int | None = None, ood_stage: bool = True,
                   random_starts: int = RANDOM_STARTS) -> PopulationResult:
    """Fit every configuration of a runs folder (or list of runs, or list of Evidence, one
    per configuration) with `pool` "partial" (default with more than one configuration),
    "full" or "none" (default with one). `covariates` chooses the settings of x_j (default:
    the log of every numeric setting that varies). `method` "map" is allowed with pool
    "none" only. `effects`, `priors`, `holdout`, the sampler sizes and `seed` are those of
    `bayesicl.inference.fit`; the evidence of each configuration is `build_evidence`'s (cached).
    `ood_stage=False` skips the OOD cut stage (OOD intervals then use the ID noise).

    >>> import bayesicl as bic
    >>> from bayesicl.inference.synthetic import synthetic_population
    >>> pop = synthetic_population(bic.task("urns", num_dims=4, context_length=8), {"mlp_width": [32, 64]},
    ...                            [4, 8, 16], [100, 300, 1000, 3000], num_sequences=4, loss_sequences=32)
    >>> result = fit_population(pop.evidence, pool="none", method="map", random_starts=1)
    >>> result.configurations["configuration"].tolist()
    ['mlp_width=32', 'mlp_width=64']
    """
    clock = time.perf_counter()
    configs = configurations(runs_or_folder, covariates)
    pool = ("partial" if len(configs) > 1 else "none") if pool is None else pool
    if pool not in POOLS:
        raise BayesiclError(f"unknown pool {pool!r}; expected one of {', '.join(POOLS)}")
    if pool == "partial" and len(configs) < 2:
        raise BayesiclError("partial pooling needs at least 2 configurations; this data has one (use pool='none')")
    if method not in ("map", "nuts"):
        raise BayesiclError(f"unknown fit method {method!r}; expected 'map' or 'nuts'")
    if method == "map" and pool != "none":
        raise BayesiclError(f"pool {pool!r} is a Bayesian model: use method='nuts' (or pool='none' for per-"
                            "configuration MAPs)")
    evidence = build_configuration_evidence(configs, strategies, cutoff, loss_sequences, progress)
    family = evidence[0].task.family
    names = [c.name for c in configs]
    if len({tuple(e.strategies) for e in evidence}) > 1:
        raise BayesiclError("configurations were built with different strategies; fit them with the same ones")
    spec, x = (covariate_matrix(configs, covariates) if pool == "partial"
               else (covariate_matrix(configs, covariates)[0] if len(configs) > 1 else None, None))
    sampler = {"num_chains": num_chains, "num_samples": num_samples, "num_warmup": num_warmup}
    population = samples = diverging = diagnostics = None
    if pool == "none":
        fits = {name: fit(ev, method=method, holdout=holdout, priors=priors, seed=seed, effects=effects,
                          random_starts=random_starts, progress=progress, **sampler)
                for name, ev in zip(names, evidence)}
        reference = None
    else:
        effects = check_effects(effects, len(evidence[0].strategies))
        datas = [fit_data(ev, fit_split(ev.conditions, holdout)) for ev in evidence]
        # The MAPs only start the chains: one random start besides the paper's is enough.
        maps = [fit_map(d, family, seed=seed, random_starts=min(random_starts, 1)) for d in datas]
        stacked = stack(datas)
        reference = stacked.reference_step
        resolved = resolve_priors(family, priors, reference)
        x_used = x if pool == "partial" else np.zeros((len(configs), 0))
        out = sample_population(stacked, x_used, [m.params for m in maps], resolved, pool, effects, seed=seed,
                                progress=progress, **sampler)
        samples, diverging = out["samples"], out["diverging"]
        diagnostics = population_diagnostics(samples, diverging, pool, effects, num_steps=out["num_steps"])
        fits = {}
        for j, (name, ev, data, map_result) in enumerate(zip(names, evidence, datas, maps)):
            draws = config_draws(samples, j, stacked.run_columns[j], effects)
            fits[name] = configuration_result(ev, data, map_result, draws, resolved, effects, seed, diagnostics,
                                              ood_stage, holdout, loss_sequences, sampler, pool)
        if pool == "partial":
            population = population_summary(population_draws(samples), spec)
    result = assemble(configs, evidence, fits, pool, spec, samples, diverging, population, reference, seed,
                      loss_sequences, effects, sampler, method, holdout,
                      diagnostics=diagnostics)
    result.report["runtime_s"] = time.perf_counter() - clock
    return result


def build_configuration_evidence(configs: Sequence[Configuration], strategies, cutoff, loss_sequences,
                                 progress: bool) -> list:
    """Each configuration's evidence (`build_evidence` on its runs, cached), kept on it and
    labelled with the configuration's name (the `configuration` level of its conditions)."""
    for config in configs:
        if config.evidence is None:
            config.evidence = build_evidence(config.runs, strategies=tuple(strategies) if strategies else None,
                                             cutoff=cutoff, loss_sequences=loss_sequences, progress=progress)
        if config.evidence.configuration != config.name:
            config.evidence = config.evidence.with_configuration(config.name)
    return [c.evidence for c in configs]


def configuration_result(evidence, data, map_result, draws, priors, effects, seed, diagnostics, ood_stage,
                         holdout, loss_sequences, sampler, pool) -> FitResult:
    """One configuration's `FitResult` from its draws of the joint posterior: the predictive,
    condition table, metrics, N* and report exactly as `bayesicl.inference.fit` computes them."""
    runs = data.fitted_runs
    nuts = NutsResult(draws=draws, idata=None, diagnostics=diagnostics, runtime_s=0.0, effects=effects, runs=runs,
                      trend_start=TREND_START)
    stage = fit_ood_stage(data, draws, runs, priors, effects, seed=seed) if ood_stage else None
    params = {k: float(draws[k].mean()) for k in rational.PARAMETERS}
    predictive = _predictive(data, nuts, stage, seed)
    table, weights, expected = _condition_table(data, params, draws, predictive)
    metric_table = metrics.condition_metrics(evidence, weights)
    table = table.merge(metric_table.drop(columns=["run", "diversity", "seed", "step"]),
                        on=["condition", "split"], how="left")
    last_step = evidence.conditions.groupby("diversity")["step"].max().to_dict()
    transitions = transition_table(params, data.loss, data.complexity, draws, last_step=last_step)
    modeled = evidence.conditions["modeled"].to_numpy(dtype=bool)
    identified, unidentified = guard.identification_guard(evidence.conditions, data.in_fit, map_result)
    warnings = (unidentified + guard.interpolation_guard(evidence.dataset)
                + guard.strategy_distance_guard(evidence.dataset) + guard.transition_guard(transitions)
                + guard.split_guard(data.in_fit, modeled) + _ood_stage_guard(stage))
    info = _info(evidence, data, map_result, priors, seed, holdout, None, loss_sequences, "nuts",
                 sampler["num_chains"], sampler["num_samples"], sampler["num_warmup"], "sequential", effects)
    info["pool"] = pool
    report = _jsonable({
        "task": evidence.task.family, "settings": evidence.settings, "strategies": list(evidence.strategies),
        "method": "nuts", "pool": pool, "identified": identified,
        "params": param_summary(params, draws, map_result.params, None),
        "metrics": metrics.summarize_metrics(evidence, weights, data.in_fit, table=metric_table,
                                             expected_observed=expected),
        "coverage": _coverage(table), "elpd": _elpd(table),
        "effects": _effects_summary(evidence, nuts, stage, effects),
        "transition_steps": _transition_records(transitions), "guards": warnings,
        "ood_stage_divergences": stage.divergences if stage is not None else None})
    return FitResult(task=evidence.task, settings=evidence.settings, strategies=evidence.strategies,
                     method="nuts", variant="full", cutoff_step=int(evidence.cutoff_step), params=params,
                     conditions=table, idata=None, loss=data.loss, complexity=data.complexity, draws=draws,
                     report=report, info=info, evidence_conditions=evidence.conditions.copy())


def population_diagnostics(samples: Mapping[str, np.ndarray], diverging: np.ndarray, pool: str,
                           effects: str, num_steps: np.ndarray | None = None) -> dict[str, Any]:
    """r̂ (max) and bulk ESS (min) over μ, B, τ (or the shared θ), every configuration's α,
    β, γ, the noise scales and run effects; divergent transitions; with `num_steps` (chain,
    draw) the leapfrog steps per draw (mean, and the share at NUTS's maximum tree depth 10,
    1023 steps: a share near 1 means the sampler is fighting the posterior's geometry).
    (L's fixed entries and z, a re-expression of θ_j given μ, B, τ, are left out.)"""
    names = ["config_alpha", "config_beta", "config_gamma", "sigma_obs", "sigma_logit"]
    names += [k for k in ("mu", "B", "tau", "sigma_run", "trend_corr", "run_effect", "config_sigma_obs",
                          "config_sigma_logit", "sigma_obs_spread", "sigma_logit_spread") if k in samples]
    data = az.from_dict(posterior={k: samples[k] for k in names})
    rhat, ess = az.rhat(data), az.ess(data, method="bulk")
    values_r = np.concatenate([np.ravel(rhat[k].values) for k in names])
    values_e = np.concatenate([np.ravel(ess[k].values) for k in names])
    finite_r, finite_e = values_r[np.isfinite(values_r)], values_e[np.isfinite(values_e)]
    return {"r_hat_max": float(finite_r.max()) if finite_r.size else None,       # None with one chain
            "ess_bulk_min": float(finite_e.min()) if finite_e.size else None, "divergences": int(np.sum(diverging)),
            "num_chains": int(diverging.shape[0]), "num_draws": int(diverging.shape[1]),
            **({"steps_mean": float(np.mean(num_steps)), "max_depth_share": float(np.mean(num_steps >= MAX_STEPS))}
               if num_steps is not None else {})}


def _interval(values) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    low, high = np.quantile(values, [LOW, HIGH])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def population_summary(draws: Mapping[str, np.ndarray], spec: Covariates) -> dict[str, Any]:
    """μ, B, τ with mean and 90% interval per parameter (and covariate), and the correlation
    matrix of θ's between-configuration deviations, L Lᵀ (posterior mean)."""
    corr = np.einsum("nij,nkj->nik", draws["L"], draws["L"]).mean(axis=0)
    return {
        "parameters": list(THETA_NAMES), "covariates": spec.to_json(),
        "mu": {p: _interval(draws["mu"][:, k]) for k, p in enumerate(THETA_NAMES)},
        "B": {p: {c: _interval(draws["B"][:, k, i]) for i, c in enumerate(spec.names)}
              for k, p in enumerate(THETA_NAMES)},
        "tau": {p: _interval(draws["tau"][:, k]) for k, p in enumerate(THETA_NAMES)},
        "correlation": corr.round(4).tolist()}


def assemble(configs, evidence, fits: dict[str, FitResult], pool, spec, samples, diverging, population,
             reference, seed, loss_sequences, effects, sampler, method, holdout,
             diagnostics: dict | None = None) -> PopulationResult:
    """Tables, InferenceData and report from the per-configuration fits."""
    names = [c.name for c in configs]
    covariate_names = sorted(set().union(*(c.covariates for c in configs)))
    rows, frames, transitions = [], [], []
    for config, ev in zip(configs, evidence):
        result = fits[config.name]
        row = {"configuration": config.name, **{k: config.covariates.get(k) for k in covariate_names},
               "n_runs": int(ev.conditions["run"].nunique())}
        for name in rational.PARAMETERS:
            row[name] = result.params[name]
            if result.draws is not None:
                row[f"{name}_low"], row[f"{name}_high"] = np.quantile(result.draws[name], [LOW, HIGH])
            else:
                row[f"{name}_low"] = row[f"{name}_high"] = np.nan
        rows.append(row)
        frames.append(result.conditions.assign(configuration=config.name))
        steps = result.transition_steps().rename(columns={"transition_low": "low", "transition_high": "high"})
        transitions.append(steps.assign(configuration=config.name))
    table = pd.DataFrame(rows)
    conditions = pd.concat(frames, ignore_index=True)
    conditions.insert(0, "configuration", conditions.pop("configuration"))
    steps = pd.concat(transitions, ignore_index=True)
    order = ["configuration", "diversity", "transition_step", "low", "high"]
    steps = steps[order + [c for c in steps.columns if c not in order]]
    idata = _inference_data(names, fits, samples, diverging, pool, spec)
    if diagnostics is None and samples is not None:
        diagnostics = population_diagnostics(samples, diverging, pool, effects)
    elif diagnostics is None:
        per = [f.report.get("diagnostics") or {} for f in fits.values()]
        diagnostics = {"r_hat_max": _extreme(per, "r_hat_max", max), "ess_bulk_min": _extreme(per, "ess_bulk_min", min),
                       "divergences": _extreme(per, "divergences", sum)}
    sampler_guards = (guard.sampler_guard(diagnostics) if diagnostics.get("r_hat_max") is not None
                      and diagnostics.get("ess_bulk_min") is not None else [])
    warnings = sampler_guards + [f"[{n}] {w}" for n, f in fits.items() for w in f.guards
                                 if not w.startswith("NUTS ")]
    nuts = method == "nuts"
    report = _jsonable({
        "kind": "population", "task": evidence[0].task.family, "strategies": list(evidence[0].strategies),
        "pool": pool, "method": method,
        "effects": effects if pool != "none" else (next(iter(fits.values())).info.get("sampler") or {}).get("effects"),
        "covariates": spec.to_json() if spec is not None else None,
        "reference_step": reference,
        "configurations": [{**r, "settings": c.settings} for r, c in zip(table.to_dict(orient="records"), configs)],
        "population": population, "diagnostics": diagnostics,
        "identified": {n: f.report.get("identified") for n, f in fits.items()},
        "coverage": {"overall": _coverage(conditions) if nuts else None,
                     **{n: f.report.get("coverage") for n, f in fits.items()}},
        "elpd": {"overall": _elpd(conditions) if nuts else None, **{n: f.report.get("elpd") for n, f in fits.items()}},
        "metrics": {n: f.report.get("metrics") for n, f in fits.items()},
        "transition_steps": {n: f.report.get("transition_steps") for n, f in fits.items()},
        "guards": warnings, "seed": seed, "holdout": holdout, "sampler": sampler if nuts else None,
        "interval_level": 0.9, "transition_step_is": "median over posterior draws"})
    state = {"configurations": [{"name": c.name, "settings": c.settings, "task_settings": dict(ev.task.settings),
                                 "covariates": c.covariates} for c, ev in zip(configs, evidence)],
             "covariates": spec, "reference_step": reference, "strategies": list(evidence[0].strategies),
             "family": evidence[0].task.family, "seed": seed, "loss_sequences": loss_sequences,
             "pool_seed": int(evidence[0].conditions["seed"].iloc[0]),
             "zipf": next((c.settings.get("zipf") for c in configs), None),
             "population_draws": population_draws(samples) if pool == "partial" else None,
             "config_draws": {n: ({k: f.draws[k] for k in rational.PARAMETERS} if f.draws is not None
                                  else {k: np.array([v]) for k, v in f.params.items()}) for n, f in fits.items()},
             "noise_draws": noise_draws(samples)}
    return PopulationResult(pool=pool, configurations=table, population=population, conditions=conditions,
                            transitions=steps, idata=idata, report=report, fits=fits, state=state)


def _extreme(items, key, how):
    values = [i.get(key) for i in items if i.get(key) is not None]
    return how(values) if values else None


def _inference_data(names, fits, samples, diverging, pool, spec):
    """The posterior with alpha/beta/gamma (chain, draw, configuration), μ, B, τ, the noise
    scales and run effects; None for MAP fits."""
    coords = {"configuration": names, "parameter": list(THETA_NAMES)}
    dims = {"alpha": ["configuration"], "beta": ["configuration"], "gamma": ["configuration"],
            "theta": ["configuration", "parameter"], "mu": ["parameter"], "tau": ["parameter"],
            "B": ["parameter", "covariate"], "L": ["parameter", "parameter_"], "run_effect": ["run"],
            "config_sigma_obs": ["configuration"], "config_sigma_logit": ["configuration"]}
    if samples is None:
        first = next(iter(fits.values()))
        if first.draws is None or first.idata is None:
            return None
        chains, per_chain = first.idata.posterior.sizes["chain"], first.idata.posterior.sizes["draw"]
        posterior = {k: np.stack([f.draws[k].reshape(chains, per_chain) for f in fits.values()], axis=-1)
                     for k in rational.PARAMETERS}
        return az.from_dict(posterior=posterior, coords=coords, dims=dims)
    posterior = {"alpha": samples["config_alpha"], "beta": samples["config_beta"], "gamma": samples["config_gamma"]}
    for k in ("theta", "mu", "tau", "B", "L", "sigma_obs", "sigma_logit", "sigma_run", "trend_corr", "run_effect",
              "config_sigma_obs", "config_sigma_logit", "sigma_obs_spread", "sigma_logit_spread"):
        if k in samples:
            posterior[k] = samples[k]
    if spec is not None and "B" in samples:
        coords["covariate"] = list(spec.names)
    coords["parameter_"] = list(THETA_NAMES)
    return az.from_dict(posterior=posterior, sample_stats={"diverging": diverging}, coords=coords, dims=dims)
