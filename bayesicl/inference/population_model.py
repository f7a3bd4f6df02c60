"""The population model over configurations (docs/model.md#population-model) and its sampler.

Per configuration j, θ_j = (logit α_j, log β_j, log γ̃_j), γ̃_j = γ_j N_ref^(1−α_j) at ONE
reference step N_ref shared by all configurations:

- pool "partial": θ_j = μ + B x_j + diag(τ) L z_j, z_j ~ N(0, I), x_j the
  standardized covariates (`bayesicl.inference.population_data.covariate_matrix`),
  μ_k ~ Normal(m_k, s_k) with (m_k, s_k) the mean and sd of the single-configuration prior
  of θ_k (`bayesicl.inference.model.default_priors`), B_kp ~ Normal(0, `B_SCALE`),
  τ_k ~ HalfNormal(`TAU_SCALE` = 0.25), L ~ LKJCholesky(3, `LKJ_CONCENTRATION`); z_j sampled
  (non-centred) by default (`PARAMETERIZATION`; on the shipped grid the configurations do not
  pin θ_j against τ, a funnel for the centred θ_j ~ MVN(μ + B x_j, diag(τ) L Lᵀ diag(τ)));
- pool "full": one θ for every configuration, with the single-configuration priors
  (`bayesicl.inference.model.sampled_parameters`): the single fit on the stacked data.

Below θ, the single-configuration likelihood of `bayesicl.inference.model` applies to the stacked
conditions (its functions are called, not copied): run effects u_k nest inside configurations
(every run of every configuration has its own u_k, with one σ_run), with two changes
(docs/model.md#population-model): the AR(1) deviation of "run+trend" starts at zero before each
run's first checkpoint (`TREND_START`; the run's level is u_k's alone), and σ_obs, σ_logit are
per configuration, log-normal around a typical scale (`NOISE_POOLING`, `noise_scale`); φ and
σ_run are shared.

Sampler switches (module constants, measured on the shipped grid in docs/model.md#population-model):
`PARAMETERIZATION` (θ_j centred or non-centred), `RUN_PARAMETERIZATION` (u_k centred or
non-centred) and `DENSE_MASS` (dense or diagonal mass matrix).

Chains start from a least-squares fit of μ, B to the per-configuration MAP estimates, with
τ from its residual sd, θ_j at the MAPs (z_j at the standardized residuals), L = I, and the noise scales from
the RMS residual at the MAPs (as `bayesicl.inference.nuts` does).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..seeds import stream
from .chains import constrained_draws, map_chains, nuts_chain, place_chains
from .model import (NOISE_SITES, expected_observation, observation_likelihood, prior_distribution, run_effects,
                    sampled_parameters, strategy_weights)
from .nuts import enable_compilation_cache
from .synthetic import THETA_NAMES

POOLS = ("partial", "full", "none")
#: Prior sd of each covariate effect B_kp (per sd of the log setting).
B_SCALE = 0.5
#: Prior scale of τ_k, the between-configuration sd of θ_k not explained by the covariates.
#: A handful of configurations cannot estimate τ (on the shipped grid τ_β's posterior under
#: HalfNormal(0.5) was that prior), so the prior sets its scale: half the single-configuration
#: prior sd of log β, still allowing residual sds up to ~0.5. Under 0.5 the divergences sat in
#: τ_β's tail, where log β_j of well-measured configurations is pinned against z_j
#: (docs/model.md#population-model).
TAU_SCALE = 0.25
LKJ_CONCENTRATION = 2.0
#: As the single-configuration fit (`bayesicl.inference.nuts.TARGET_ACCEPT`): at 0.9 the remaining
#: divergences sat at large σ_run, the tail of the run effects the chains then under-explored.
TARGET_ACCEPT = 0.95
#: "non-centred": θ_j = μ + B x_j + diag(τ) L z_j with z_j sampled; "centred": θ_j sampled
#: from MVN(μ + B x_j, diag(τ) L Lᵀ diag(τ)).
PARAMETERIZATION = "non-centred"
#: Parameterization of the run effects u_k in the population fit ("centred" or "non-centred",
#: as `bayesicl.inference.model.RUN_PARAMETERIZATION`).
RUN_PARAMETERIZATION = "non-centred"
#: Dense (True) or diagonal (False) mass matrix adapted in warm-up.
DENSE_MASS = False
#: Where each run's AR(1) deviation starts: "zero" (x = 0 one checkpoint before the run's first,
#: so the run's level is u_k's alone) or "stationary" (the single-configuration form).
TREND_START = "zero"
#: The noise scales σ_obs, σ_logit: "partial" (one per configuration, log-normally around a
#: typical scale, `noise_scale`) or "shared" (one for all configurations).
NOISE_POOLING = "partial"
#: Prior scale of the sd s of log σ_j across configurations (0.5: factors of e^±1 at 2 sd).
NOISE_SPREAD = 0.5
JITTER = 0.1


def prior_moments(priors: Mapping[str, Any], draws: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of (logit α, log β, log γ̃) under the single-configuration priors (seeded
    Monte Carlo): the prior of μ.

    >>> from bayesicl.inference.model import default_priors
    >>> mean, sd = prior_moments(default_priors("urns", 1000.0))
    >>> round(float(mean[1]), 2), round(float(sd[1]), 2)
    (-1.61, 0.5)
    """
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    alpha = prior_distribution(priors, "alpha").sample(keys[0], (draws,))
    beta = prior_distribution(priors, "beta").sample(keys[1], (draws,))
    gamma = prior_distribution(priors, "gamma_ref").sample(keys[2], (draws,))
    values = np.stack([np.asarray(jnp.log(alpha) - jnp.log1p(-alpha)), np.asarray(jnp.log(beta)),
                       np.asarray(jnp.log(gamma))])
    return values.mean(axis=1), values.std(axis=1)


