"""The OOD stage of a NUTS fit: OOD noise scales and run effects, estimated without letting
OOD data inform (α, β, γ) — a "cut" of the joint model.

The paper fits (α, β, γ) on ID observations only, and so does `bayesicl.inference.model.nuts_model`.
OOD observations of the same networks are noisier and carry their own run-level misfit, so
ID noise scales make OOD predictive intervals far too narrow (demo, before this stage: 20% of
held-out OOD conditions inside their 90% interval). Here, for each of `THETAS` evenly spaced
posterior draws θ = (α, β, γ, ID run effects u), a short NUTS chain samples the OOD stage

    σ_obs', σ_logit', σ_run' (and φ') ~ the ID priors;  v_k ~ Normal(0, σ_run')
    r_ood,c ~ Normal(ρ_ood,c(w_c), √(ε² + σ_obs'² + (σ_logit' ∂ρ_ood,c/∂z)²))
    w_c = softmax(η_c(θ) + (u_k + v_k) e_M)

on the fit conditions' OOD observations, with θ held fixed (θ is data here): its draws are
from p(σ', v | θ, y_ood), so the pairs (θ, σ', v) are draws of the cut posterior
p(θ | y_id) p(σ', v | θ, y_ood). The θ chains of a device run one after the other, each
starting where the previous one ended and re-adapting only its step size (`RELAY_WARMUP`;
the first adapts from scratch over `WARMUP`). The OOD run effect v_k is what OOD adds to the ID run effect
of the same network. The likelihood is the ID model's (`bayesicl.inference.model.observation_likelihood`):
with effects "run+trend" the OOD log-odds deviation is AR(1) along each run with its own
lag-1 correlation φ' (so a held-out OOD condition can be forecast from its run's fit
residuals, `bayesicl.inference.predict.condition_on_runs`); with "none" there are no run effects.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from .. import rational
from ..families import family_spec
from ..seeds import stream
from .chains import constrained_draws, map_chain_blocks, nuts_chain, place_chains
from .data import FitData
from . import model as model_module
from .model import (NOISE_SITES, ModelData, expected_observation, observation_likelihood, prior_distribution,
                    run_effects)

#: Posterior draws θ the stage conditions on, warm-up and kept draws per θ.
THETAS = 16
#: 150 warm-up steps left 1 divergent transition in the regression demo's stage (θ from a
#: longer main warm-up); 300 left none.
WARMUP = 300
PER_THETA = 25
#: Warm-up of every θ after a device's first: its chain starts where the previous θ's ended
#: and adapts the step size only (the mass matrix is the previous chain's). From the identity
#: at every θ, the first adaptation window cost most of the stage (paper-size urns benchmark:
#: docs/decisions.md "The OOD stage relays its adaptation").
RELAY_WARMUP = 75
#: Target acceptance of the stage's chains, raised per family as the main sampler's
#: (the family spec's `target_accept`): on the regression demo 0.9 left 2–31 divergent
#: transitions in the stage, depending on the draws of θ.
TARGET_ACCEPT = 0.9


@dataclasses.dataclass(frozen=True, eq=False)
class OodStage:
    """Draws of the OOD stage: `theta` (n,) the index of the stage-1 draw each belongs to;
    sigma_obs, sigma_logit (n,), sigma_run (n,) and run_effect (n, R) for the fitted runs
    `runs` (absent with effects "none"); `divergences` of the stage's chains."""

    theta: np.ndarray
    draws: dict[str, np.ndarray]
    runs: np.ndarray
    divergences: int


def ood_model(data: ModelData, eta, offset, priors, effects: str):
    """The OOD stage for one θ: η (C, S) and the ID run offsets (C,) are data."""
    sigma_obs, sigma_logit = (numpyro.sample(name, prior_distribution(priors, name)) for name in NOISE_SITES)
    if effects != "none":
        offset = offset + run_effects(priors, data.run_rows.shape[0])[data.effect_run]
    weights = jax.nn.softmax(eta.at[..., 0].add(offset), axis=-1)
    corr = None
    if effects == "run+trend":
        corr = numpyro.sample("trend_corr", prior_distribution(priors, "trend_corr"))
    observation_likelihood(data, weights, sigma_obs, sigma_logit, corr)


