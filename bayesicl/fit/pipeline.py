"""`fit`: evidence (or logged runs) → split → tables → MAP (→ NUTS) → predictions → report."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .. import rational
from .._version import __version__
from ..atomic import _jsonable
from ..errors import BayesiclError
from . import guards as guard
from .data import FitData, fit_data
from .map import RANDOM_STARTS, MapResult, fit_map
from .model import resolve_priors
from .nuts import CHAIN_METHOD, fit_nuts
from .predict import HIGH, LOW, observed_weight_draws, transition_table, weights_for
from .result import FitResult, param_summary
from .split import describe_split, fit_split

METHODS = ("map", "nuts")


def fit(evidence_or_runs, method: str = "nuts", strategies=None, holdout: float = 0.2,
        variant: str | None = None, priors: Mapping | None = None,
        complexity_override: Mapping | None = None, seed: int = 0, num_chains: int = 4,
        num_samples: int = 1000, num_warmup: int = 1000, *, cutoff="paper",
        loss_sequences: int | None = None, chain_method: str = CHAIN_METHOD,
        random_starts: int = RANDOM_STARTS, progress: bool = False) -> FitResult:
    """Fit (α, β, γ) of the rational strategy model (SPEC §6, §8) and report.

    `evidence_or_runs` is a `bayesicl.evidence.Evidence` or what `build_evidence` takes (a
    runs folder or a list of runs; then `strategies`, `cutoff` and `loss_sequences` go to
    it). method "map" minimizes the paper's objective; "nuts" samples the posterior
    (`num_chains` × `num_samples` after `num_warmup`, seeded). `holdout` sets the
    extrapolation split; `variant` one of the ablations ("alpha0", "beta1", "gamma1",
    "constant_complexity"); `priors` overrides priors ({"alpha": "Beta(2,2)", ...});
    `complexity_override` sets K values ({("memorizing", 64): bits} or {kind: {D: bits}}).

    The result's ``conditions`` has one row per (diversity, step, split): diversity, step,
    split, in_fit, modeled, observed_weight, predicted_weight (w_M), predicted_low/high (90%
    predictive interval of the observed weight, NUTS), weight_low/high (90% credible
    interval of w_M, NUTS), r, d_MG, interpolation_distance, predicted_<strategy> and the
    per-condition metrics of `bayesicl.metrics.condition_metrics`.

    >>> import bayesicl as bic
    >>> from bayesicl.fit.synthetic import synthetic_evidence
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [2, 4, 8], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
    ...                         num_sequences=8, loss_sequences=64)
    >>> result = fit(ev, method="map", holdout=0.0, random_starts=1)
    >>> round(result.params["alpha"], 3), round(result.params["beta"], 3)
    (0.6, 0.2)
    """
    clock = time.perf_counter()
    if method not in METHODS:
        raise BayesiclError(f"unknown fit method {method!r}; expected one of {METHODS}")
    evidence = _as_evidence(evidence_or_runs, strategies, cutoff, loss_sequences, progress)
    family = evidence.task.family
    variant = rational.check_variant(variant)
    priors = resolve_priors(family, priors)
    in_fit = fit_split(evidence.conditions, holdout)
    data = fit_data(evidence, in_fit, variant, complexity_override)
    map_result = fit_map(data, family, seed=seed, random_starts=random_starts)
    nuts = None
    if method == "nuts":
        nuts = fit_nuts(data, priors, map_result, seed=seed, num_chains=num_chains,
                        num_samples=num_samples, num_warmup=num_warmup, chain_method=chain_method,
                        progress=progress)
    draws = nuts.draws if nuts is not None else None
    params = ({k: float(draws[k].mean()) for k in rational.PARAMETERS} if draws is not None
              else dict(map_result.params))
    table, weights = _condition_table(data, params, draws, seed)
    idata = _with_predictive(nuts.idata, data, draws, seed) if nuts is not None else None

    from .. import metrics

    metric_table = metrics.condition_metrics(evidence, weights)
    table = table.merge(metric_table.drop(columns=["run", "diversity", "seed", "step"]),
                        on=["condition", "split"], how="left")
    transitions = transition_table(params, data.loss, data.complexity, draws)
    modeled = evidence.conditions["modeled"].to_numpy(dtype=bool)
    warnings = (guard.interpolation_guard(evidence.conditions)
                + guard.strategy_distance_guard(evidence.conditions)
                + guard.transition_guard(transitions)
                + guard.sampler_guard(nuts.diagnostics if nuts else None)
                + guard.optimizer_guard(map_result) + guard.split_guard(in_fit, modeled))
    info = _info(evidence, data, map_result, priors, seed, holdout, complexity_override,
                 loss_sequences, method, num_chains, num_samples, num_warmup, chain_method)
    report = {
        "task": family, "settings": evidence.settings, "strategies": list(evidence.strategies),
        "method": method, "variant": variant, "cutoff_step": int(evidence.cutoff_step),
        "params": param_summary(params, draws),
        "diagnostics": (nuts.diagnostics if nuts is not None
                        else {"r_hat_max": None, "ess_bulk_min": None, "divergences": None}),
        "metrics": metrics.summarize_metrics(evidence, weights, in_fit, table=metric_table),
        "baselines": metrics.baselines(evidence, in_fit, seed),
        "n_conditions": {"fit": int(in_fit.sum()), "heldout": int((modeled & ~in_fit).sum())},
        "runtime_s": time.perf_counter() - clock,
        "objective": {"kind": "kl" if evidence.output_kind == "log_probs" else "squared_error",
                      "map_exact": map_result.objective, "map_params": map_result.params},
        "transition_steps": _records(transitions),
        "guards": warnings,
        "split": describe_split(evidence.conditions, in_fit, holdout),
        "priors": {k: f"{kind}({', '.join(f'{a:g}' for a in args)})" for k, (kind, args) in priors.items()},
        "seed": seed, "versions": info["versions"], "runs_hash": evidence.runs_hash,
    }
    report["runtime_s"] = time.perf_counter() - clock
    report = _jsonable(report)            # as summary.json holds it: NaN and ∞ become null
    return FitResult(task=evidence.task, settings=evidence.settings, strategies=evidence.strategies,
                     method=method, variant=variant, cutoff_step=int(evidence.cutoff_step),
                     params=params, conditions=table, idata=idata, loss=data.loss,
                     complexity=data.complexity, draws=draws, report=report, info=info,
                     evidence_conditions=evidence.conditions.copy())


def _as_evidence(source, strategies, cutoff, loss_sequences, progress):
    from ..evidence import Evidence, build_evidence

    if isinstance(source, Evidence):
        if strategies is not None and tuple(strategies) != tuple(source.strategies):
            raise BayesiclError(f"strategies {tuple(strategies)} differ from the evidence's "
                                f"{tuple(source.strategies)}; rebuild the evidence with them")
        return source
    if isinstance(source, (str, os.PathLike, list, tuple)):
        return build_evidence(source, strategies=tuple(strategies or ("memorizing", "generalizing")),
                              cutoff=cutoff, loss_sequences=loss_sequences, progress=progress)
    raise BayesiclError(f"fit takes an Evidence, a runs folder or a list of runs, got {type(source).__name__}")


def _condition_table(data: FitData, params: dict, draws: dict | None, seed: int):
    """Per (condition, split) predictions; returns the table and mean weights (C, S)."""
    evidence = data.evidence
    source = draws if draws is not None else {k: np.array([v]) for k, v in params.items()}
    w = weights_for(source, data.condition_loss, data.condition_complexity, data.step)   # (draws, C, S)
    mean = w.mean(axis=0)
    mean = mean / mean.sum(axis=1, keepdims=True)
    strategies = evidence.strategies
    many = len(strategies) > 2
    frames = []
    for k, split in enumerate(("id", "ood")):
        table = evidence.conditions[["condition", "run", "diversity", "seed", "step", "modeled"]].copy()
        table.insert(5, "split", split)
        table["in_fit"] = data.in_fit
        observed = f"observed_{strategies[0]}_{split}" if many else f"observed_weight_{split}"
        table["observed_weight"] = evidence.conditions[observed].to_numpy()
        table["predicted_weight"] = mean[:, 0]
        if draws is not None:
            predictive = observed_weight_draws(w[:, :, 0], draws, data.curves, data.run, k, seed, many)
            table["predicted_low"], table["predicted_high"] = np.quantile(predictive, [LOW, HIGH], axis=0)
            table["weight_low"], table["weight_high"] = np.quantile(w[:, :, 0], [LOW, HIGH], axis=0)
        else:
            for column in ("predicted_low", "predicted_high", "weight_low", "weight_high"):
                table[column] = np.nan
        for column in ("r", "d_MG", "interpolation_distance"):
            table[column] = evidence.conditions[f"{column}_{split}"].to_numpy()
        for s, name in enumerate(strategies):
            table[f"predicted_{name}"] = mean[:, s]
            if many:
                table[f"observed_{name}"] = evidence.conditions[f"observed_{name}_{split}"].to_numpy()
        frames.append(table)
    return pd.concat(frames, ignore_index=True), mean


def _with_predictive(idata, data: FitData, draws: dict, seed: int):
    """Add the posterior predictive of w_M and of the observed M-weight (ID, OOD) for every
    condition (fit, held-out and unmodeled) to the InferenceData."""
    import xarray as xr

    w = weights_for(draws, data.condition_loss, data.condition_complexity, data.step)[:, :, 0]
    chains, per_chain = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    many = len(data.evidence.strategies) > 2
    condition = data.evidence.conditions["condition"].to_numpy()

    def labelled(values):
        return (("chain", "draw", "condition"), values.reshape(chains, per_chain, -1).astype(np.float32))

    variables = {"w_M": labelled(w)}
    for k, split in enumerate(("id", "ood")):
        variables[f"observed_weight_{split}"] = labelled(
            observed_weight_draws(w, draws, data.curves, data.run, k, seed, many))
    predictive = xr.Dataset(variables, coords={"chain": np.arange(chains), "draw": np.arange(per_chain),
                                               "condition": ("condition", condition)})
    idata.add_groups({"posterior_predictive": predictive})
    return idata


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    return out


def _info(evidence, data, map_result: MapResult, priors, seed, holdout, override, loss_sequences,
          method, num_chains, num_samples, num_warmup, chain_method) -> dict[str, Any]:
    import arviz
    import jax
    import numpyro

    seeds = evidence.conditions["seed"].to_numpy()
    return {
        "seed": seed, "holdout": holdout, "pool_seed": int(seeds[0]) if seeds.size else 0,
        "complexity_override": override, "loss_sequences": loss_sequences,
        "priors": {k: [kind, list(args)] for k, (kind, args) in priors.items()},
        "split": describe_split(evidence.conditions, data.in_fit, holdout),
        "map": {"objective": map_result.objective, "surrogate_objective": map_result.surrogate_objective,
                "params": map_result.params, "unconstrained": map_result.unconstrained,
                "starts": map_result.starts, "newton_iterations": map_result.newton_iterations,
                "converged": map_result.converged, "at_bound": map_result.at_bound,
                "runtime_s": map_result.runtime_s, "tabulation_s": data.objective.tabulation_s},
        "sampler": ({"num_chains": num_chains, "num_samples": num_samples, "num_warmup": num_warmup,
                     "chain_method": chain_method} if method == "nuts" else None),
        "versions": {"bayesicl": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
                     "arviz": arviz.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "runs_hash": evidence.runs_hash,
    }