def theta_to_parameters(theta, reference_step):
    """(…, 3) θ → α, β, γ (…) with γ = γ̃ N_ref^(α−1) (JAX)."""
    alpha = jax.nn.sigmoid(theta[..., 0])
    return alpha, jnp.exp(theta[..., 1]), jnp.exp(theta[..., 2]) * jnp.power(reference_step, alpha - 1.0)


def population_model(data, config, x, priors: Mapping[str, Any], mu_mean, mu_sd, pool: str = "partial",
                     effects: str = "run+trend", num_configs: int = 1, run_parameterization: str | None = None):
    """The joint model of all configurations (see the module docstring). `data` is the
    stacked `ModelData`, `config` (C,) each row's configuration, `x` (J, P) covariates."""
    if pool == "full":
        alpha, beta, gamma = sampled_parameters(priors, data.reference_step)
        ones = jnp.ones(num_configs)
        numpyro.deterministic("config_alpha", alpha * ones)
        numpyro.deterministic("config_beta", beta * ones)
        numpyro.deterministic("config_gamma", gamma * ones)
        params = (alpha, beta, gamma)
    else:
        mu = numpyro.sample("mu", dist.Normal(mu_mean, mu_sd).to_event(1))
        theta = jnp.broadcast_to(mu, (num_configs, 3))
        if x.shape[1] > 0:
            b = numpyro.sample("B", dist.Normal(0.0, B_SCALE).expand([3, x.shape[1]]).to_event(2))
            theta = theta + x @ b.T
        tau = numpyro.sample("tau", dist.HalfNormal(TAU_SCALE).expand([3]).to_event(1))
        chol = numpyro.sample("L", dist.LKJCholesky(3, LKJ_CONCENTRATION))
        if PARAMETERIZATION == "centred":
            theta = numpyro.sample("theta", dist.MultivariateNormal(theta, scale_tril=tau[:, None] * chol).to_event(1))
        else:
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([num_configs, 3]).to_event(2))
            theta = numpyro.deterministic("theta", theta + (z @ chol.T) * tau)
        alpha, beta, gamma = theta_to_parameters(theta, data.reference_step)
        numpyro.deterministic("config_alpha", alpha)
        numpyro.deterministic("config_beta", beta)
        numpyro.deterministic("config_gamma", gamma)
        params = (alpha[config], beta[config], gamma[config])
    sigma_obs, sigma_logit = (noise_scale(name, priors, num_configs)[config] for name in NOISE_SITES)
    offset = None
    if effects != "none":
        offset = run_effects(priors, data.run_rows.shape[0],
                             run_parameterization or RUN_PARAMETERIZATION)[data.effect_run]
    weights = strategy_weights(params, data, offset)
    corr = (numpyro.sample("trend_corr", prior_distribution(priors, "trend_corr"))
            if effects == "run+trend" else None)
    observation_likelihood(data, weights, sigma_obs, sigma_logit, corr, trend_start=TREND_START)


