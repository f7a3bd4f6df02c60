"""Fit-quality guards: plain-language warnings about fits that should not be trusted blindly.

Each guard returns warning strings (the command line prints them prominently; summary.json
keeps them under "guards"):

- the transformer is far from the strategies' span: ID interpolation distance
  d(T, w̃M + (1 − w̃)G) > `INTERPOLATION_RATIO` · d(M, G) at a modeled condition (half the
  distance between the strategies: the model's mixture cannot describe T there);
- M and G nearly coincide: d(M, G) < `CLOSE_STRATEGIES_DISTANCE` (the observed weight is ill
  defined; such conditions carry no information about the weights);
- N*(D) is 0, ∞ or undefined for a diversity (no transition within training);
- NUTS did not mix: r̂ > 1.01, divergent transitions, or bulk ESS < 400;
- MAP sits on the search box, its Newton polish did not converge, or its starts disagree;
- the split holds out nothing (held-out metrics are undefined);
- the fit is not identified (`identification_guard`): fewer than `MIN_LEVELS` modeled steps
  or diversities enter the fit, the MAP sits on its search box, or a parameter's posterior
  sd (in the sampler's coordinates logit α, log β, log γ̃) is above `MAX_SD_RATIO` of its
  prior sd — the data then hardly moved it, and numbers computed from the fit (its
  correlations, N*) restate the prior rather than the runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr


INTERPOLATION_RATIO = 0.5
CLOSE_STRATEGIES_DISTANCE = 1e-6
MAX_R_HAT = 1.01
MIN_ESS = 400
#: Starts whose surrogate optimum is within this relative distance of the best agree.
START_AGREEMENT = 1e-4
#: Fewest distinct modeled steps and diversities in the fit for identified (α, β, γ).
MIN_LEVELS = 3
#: Posterior sd / prior sd above which a parameter counts as not identified.
MAX_SD_RATIO = 0.8


def interpolation_guard(observations: xr.Dataset) -> list[str]:
    """Modeled conditions where T is far from the strategies' span (ID split).

    `observations` is the evidence's labelled dataset (`Evidence.dataset`). Its interpolation
    distance is the one of the M–G line; with more strategies it says nothing about their
    span, and the guard is silent."""
    if observations.sizes.get("strategy", 0) > 2:
        return []
    on_id = observations.sel(split="id")
    modeled = on_id["modeled"].to_numpy().astype(bool)
    far = on_id["interpolation_distance"].to_numpy()[modeled] > INTERPOLATION_RATIO * on_id["d_MG"].to_numpy()[modeled]
    if not far.any():
        return []
    diversity, step = on_id["diversity"].to_numpy()[modeled][far], on_id["step"].to_numpy()[modeled][far]
    shown = ", ".join(f"D={d} N={n}" for d, n in zip(diversity[:5], step[:5]))
    return [f"{int(far.sum())} of {int(modeled.sum())} modeled conditions have an ID interpolation distance "
            f"above {INTERPOLATION_RATIO} x d(M,G) (the transformer is far from every mixture of the "
            f"strategies there), e.g. {shown}"]


def strategy_distance_guard(observations: xr.Dataset) -> list[str]:
    """Diversities where M and G nearly coincide on the ID inputs (`observations` as for
    `interpolation_guard`)."""
    on_id = observations.sel(split="id")
    modeled = on_id["modeled"].to_numpy().astype(bool)
    close = on_id["d_MG"].to_numpy()[modeled] < CLOSE_STRATEGIES_DISTANCE
    if not close.any():
        return []
    diversities = sorted({int(d) for d in on_id["diversity"].to_numpy()[modeled][close]})
    return [f"M and G nearly coincide (d(M,G) < {CLOSE_STRATEGIES_DISTANCE:g}) at D = {diversities}: "
            "the observed weight there is ill-defined and carries no information"]


def transition_guard(transitions: pd.DataFrame) -> list[str]:
    """Diversities without a transition step inside (0, ∞)."""
    steps = transitions["transition_step"].to_numpy(dtype=np.float64)
    missing = ~np.isfinite(steps) | (steps <= 0)
    if not missing.any():
        return []
    parts = []
    for d, n, direction in zip(transitions["diversity"][missing], steps[missing],
                               transitions["direction"][missing]):
        what = "never (G wins at every step)" if n == np.inf else \
            "at step 0 (M wins at every step)" if n == 0 else f"undefined ({direction})"
        parts.append(f"D={int(d)}: {what}")
    return ["predicted transition step N*(D) is not a finite positive step for " + "; ".join(parts)]


def sampler_guard(diagnostics: dict | None) -> list[str]:
    """NUTS convergence problems (r̂, divergences, effective sample size)."""
    if not diagnostics:
        return []
    out = []
    if diagnostics["r_hat_max"] > MAX_R_HAT:
        out.append(f"NUTS chains disagree: max r_hat = {diagnostics['r_hat_max']:.3f} > {MAX_R_HAT}; "
                   "run more warm-up/draws before trusting the posterior")
    if diagnostics["divergences"] > 0:
        out.append(f"NUTS had {diagnostics['divergences']} divergent transitions; the posterior may be biased")
    if diagnostics["ess_bulk_min"] < MIN_ESS:
        out.append(f"NUTS bulk effective sample size is only {diagnostics['ess_bulk_min']:.0f} (< {MIN_ESS})")
    return out


def optimizer_guard(map_result) -> list[str]:
    """MAP on the search box, unconverged polish, or starts that found different optima."""
    out = []
    if map_result.at_bound:
        out.append(f"MAP estimate is on the edge of the search box for {map_result.at_bound}: the "
                   "objective keeps improving outside it (a parameter is not identified by these data)")
    if not map_result.converged:
        out.append("MAP Newton polish did not converge; the reported objective is the best point found")
    values = np.array([s["surrogate_objective"] for s in map_result.starts], dtype=np.float64)
    best = np.nanmin(values)
    agree = np.abs(values - best) <= START_AGREEMENT * max(abs(best), 1e-12)
    if agree.sum() < max(2, (len(values) + 1) // 2):
        out.append(f"only {int(agree.sum())} of {len(values)} MAP starts reached the best optimum; "
                   "the objective has several local minima")
    return out


def split_guard(in_fit: np.ndarray, modeled: np.ndarray) -> list[str]:
    """A split without held-out conditions."""
    if (modeled & ~in_fit).any():
        return []
    return ["no held-out conditions (holdout = 0 or too few diversities/steps): held-out metrics are undefined"]


def identification_guard(conditions: xr.Dataset | pd.DataFrame, in_fit: np.ndarray, map_result=None,
                         sd_ratios: dict[str, float] | None = None) -> tuple[bool, list[str]]:
    """(identified, messages): whether the fit can pin (α, β, γ) down at all.

    `conditions` gives each condition's diversity and step (`Evidence.dataset`, or a table).
    `sd_ratios` maps a parameter to its posterior sd / prior sd (NUTS), see
    `bayesicl.inference.model`; `map_result` adds the MAP's box check.

    >>> table = pd.DataFrame({"diversity": [4, 8], "step": [10, 10]})
    >>> identification_guard(table, np.array([True, True]))[0]
    False
    """
    in_fit = np.asarray(in_fit, dtype=bool)
    messages = []
    steps = np.unique(np.asarray(conditions["step"])[in_fit])
    diversities = np.unique(np.asarray(conditions["diversity"])[in_fit])
    if steps.size < MIN_LEVELS or diversities.size < MIN_LEVELS:
        messages.append(f"NOT IDENTIFIED: the fit sees {steps.size} modeled step(s) and {diversities.size} "
                        f"diversit{'y' if diversities.size == 1 else 'ies'} ({int(in_fit.sum())} conditions); "
                        f"(alpha, beta, gamma) need at least {MIN_LEVELS} of each (more runs, or checkpoints "
                        "after the cutoff)")
    if map_result is not None and map_result.at_bound:
        messages.append(f"NOT IDENTIFIED: the MAP is on the edge of its search box for {map_result.at_bound}")
    for name, ratio in (sd_ratios or {}).items():
        if np.isfinite(ratio) and ratio > MAX_SD_RATIO:
            messages.append(f"NOT IDENTIFIED: the posterior of {name} is nearly its prior (posterior sd = "
                            f"{ratio:.2f} x prior sd > {MAX_SD_RATIO}); the data do not determine it")
    return not messages, messages
