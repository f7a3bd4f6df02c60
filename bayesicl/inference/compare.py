"""Ablations of the strategy model compared on held-out conditions and by leave-one-run-out.

Each variant (full; α = 0; β = 1; γ = 1; complexity constant in D) is fitted to the same
evidence with the same split and seed. The table reports the held-out correlation (ID, OOD)
and the family's held-out metrics, the exact paper objective at the MAP, and, for NUTS, the
leave-one-RUN-out expected log predictive density of the fit conditions' observations.

Why runs and not checkpoints: a run's checkpoints share its log-odds offset and drift together
(lag-1 autocorrelation of the residuals 0.4–0.9 on the demo runs), so leaving one checkpoint
out leaves its neighbours in, and pointwise LOO rewards a model for interpolating along the
run. Leaving a whole run out asks what the model predicts for a network it has not seen. The
estimate is PSIS-LOO over runs (Vehtari et al.) with each run's effect integrated out
("integrated importance sampling"): per posterior draw,

    log p(y_k | θ) = log ∫ p(y_k | θ, u) Normal(u; 0, σ_run) du

by the trapezoid rule on `NODES` points over ±6 σ_run (a run's many checkpoints make the
likelihood in u far narrower than σ_run, which a Gauss–Hermite rule with prior-scaled nodes
misses; the trapezoid rule on a grid finer than that width is accurate to many digits),
p(y_k | θ, u) the run's likelihood of the
model (the multivariate normal of "run+trend", independent normals otherwise). Pareto k̂
above 0.7 flags runs whose importance weights are unreliable (`max_pareto_k`); with few runs
this happens, and the table says so rather than hiding it. Rank 1 is the best: by elpd_loro
for NUTS, by the MAP objective for MAP.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import rational
from ..errors import BayesiclError
from .data import fit_data
from .model import expected_observation, run_log_densities
from .options import FitOptions, fit_options
from .pipeline import fit

DEFAULT_VARIANTS = ("full", "alpha0", "beta1", "gamma1", "constant_complexity")
#: Grid points of the integral over a run's effect (±6 σ_run).
NODES = 256


def compare_variants(evidence, variants: Sequence[str] = DEFAULT_VARIANTS, method: str | None = None,
                     options: FitOptions | None = None, **changes) -> pd.DataFrame:
    """Fit every variant and rank them (see the module docstring).

    Every fit takes `options` (a `FitOptions`, default NUTS) with `method` and the keyword
    `changes` (holdout, seed, num_samples, effects, ...) applied, and its own variant.
    Returns one row per variant: variant, rank, objective, alpha, beta, gamma (the point
    estimates), heldout_correlation_id/ood, heldout_<metric>_id/ood, and for NUTS elpd_loro,
    se_loro, p_loro, elpd_diff and se_diff (to the best, paired over runs), max_pareto_k and n_runs.

    Example: ``compare_variants(evidence, method="map")[["variant", "rank", "objective"]]``.
    """
    if not variants:
        raise BayesiclError("compare_variants: give at least one variant")
    options = fit_options(options, {**changes, **({"method": method} if method is not None else {})})
    method = options.method
    rows, pointwise = [], {}
    for variant in variants:
        result = fit(evidence, options, variant=variant)
        summary = result.summary()
        row = {"variant": variant, "objective": summary["objective"]["map_exact"], **result.params}
        for split in ("id", "ood"):
            leaf = summary["metrics"]["heldout"][split]
            for name, value in leaf.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "n_conditions":
                    row[f"heldout_{name}_{split}"] = value
            row.setdefault(f"heldout_correlation_{split}", leaf.get("correlation"))
        if result.draws is not None:
            in_fit = result.evidence_conditions["condition"].isin(
                result.conditions.loc[result.conditions["in_fit"].astype(bool), "condition"]).to_numpy()
            data = fit_data(evidence, in_fit, variant, options.complexity_override)
            per_run = run_log_likelihood(data, result.draws, result.info["sampler"]["effects"])
            chains = result.idata.posterior.sizes["chain"]
            idata = az.from_dict(log_likelihood={"run": per_run.reshape(chains, -1, per_run.shape[-1])},
                                 posterior={"alpha": result.draws["alpha"].reshape(chains, -1)})
            with warnings.catch_warnings():       # ArviZ warns on high Pareto k; it is reported
                warnings.simplefilter("ignore")
                loo = az.loo(idata, var_name="run", pointwise=True)
            pointwise[variant] = np.asarray(loo.loo_i)
            row.update({"elpd_loro": float(loo.elpd_loo), "se_loro": float(loo.se), "p_loro": float(loo.p_loo),
                        "max_pareto_k": float(np.max(np.asarray(loo.pareto_k))), "n_runs": int(per_run.shape[-1])})
        rows.append(row)
    table = pd.DataFrame(rows)
    if method == "nuts":
        table["elpd_diff"] = table["elpd_loro"].max() - table["elpd_loro"]
        best = pointwise[table.loc[table["elpd_loro"].idxmax(), "variant"]]
        # The SE of the difference is paired over runs (the runs are shared by every variant).
        table["se_diff"] = [float(np.sqrt(best.size) * np.std(best - pointwise[v], ddof=1)) if best.size > 1
                            else np.nan for v in table["variant"]]
        table["rank"] = table["elpd_loro"].rank(ascending=False, method="min").astype(int)
    else:
        table["rank"] = table["objective"].rank(ascending=True, method="min").astype(int)
    return table.sort_values("rank").reset_index(drop=True)


def run_log_likelihood(data, draws: dict[str, np.ndarray], effects: str) -> np.ndarray:
    """log p(y_k | θ) per posterior draw and fitted run (draws, R), each run's log-odds effect
    integrated out over Normal(0, σ_run) (see the module docstring)."""
    rows = data.likelihood_rows
    model_data = data.model_data(rows)
    if effects == "none":
        nodes, log_node_weights = np.zeros(1), jnp.zeros(1)
    else:   # u = σ t on t ∈ [−6, 6]: ∫ f(u) N(u; 0, σ) du = ∫ f(σ t) φ(t) dt (trapezoid)
        nodes = np.linspace(-6.0, 6.0, NODES)
        weights = np.full(NODES, nodes[1] - nodes[0])
        weights[[0, -1]] /= 2
        log_node_weights = jnp.asarray(np.log(weights) - 0.5 * nodes ** 2 - 0.5 * np.log(2 * np.pi))
    sigma_run = draws.get("sigma_run", np.zeros_like(draws["alpha"]))
    corr = draws.get("trend_corr", np.zeros_like(draws["alpha"]))
    many = model_data.loss.shape[-1] > 2

    def one_draw(alpha, beta, gamma, sigma_obs, sigma_logit, sigma, phi):
        eta, _ = rational.log_weights((alpha, beta, gamma), model_data.loss, model_data.complexity,
                                      model_data.step)

        def at_node(u):
            weights = jax.nn.softmax(eta.at[..., 0].add(u), axis=-1)
            mean, sensitivity = expected_observation(model_data, weights)
            if many:      # independent convex weights: sum their log densities per condition
                scale = jnp.sqrt(1e-6 + sigma_obs ** 2 + (sigma_logit * sensitivity) ** 2)
                logp = jax.scipy.stats.norm.logpdf(model_data.observed, mean, scale).sum(axis=-1)
                return jax.ops.segment_sum(logp, model_data.effect_run, model_data.run_rows.shape[0])
            return run_log_densities(model_data, mean, sensitivity, sigma_obs, sigma_logit, phi)

        per_node = jax.vmap(at_node)(sigma * jnp.asarray(nodes))                    # (Q, R)
        return jax.nn.logsumexp(per_node + log_node_weights[:, None], axis=0)

    compute = jax.jit(jax.vmap(one_draw))
    out = []
    for start in range(0, draws["alpha"].size, 64):
        part = slice(start, start + 64)
        out.append(np.asarray(compute(*(jnp.asarray(np.asarray(v)[part]) for v in (
            draws["alpha"], draws["beta"], draws["gamma"], draws["sigma_obs"], draws["sigma_logit"],
            sigma_run, corr)))))
    return np.concatenate(out)