def noise_scale(name: str, priors: Mapping[str, Any], num_configs: int):
    """One noise scale per configuration (J,) (`NOISE_POOLING` "partial"): σ_j = σ · exp(s z_j),
    with σ the typical scale (site `name`, the single-configuration prior), s ~
    HalfNormal(`NOISE_SPREAD`) (site `name`_spread) and z_j ~ N(0, 1) (site `name`_z); recorded
    as "config_`name`". With "shared", the one scale broadcast."""
    typical = numpyro.sample(name, prior_distribution(priors, name))
    if NOISE_POOLING == "shared":
        return numpyro.deterministic(f"config_{name}", typical * jnp.ones(num_configs))
    spread = numpyro.sample(f"{name}_spread", dist.HalfNormal(NOISE_SPREAD))
    z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0).expand([num_configs]).to_event(1))
    return numpyro.deterministic(f"config_{name}", typical * jnp.exp(spread * z))


def noise_draws(samples: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The population's noise sites, flattened (what `new_noise` draws from); None without samples."""
    if samples is None:
        return None
    names = (*NOISE_SITES, *(f"{n}_spread" for n in NOISE_SITES), "sigma_run", "trend_corr")
    return {k: np.asarray(samples[k], dtype=np.float64).reshape(-1) for k in names if k in samples}


def new_noise(samples: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Flattened noise scales of a configuration nobody trained, one per posterior draw: σ · exp(s z)
    with a fresh z per draw (σ alone when the scales are shared); σ_run and φ as they are.

    >>> new_noise({"sigma_obs": np.ones((1, 2)), "sigma_logit": np.ones((1, 2))}, np.random.default_rng(0))
    {'sigma_obs': array([1., 1.]), 'sigma_logit': array([1., 1.])}
    """
    def flat(v):
        return np.asarray(v, dtype=np.float64).reshape(-1)

    out = {}
    for name in NOISE_SITES:
        value = flat(samples[name])
        if f"{name}_spread" in samples:
            value = value * np.exp(flat(samples[f"{name}_spread"]) * rng.standard_normal(value.size))
        out[name] = value
    for name in ("sigma_run", "trend_corr"):
        if name in samples:
            out[name] = flat(samples[name])
    return out


def initial_values(stacked, maps: list[dict], x: np.ndarray, pool: str, effects: str, seed: int,
                   num_chains: int) -> dict[str, np.ndarray]:
    """Unconstrained starting values per chain (see the module docstring)."""
    reference = stacked.reference_step
    theta = np.array([[math.log(m["alpha"] / (1.0 - m["alpha"])), math.log(m["beta"]),
                       math.log(m["gamma"]) + (1.0 - m["alpha"]) * math.log(reference)] for m in maps])
    rng = stream((seed, 7), "fit")
    init: dict[str, np.ndarray] = {}

    def jitter(value):
        value = np.asarray(value, dtype=np.float64)
        return value[None] + JITTER * rng.standard_normal((num_chains,) + value.shape)

    if pool == "full":
        center = theta.mean(axis=0)
        for name, value in zip(("logit_alpha", "log_beta", "log_gamma_ref"), center):
            init[name] = jitter(value)
        fitted = np.broadcast_to(center, theta.shape)
    else:
        design = np.concatenate([np.ones((theta.shape[0], 1)), x], axis=1)
        coef, *_ = np.linalg.lstsq(design, theta, rcond=None)
        fitted = design @ coef
        residual = theta - fitted
        tau = np.clip(residual.std(axis=0) if theta.shape[0] > design.shape[1] else np.full(3, 0.2), 0.05, 2.0)
        init["mu"] = jitter(coef[0])
        if x.shape[1] > 0:
            init["B"] = jitter(coef[1:].T)
        init["tau"] = jitter(np.log(tau))
        init["L"] = JITTER * rng.standard_normal((num_chains, 3))
        if PARAMETERIZATION == "centred":
            init["theta"] = jitter(theta)
        else:
            init["z"] = jitter(np.clip(residual / tau, -3, 3))
        fitted = theta
    alpha, beta, gamma = (np.asarray(v) for v in theta_to_parameters(jnp.asarray(fitted), reference))
    model = stacked.model
    weights = strategy_weights((jnp.asarray(alpha[stacked.config]), jnp.asarray(beta[stacked.config]),
                                jnp.asarray(gamma[stacked.config])), model)
    residual = np.asarray(model.observed) - np.asarray(expected_observation(model, weights)[0])
    sigma = min(max(float(np.sqrt(np.mean(residual ** 2))), 1e-3), 1.0)
    init["sigma_obs"] = jitter(np.log(sigma / 2))
    init["sigma_logit"] = jitter(np.log(2 * sigma))
    if NOISE_POOLING == "partial":
        for name in NOISE_SITES:
            init[f"{name}_spread"] = jitter(np.log(0.2))
            init[f"{name}_z"] = JITTER * rng.standard_normal((num_chains, len(maps)))
    if effects != "none":
        init["sigma_run"] = jitter(np.log(0.5))
        name = "run_effect" if RUN_PARAMETERIZATION == "centred" else "run_z"
        init[name] = JITTER * rng.standard_normal((num_chains, int(model.run_rows.shape[0])))
    if effects == "run+trend":
        init["trend_corr"] = jitter(0.0)
    return init


def sample_population(stacked, x: np.ndarray, maps: list[dict], priors: Mapping[str, Any], pool: str,
                      effects: str, seed: int = 0, num_chains: int = 4, num_samples: int = 1000,
                      num_warmup: int = 1000, progress: bool = False) -> dict[str, Any]:
    """NUTS on the population model, one jitted program for every chain (as
    `bayesicl.inference.nuts`: initialization, warm-up and sampling, chains one after the other on
    each CPU device, `bayesicl.inference.chains`);
    returns {"samples": per-chain draws (chain, draw, …) of every site, "diverging": (chain,
    draw), "runtime_s"}. (`progress` is accepted for symmetry; the program reports nothing.)"""
    clock = time.perf_counter()
    enable_compilation_cache()
    mu_mean, mu_sd = prior_moments(priors)
    init = initial_values(stacked, maps, x, pool, effects, seed, num_chains)
    prior_key = tuple(sorted((k, kind, tuple(args)) for k, (kind, args) in priors.items()))
    program = _program(prior_key, pool, effects, int(x.shape[0]), int(num_chains), int(num_samples),
                       int(num_warmup), PARAMETERIZATION, RUN_PARAMETERIZATION, bool(DENSE_MASS),
                       (TREND_START, NOISE_POOLING, NOISE_SPREAD))
    keys = jax.random.split(jax.random.PRNGKey(int(stream((seed, 8), "fit").integers(2**31))), num_chains)
    inputs = (stacked.model, jnp.asarray(stacked.config), jnp.asarray(x), jnp.asarray(mu_mean), jnp.asarray(mu_sd))
    per_chain = place_chains((keys, {k: jnp.asarray(v) for k, v in init.items()}))
    out = jax.device_get(program(*per_chain, inputs))
    samples = {k: np.asarray(v, dtype=np.float64) for k, v in out["sites"].items()}
    return {"samples": samples, "diverging": np.asarray(out["diverging"]), "num_steps": np.asarray(out["num_steps"]),
            "runtime_s": time.perf_counter() - clock, "prior_mu": (mu_mean, mu_sd)}


@functools.lru_cache(maxsize=4)
def _program(prior_key, pool: str, effects: str, num_configs: int, num_chains: int, num_samples: int,
             num_warmup: int, parameterization: str, run_parameterization: str = "centred", dense_mass: bool = True,
             switches: tuple = ()):
    priors = {name: (kind, args) for name, kind, args in prior_key}     # (`parameterization`, `switches` key the cache)

    def model(inputs):
        data, config, x, mu_mean, mu_sd = inputs
        return population_model(data, config, x, priors, mu_mean, mu_sd, pool=pool, effects=effects,
                                num_configs=num_configs, run_parameterization=run_parameterization)

    chain = nuts_chain(model, num_warmup, num_samples, dense_mass=dense_mass, target_accept=TARGET_ACCEPT)

    def run(keys, init, inputs):
        trace = map_chains(chain, (keys, init), inputs)
        return {"sites": constrained_draws(model, (inputs,), trace["z"]), "diverging": trace["diverging"],
                "num_steps": trace["num_steps"]}

    return jax.jit(run)


def config_draws(samples: Mapping[str, np.ndarray], j: int, columns: tuple[int, int], effects: str
                 ) -> dict[str, np.ndarray]:
    """Flattened draws of configuration j in the layout of `bayesicl.inference.nuts.NutsResult.draws`:
    α, β, γ of j, the shared noise scales (σ_run, φ) and j's run effects (draws, R_j)."""
    def flat(v):
        return np.asarray(v).reshape((-1,) + np.shape(v)[2:])

    out = {"alpha": flat(samples["config_alpha"])[:, j], "beta": flat(samples["config_beta"])[:, j],
           "gamma": flat(samples["config_gamma"])[:, j]}
    for name in (*NOISE_SITES, "sigma_run", "trend_corr"):
        if name in samples:
            out[name] = flat(samples[name])
    for name in NOISE_SITES:            # the configuration's own scales
        if f"config_{name}" in samples:
            out[name] = flat(samples[f"config_{name}"])[:, j]
    if effects != "none":
        out["run_effect"] = flat(samples["run_effect"])[:, columns[0]:columns[1]]
    return out


def population_draws(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flattened draws of μ (n, 3), B (n, 3, P), τ (n, 3) and L (n, 3, 3) (partial pooling)."""
    def flat(v):
        return np.asarray(v).reshape((-1,) + np.shape(v)[2:])

    out = {k: flat(samples[k]) for k in ("mu", "tau", "L") if k in samples}
    if "B" in samples:
        out["B"] = flat(samples["B"])
    elif "mu" in samples:
        out["B"] = np.zeros(out["mu"].shape + (0,))
    return out


def new_theta(population: Mapping[str, np.ndarray], x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """θ (n, 3) of a configuration nobody trained, one per posterior draw: μ + B x +
    diag(τ) L z with a fresh z ~ N(0, I) per draw (`x` (P,) its standardized covariates).

    >>> pop = {"mu": np.zeros((2, 3)), "B": np.ones((2, 3, 1)), "tau": np.zeros((2, 3)),
    ...        "L": np.broadcast_to(np.eye(3), (2, 3, 3))}
    >>> new_theta(pop, np.array([2.0]), np.random.default_rng(0)).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """
    mu, b, tau, chol = (np.asarray(population[k]) for k in ("mu", "B", "tau", "L"))
    z = rng.standard_normal(mu.shape)
    return mu + np.einsum("nkp,p->nk", b, np.asarray(x, dtype=np.float64)) + tau * np.einsum("nkl,nl->nk", chol, z)


def theta_params(theta: np.ndarray, reference_step: float) -> dict[str, np.ndarray]:
    """{"alpha", "beta", "gamma"} draws from θ draws (n, 3) (NumPy)."""
    alpha, beta, gamma = (np.asarray(v, dtype=np.float64) for v in theta_to_parameters(jnp.asarray(theta),
                                                                                      reference_step))
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


__all__ = ["POOLS", "THETA_NAMES", "population_model", "sample_population", "config_draws", "new_noise", "noise_draws",
           "population_draws", "new_theta", "theta_params", "prior_moments"]
