"""`fit`: evidence (or logged runs) → split → tables → MAP (→ NUTS) → predictions → report."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import arviz
import jax
import numpy as np
import numpyro
import pandas as pd
import xarray as xr

from .. import metrics, rational
from .._version import __version__
from ..atomic import _jsonable
from ..errors import BayesiclError
from ..evidence import Evidence, build_evidence
from . import guards as guard
from ..seeds import stream
from .cut import OodStage, fit_ood_stage
from .data import FitData, fit_data
from .map import MapResult, fit_map
from .model import check_effects, free_parameters, prior_sd, resolve_priors, sampler_coordinates
from .chains import chain_devices
from .nuts import NutsResult, fit_nuts
from .options import FitOptions, fit_options, signature_with_options
from .predict import (HIGH, INTERVAL, LOW, condition_on_runs, log_predictive_density, observation_moments,
                      observed_weight_draws, run_offsets, start_trend, transition_table, weights_for)
from .result import FitResult, json_number, param_summary
from .split import describe_split, fit_split

def fit(evidence_or_runs, options: FitOptions | None = None, /, **changes: Any) -> FitResult:
    """Fit (α, β, γ) of the rational strategy model (docs/model.md#map, docs/model.md#nuts) and report.

    The options are one `FitOptions` (`bayesicl.inference.options`, recorded in fit.json as
    ``info.options``), given as `options`, as keywords (``fit(runs, method="map", seed=1)``)
    or both (the keywords change `options`); the signature lists every option with its default.

    `evidence_or_runs` is a `bayesicl.evidence.Evidence` or what `build_evidence` takes (a
    runs folder or a list of runs; then `strategies`, `cutoff` and `loss_sequences` go to
    it). method "map" minimizes the paper's objective; "nuts" samples the posterior
    (`num_chains` × `num_samples` after `num_warmup`, seeded). `holdout` sets the
    extrapolation split; `variant` one of the ablations ("alpha0", "beta1", "gamma1",
    "constant_complexity"); `priors` overrides priors ({"alpha": "Beta(2,2)", ...});
    `complexity_override` sets K values ({("memorizing", 64): bits} or {kind: {D: bits}});
    `effects` the run-level effects of the NUTS model, "none", "run" or "run+trend" (default:
    "run+trend" with two strategies, see `bayesicl.inference.model`); the MAP ignores it.
    `paper_compatible` chooses the K convention of evidence built from runs (True: the
    paper's, `complexity_convention="paper"` of `build_evidence`; False/None: bayesicl's);
    given an Evidence, it must agree with the evidence's convention (None accepts either).
    α, β, γ are comparable only between fits under the same convention; summary.json
    records it (``complexity_convention``).

    The result's ``conditions`` has one row per (diversity, step, split): diversity, step,
    split (id/ood), subset (fit/heldout/unmodeled), in_fit, modeled, observed_weight,
    predicted_weight (w_M), expected_observed_weight (the observed weight w_M's mixture would
    show), weight_low/high (90% credible interval of w_M, NUTS), observed_low/high (90%
    posterior-predictive interval of the observed weight, NUTS), log_predictive_density,
    r, d_MG, interpolation_distance, predicted_<strategy> and the per-condition metrics of
    `bayesicl.metrics.condition_metrics`.

    >>> import bayesicl as bic
    >>> from bayesicl.inference.synthetic import synthetic_evidence
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [2, 4, 8], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
    ...                         num_sequences=8, loss_sequences=64)
    >>> result = fit(ev, method="map", holdout=0.0, random_starts=1)
    >>> round(result.params["alpha"], 3), round(result.params["beta"], 3)
    (0.6, 0.2)
    """
    clock = time.perf_counter()
    options = fit_options(options, changes)
    method, seed, holdout, variant = options.method, options.seed, options.holdout, options.variant
    evidence = _as_evidence(evidence_or_runs, options.strategies, options.cutoff, options.loss_sequences,
                            options.progress, options.paper_compatible)
    family = evidence.task.family
    effects = check_effects(options.effects, len(evidence.strategies))
    in_fit = fit_split(evidence.conditions, holdout)
    data = fit_data(evidence, in_fit, variant, options.complexity_override)
    priors = resolve_priors(family, options.priors, data.reference_step)
    map_result = fit_map(data, family, seed=seed, random_starts=options.random_starts)
    nuts, stage = None, None
    if method == "nuts":
        nuts = fit_nuts(data, priors, map_result, seed=seed, num_chains=options.num_chains,
                        num_samples=options.num_samples, num_warmup=options.num_warmup,
                        chain_method=options.chain_method, progress=options.progress, effects=effects)
        stage = fit_ood_stage(data, nuts.draws, nuts.runs, priors, effects, seed=seed)
    draws = nuts.draws if nuts is not None else None
    params = ({k: float(draws[k].mean()) for k in rational.PARAMETERS} if draws is not None
              else dict(map_result.params))
    predictive = _predictive(data, nuts, stage, seed) if nuts is not None else None
    table, weights, expected = _condition_table(data, params, draws, predictive)
    idata = _with_predictive(nuts.idata, data, draws, predictive, stage) if nuts is not None else None

    # One more pass over the outputs gives the metrics and both baselines (bayesicl.metrics).
    metric_table, metric_summary, baselines = metrics.fit_metrics(evidence, weights, in_fit, seed,
                                                                  expected_observed=expected)
    table = table.merge(metric_table.drop(columns=["run", "diversity", "seed", "step"]),
                        on=["condition", "split"], how="left")
    last_step = evidence.conditions.groupby("diversity")["step"].max().to_dict()
    transitions = transition_table(params, data.loss, data.complexity, draws, last_step=last_step)
    modeled = evidence.conditions["modeled"].to_numpy(dtype=bool)
    sd_ratios = _sd_ratios(draws, priors, data.reference_step, rational.ablation(variant)) if draws is not None else None
    identified, unidentified = guard.identification_guard(evidence.conditions, in_fit, map_result, sd_ratios)
    warnings = (unidentified + guard.interpolation_guard(evidence.dataset)
                + guard.strategy_distance_guard(evidence.dataset)
                + guard.transition_guard(transitions)
                + guard.sampler_guard(nuts.diagnostics if nuts else None)
                + guard.optimizer_guard(map_result) + guard.split_guard(in_fit, modeled)
                + _ood_stage_guard(stage))
    info = {"options": options.to_dict(),
            **_info(evidence, data, map_result, priors, seed, holdout, options.complexity_override,
                    options.loss_sequences, method, options.num_chains, options.num_samples, options.num_warmup,
                    options.chain_method, effects)}
    diagnostics = (dict(nuts.diagnostics, ood_stage_divergences=stage.divergences if stage else None)
                   if nuts is not None else {"r_hat_max": None, "ess_bulk_min": None, "divergences": None})
    report = {
        "task": family, "settings": evidence.settings, "strategies": list(evidence.strategies),
        "method": method, "variant": variant,
        "complexity_convention": getattr(evidence, "complexity_convention", "bayesicl"),
        "cutoff_step": int(evidence.cutoff_step),
        "interval_level": INTERVAL, "interval_kind": "central (equal-tailed) quantiles of the posterior draws",
        "identified": identified,
        "params": param_summary(params, draws, map_result.params, sd_ratios),
        "diagnostics": diagnostics,
        "metrics": metric_summary,
        "coverage": _coverage(table) if predictive is not None else None,
        "elpd": _elpd(table) if predictive is not None else None,
        "effects": _effects_summary(evidence, nuts, stage, effects),
        "baselines": baselines,
        "n_conditions": {"fit": int(in_fit.sum()), "heldout": int((modeled & ~in_fit).sum())},
        "runtime_s": time.perf_counter() - clock,
        "objective": {"kind": "kl" if evidence.output_kind == "log_probs" else "squared_error",
                      "map_exact": map_result.objective, "map_params": map_result.params},
        "transition_steps": _transition_records(transitions),
        "transition_step_is": ("median over posterior draws (transition_at_mean: at the posterior-mean "
                               "parameters)" if draws is not None else "value at the MAP estimate"),
        "guards": warnings,
        "subset": describe_split(evidence.conditions, in_fit, holdout),
        "reference_step": data.reference_step,
        "priors": {k: f"{kind}({', '.join(f'{a:g}' for a in args)})" for k, (kind, args) in priors.items()},
        "seed": seed, "versions": info["versions"], "runs_hash": evidence.runs_hash,
    }
    report["runtime_s"] = time.perf_counter() - clock
    report = _jsonable(report)            # as summary.json holds it: NaN becomes null ("inf" stays a string)
    return FitResult(task=evidence.task, settings=evidence.settings, strategies=evidence.strategies,
                     method=method, variant=variant, cutoff_step=int(evidence.cutoff_step),
                     params=params, conditions=table, idata=idata, loss=data.loss,
                     complexity=data.complexity, draws=draws, report=report, info=info,
                     evidence_conditions=evidence.conditions.copy())


fit.__signature__ = signature_with_options(fit)      # help(fit) and inspect list every option


def _as_evidence(source, strategies, cutoff, loss_sequences, progress, paper_compatible=None):
    convention = None if paper_compatible is None else ("paper" if paper_compatible else "bayesicl")
    if isinstance(source, Evidence):
        if strategies is not None and tuple(strategies) != tuple(source.strategies):
            raise BayesiclError(f"strategies {tuple(strategies)} differ from the evidence's "
                                f"{tuple(source.strategies)}; rebuild the evidence with them")
        found = getattr(source, "complexity_convention", "bayesicl")
        if convention is not None and found != convention:
            raise BayesiclError(f"paper_compatible={paper_compatible} but the evidence's K follows the {found!r} "
                                f"convention; rebuild it with build_evidence(..., complexity_convention={convention!r})")
        return source
    if isinstance(source, (str, os.PathLike, list, tuple)):
        return build_evidence(source, strategies=tuple(strategies) if strategies else None,
                              cutoff=cutoff, loss_sequences=loss_sequences, progress=progress,
                              complexity_convention=convention or "bayesicl")
    raise BayesiclError(f"fit takes an Evidence, a runs folder or a list of runs, got {type(source).__name__}")


def _predictive(data: FitData, nuts: NutsResult, stage: OodStage | None, seed: int) -> dict[str, dict]:
    """Per split: posterior-predictive draws of the observed M-weight (n, C) and the log
    predictive density of each condition's observation (C,). ID uses every posterior draw;
    OOD the draws of the OOD stage (θ paired with its OOD noise and run effects), or the ID
    noise when the stage could not run. With the AR(1) trend, a fitted run's conditions
    outside the fit are forecast conditional on the run's fit observations
    (`condition_on_runs`); fit conditions get the replicate predictive."""
    draws, out = nuts.draws, {}
    effect, sigma = draws.get("run_effect"), draws.get("sigma_run")
    for k, split in enumerate(("id", "ood")):
        rng = stream((seed, 4, k), "fit")
        index = stage.theta if (k == 1 and stage is not None) else np.arange(draws["alpha"].size)
        params = {name: draws[name][index] for name in rational.PARAMETERS}
        offset = run_offsets(None if effect is None else effect[index], None if sigma is None else sigma[index],
                             nuts.runs, data.run, rng)
        noise = {name: draws[name][index] for name in ("sigma_obs", "sigma_logit")}
        corr = draws["trend_corr"][index] if "trend_corr" in draws and k == 0 else None
        if k == 1 and stage is not None:
            noise = {name: stage.draws[name] for name in ("sigma_obs", "sigma_logit")}
            offset = offset + run_offsets(stage.draws.get("run_effect"), stage.draws.get("sigma_run"),
                                          stage.runs, data.run, rng)
            corr = stage.draws.get("trend_corr")
        mean, scale, sensitivity = observation_moments(
            params, offset, noise["sigma_obs"], noise["sigma_logit"], data.condition_loss,
            data.condition_complexity, data.step, data.curves, data.run, k, with_sensitivity=True)
        # The ID noise of a model whose trend starts at zero (the OOD stage's trend is stationary).
        start = nuts.trend_start if (k == 0 or stage is None) else "stationary"
        if start != "stationary" and "trend_corr" in draws:
            scale = start_trend(scale, sensitivity, noise["sigma_logit"], draws["trend_corr"][index],
                                data.checkpoint, start)
        observed = data.observations(k)
        if corr is not None:       # forecast a seen run's other conditions from its fit residuals
            mean, scale = condition_on_runs(mean, scale, sensitivity, noise["sigma_obs"], noise["sigma_logit"],
                                            corr, observed, data.in_fit, data.run, data.checkpoint,
                                            trend_start=start)
        out[split] = {"observed": observed_weight_draws(mean, scale, rng),
                      "lpd": log_predictive_density(mean, scale, observed)}
    return out


def _condition_table(data: FitData, params: dict, draws: dict | None, predictive: dict | None):
    """Per (condition, split) predictions; returns the table, mean weights (C, S) and the
    expected observed M-weight per split {split: (C,)}."""
    evidence = data.evidence
    source = draws if draws is not None else {k: np.array([v]) for k, v in params.items()}
    w = weights_for(source, data.condition_loss, data.condition_complexity, data.step)   # (draws, C, S)
    mean = w.mean(axis=0)
    mean = mean / mean.sum(axis=1, keepdims=True)
    strategies = evidence.strategies
    many = len(strategies) > 2
    modeled = evidence.conditions["modeled"].to_numpy(dtype=bool)
    subset = np.where(data.in_fit, "fit", np.where(modeled, "heldout", "unmodeled"))
    frames, expected = [], {}
    for k, split in enumerate(("id", "ood")):
        table = evidence.conditions[["condition", "run", "diversity", "seed", "step", "modeled"]].copy()
        table.insert(5, "split", split)
        table.insert(6, "subset", subset)
        table["in_fit"] = data.in_fit
        observed = evidence.dataset.sel(split=split)
        table["observed_weight"] = evidence.observed_m_weight(split).to_numpy()
        table["predicted_weight"] = mean[:, 0]
        expected[split] = _expected_observed_weight(data, w[:, :, 0], k, many)
        table["expected_observed_weight"] = expected[split]
        if predictive is not None:
            table["weight_low"], table["weight_high"] = np.quantile(w[:, :, 0], [LOW, HIGH], axis=0)
            table["observed_low"], table["observed_high"] = np.quantile(predictive[split]["observed"],
                                                                        [LOW, HIGH], axis=0)
            table["log_predictive_density"] = predictive[split]["lpd"]
        else:
            for column in ("weight_low", "weight_high", "observed_low", "observed_high", "log_predictive_density"):
                table[column] = np.nan
        for column in ("r", "d_MG", "interpolation_distance"):
            table[column] = observed[column].to_numpy()
        for s, name in enumerate(strategies):
            table[f"predicted_{name}"] = mean[:, s]
            if many:
                table[f"observed_{name}"] = observed["convex_weight"].sel(strategy=name).to_numpy()
        frames.append(table)
    return pd.concat(frames, ignore_index=True), mean, expected


def _expected_observed_weight(data: FitData, weights_m: np.ndarray, split_index: int, many: bool) -> np.ndarray:
    """(clip(ρ(w_M), −1, 1) + 1)/2 averaged over draws (C,): the observed weight the model's
    mixture w_M·M + (1 − w_M)·G would show on the split's inputs; w_M itself with more
    than two strategies (their observed weights are convex weights)."""
    if many:
        return weights_m.mean(axis=0)
    rho = np.asarray(data.curves(data.run, split_index, weights_m))      # (draws, C): read by row, no (…, K) copy
    return ((np.clip(rho, -1.0, 1.0) + 1.0) / 2.0).mean(axis=0)


def _with_predictive(idata, data: FitData, draws: dict, predictive: dict, stage: OodStage | None):
    """Add the posterior predictive of w_M and of the observed M-weight for every condition
    (fit, held-out and unmodeled): ID in posterior_predictive (chain, draw, condition); the
    OOD stage's draws (`bayesicl.inference.cut`) and the OOD predictive in ArviZ's "predictions"
    group (one chain of the stage's draws, theta_draw the stage-1 draw each belongs to)."""
    w = weights_for(draws, data.condition_loss, data.condition_complexity, data.step)[:, :, 0]
    chains, per_chain = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    condition = data.evidence.conditions["condition"].to_numpy()

    def labelled(values):
        return (("chain", "draw", "condition"), values.reshape(chains, per_chain, -1).astype(np.float32))

    variables = {"w_M": labelled(w), "observed_weight_id": labelled(predictive["id"]["observed"])}
    idata.add_groups({"posterior_predictive": xr.Dataset(
        variables, coords={"chain": np.arange(chains), "draw": np.arange(per_chain),
                           "condition": ("condition", condition)})})
    ood_draws = predictive["ood"]["observed"].shape[0]
    ood = {"observed_weight_ood": (("chain", "draw", "condition"),
                                   predictive["ood"]["observed"][None].astype(np.float32))}
    coords = {"chain": [0], "draw": np.arange(ood_draws), "condition": ("condition", condition)}
    if stage is not None:
        ood["theta_draw"] = (("chain", "draw"), stage.theta[None])
        for name, value in stage.draws.items():
            ood[name] = (("chain", "draw", "ood_run") if value.ndim == 2 else ("chain", "draw"), value[None])
        coords["ood_run"] = stage.runs
    idata.add_groups({"predictions": xr.Dataset(ood, coords=coords)})
    return idata


def _coverage(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Share of conditions whose observed weight lies in its 90% predictive interval, per
    subset (fit, heldout) and split (id, ood)."""
    out: dict[str, dict[str, float | None]] = {}
    for subset in ("fit", "heldout"):
        out[subset] = {}
        for split in ("id", "ood"):
            rows = table[(table["subset"] == subset) & (table["split"] == split) & table["observed_weight"].notna()]
            inside = (rows["observed_weight"] >= rows["observed_low"]) & (rows["observed_weight"] <= rows["observed_high"])
            out[subset][split] = float(inside.mean()) if len(rows) else None
    return out


def _elpd(table: pd.DataFrame) -> dict[str, Any]:
    """Held-out expected log predictive density of the observations per split: the sum of
    log p(y_c | fit data) over held-out conditions and its standard error √n · sd."""
    out: dict[str, Any] = {"subset": "heldout", "observation": "unclipped relative distance r (two strategies) "
                           "or the convex weights (more)"}
    for split in ("id", "ood"):
        values = table.loc[(table["subset"] == "heldout") & (table["split"] == split),
                           "log_predictive_density"].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        out[split] = {"elpd": float(values.sum()) if values.size else None,
                      "se": float(np.sqrt(values.size) * values.std(ddof=1)) if values.size > 1 else None,
                      "n_conditions": int(values.size)}
    return out


def _interval(values: np.ndarray) -> dict[str, float]:
    low, high = np.quantile(values, [LOW, HIGH])
    return {"mean": float(np.mean(values)), "low": float(low), "high": float(high)}


def _effects_summary(evidence, nuts: NutsResult | None, stage: OodStage | None, effects: str) -> dict | None:
    """σ_run, φ and the per-run log-odds effects (ID, and the OOD stage's addition)."""
    if nuts is None:
        return None
    table = evidence.conditions.drop_duplicates("run").set_index("run")
    out: dict[str, Any] = {"kind": effects, "scale": "log-odds of M against G, added to the model's"}

    def per_run(draws, runs):
        return [{"run": int(r), "diversity": int(table.loc[r, "diversity"]), "seed": int(table.loc[r, "seed"]),
                 **_interval(draws["run_effect"][:, k])} for k, r in enumerate(runs)]

    for name in ("sigma_run", "trend_corr"):
        if name in nuts.draws:
            out[name] = _interval(nuts.draws[name])
    out["runs"] = per_run(nuts.draws, nuts.runs) if "run_effect" in nuts.draws else []
    if stage is not None:
        out["ood"] = {name: _interval(stage.draws[name]) for name in ("sigma_obs", "sigma_logit", "sigma_run")
                      if name in stage.draws}
        out["ood"]["runs"] = per_run(stage.draws, stage.runs) if "run_effect" in stage.draws else []
    return out


def _sd_ratios(draws: dict, priors: dict, reference_step: float, pinned: Mapping[str, float]) -> dict[str, float]:
    """Posterior sd / prior sd of each parameter not `pinned`, in the sampler's coordinates."""
    posterior = sampler_coordinates(draws, reference_step)
    prior = prior_sd(priors)
    return {name: float(np.std(np.asarray(posterior[name]))) / prior[name] for name in free_parameters(pinned)}


def _ood_stage_guard(stage: OodStage | None) -> list[str]:
    if stage is None or stage.divergences == 0:
        return []
    return [f"the OOD stage had {stage.divergences} divergent transitions; OOD intervals may be off"]


def _transition_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the N* table for JSON: ∞ as "inf", NaN as null."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: json_number(v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    return out


def _info(evidence, data, map_result: MapResult, priors, seed, holdout, override, loss_sequences,
          method, num_chains, num_samples, num_warmup, chain_method, effects=None) -> dict[str, Any]:
    seeds = evidence.conditions["seed"].to_numpy()
    return {
        "seed": seed, "holdout": holdout, "pool_seed": int(seeds[0]) if seeds.size else 0,
        "complexity_override": override, "loss_sequences": loss_sequences,
        "priors": {k: [kind, list(args)] for k, (kind, args) in priors.items()},
        "subset": describe_split(evidence.conditions, data.in_fit, holdout),
        "map": {"objective": map_result.objective, "surrogate_objective": map_result.surrogate_objective,
                "params": map_result.params, "unconstrained": map_result.unconstrained,
                "starts": map_result.starts, "newton_iterations": map_result.newton_iterations,
                "converged": map_result.converged, "at_bound": map_result.at_bound,
                "runtime_s": map_result.runtime_s, "tabulation_s": data.objective.tabulation_s},
        "sampler": ({"num_chains": num_chains, "num_samples": num_samples, "num_warmup": num_warmup,
                     "chain_method": chain_method, "effects": effects,
                     "chain_devices": chain_devices(num_chains) if chain_method == "sequential" else 1}
                    if method == "nuts" else None),
        "reference_step": data.reference_step,
        "versions": {"bayesicl": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
                     "arviz": arviz.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "runs_hash": evidence.runs_hash,
    }