def fit_ood_stage(data: FitData, draws: dict[str, np.ndarray], runs: np.ndarray, priors: dict,
                  effects: str, seed: int = 0, thetas: int = THETAS, warmup: int = WARMUP,
                  per_theta: int = PER_THETA) -> OodStage | None:
    """Run the OOD stage on the fit conditions with a finite OOD observation (None if fewer
    than 3). `draws` are the stage-1 draws (α, β, γ and run_effect (n, R) for `runs`)."""
    observed = data.observations(1)
    finite = np.isfinite(observed) if observed.ndim == 1 else np.isfinite(observed).all(axis=1)
    rows = np.flatnonzero(data.in_fit & finite)
    if rows.size < 3:
        return None
    model_data = data.model_data(rows, observed=False, split=1)._replace(observed=jnp.asarray(observed[rows]))
    total = draws["alpha"].size
    theta = np.unique(np.linspace(0, total - 1, min(thetas, total)).round().astype(np.int64))
    params = tuple(jnp.asarray(draws[k][theta])[:, None] for k in rational.PARAMETERS)
    eta = np.asarray(rational.log_weights(params, model_data.loss, model_data.complexity, model_data.step)[0])
    stage_runs = np.unique(data.run[rows])
    offset = np.zeros((theta.size, rows.size))
    if "run_effect" in draws:
        column = {int(r): k for k, r in enumerate(runs)}
        for i, r in enumerate(data.run[rows]):
            if int(r) in column:
                offset[:, i] = draws["run_effect"][theta, column[int(r)]]
    init = _initial_values(model_data, eta, offset, seed, effects)
    prior_key = tuple(sorted((k, kind, tuple(args)) for k, (kind, args) in priors.items()))
    target_accept = stage_target_accept(data.evidence.task)
    sampler = _sampler(prior_key, effects, int(warmup), int(per_theta), float(target_accept))
    keys = jax.random.split(jax.random.PRNGKey(int(stream((seed, 5), "fit").integers(2**31))), theta.size)
    per_chain = place_chains((keys, init, jnp.asarray(eta), jnp.asarray(offset)))
    out = jax.device_get(sampler(*per_chain, model_data))
    flat = {k: np.asarray(v, dtype=np.float64).reshape((-1,) + np.shape(v)[2:]) for k, v in out["sites"].items()
            if k != "run_z"}
    return OodStage(theta=np.repeat(theta, per_theta), draws=flat, runs=stage_runs,
                    divergences=int(np.asarray(out["diverging"]).sum()))


def _initial_values(model_data, eta, offset, seed, effects):
    """Noise scales from the RMS OOD residual at each θ (half each), run effects at zero. Only
    each device's first θ starts here; the later ones start where the previous θ ended."""
    weights = jax.nn.softmax(jnp.asarray(eta).at[..., 0].add(jnp.asarray(offset)), axis=-1)
    mean = np.asarray(expected_observation(model_data, weights)[0])
    residual = np.asarray(model_data.observed)[None] - mean
    axes = tuple(range(1, residual.ndim))
    sigma = np.clip(np.sqrt(np.mean(residual ** 2, axis=axes)), 1e-3, 1.0)
    rng = stream((seed, 6), "fit")
    count = eta.shape[0]
    init = {"sigma_obs": np.log(sigma / 2) + 0.1 * rng.standard_normal(count),
            "sigma_logit": np.log(2 * sigma) + 0.1 * rng.standard_normal(count)}
    if effects != "none":
        init["sigma_run"] = np.log(0.5) + 0.1 * rng.standard_normal(count)
        site = "run_effect" if model_module.RUN_PARAMETERIZATION == "centred" else "run_z"
        init[site] = 0.1 * rng.standard_normal((count, model_data.run_rows.shape[0]))
    if effects == "run+trend":
        init["trend_corr"] = 0.1 * rng.standard_normal(count)       # logit φ' ≈ 0
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in init.items()}


@functools.lru_cache(maxsize=4)
def stage_target_accept(task) -> float:
    """The stage's target acceptance: `TARGET_ACCEPT`, raised to the family spec's
    `target_accept` where that is higher (the main sampler's default does not apply here).

    >>> import bayesicl as bic
    >>> stage_target_accept(bic.task("urns")), stage_target_accept(bic.task("regression"))
    (0.9, 0.99)
    """
    own = family_spec(task).target_accept
    return TARGET_ACCEPT if own is None else max(TARGET_ACCEPT, float(own))


def _sampler(prior_key, effects: str, warmup: int, per_theta: int, target_accept: float = TARGET_ACCEPT):
    """The jitted program: one NUTS chain per θ, one after the other on each CPU device. The
    first θ of a device adapts from scratch (`warmup` iterations, step size and diagonal mass
    matrix); every later one starts where the one before it ended (position, step size, mass
    matrix) and re-adapts the step size only, over `RELAY_WARMUP` iterations."""
    priors = {name: (kind, args) for name, kind, args in prior_key}
    model = functools.partial(ood_model, priors=priors, effects=effects)
    settings = dict(dense_mass=False, target_accept=target_accept, trace=("z", "diverging"), with_state=True)
    first = nuts_chain(model, warmup, per_theta, **settings)
    relay = nuts_chain(model, RELAY_WARMUP, per_theta, adapt_mass_matrix=False, **settings)

    def block(per_theta_args, data):
        keys, init, eta, offset = per_theta_args
        kept, state = first(keys[0], jax.tree.map(lambda v: v[0], init), data, eta[0], offset[0])

        def next_theta(state, theta):
            key, e, o = theta
            z, step_size, inverse_mass_matrix = state
            kept, state = relay(key, z, data, e, o, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix)
            return state, kept

        _, rest = jax.lax.scan(next_theta, state, (keys[1:], eta[1:], offset[1:]))
        kept = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), kept, rest)
        sites = jax.lax.map(lambda x: constrained_draws(model, (data, x[1], x[2]), x[0], batch_ndims=1),
                            (kept["z"], eta, offset))
        return sites, kept["diverging"]

    def run(keys, init, eta, offset, data):
        sites, diverging = map_chain_blocks(block, (keys, init, eta, offset), data)
        return {"sites": sites, "diverging": diverging}

    return jax.jit(run)


def ood_effect_columns(stage: OodStage | None, runs: np.ndarray) -> np.ndarray:
    """For evidence runs `runs` (C,), the column of each in the stage's run effects (−1: not
    fitted in the stage, its OOD effect is a new draw)."""
    if stage is None or "run_effect" not in stage.draws:
        return np.full(len(runs), -1)
    column = {int(r): k for k, r in enumerate(stage.runs)}
    return np.array([column.get(int(r), -1) for r in runs])
