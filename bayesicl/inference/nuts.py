"""NUTS fit: the posterior of (α, β, γ), the noise scales and the run effects under
`bayesicl.inference.model.nuts_model` (with the parameters an ablation pins held fixed by
`bayesicl.inference.model.pin`).

Chains start at the MAP estimate (the optimum of `bayesicl.inference.map`) jittered by 0.1 in the
unconstrained space, with the noise scales set from the root-mean-square residual of the
observations around the MAP prediction and the run effects at zero, so warm-up does not have
to find the band where the weights move from a prior draw (where every weight can be
saturated and the likelihood flat). NUTS uses a dense mass matrix and target acceptance 0.95.

The sampler is NumPyro's NUTS kernel on the model's potential energy
(`bayesicl.inference.chains.nuts_chain`), driven by one jitted program per configuration:
initialization, warm-up and sampling of every chain (vmapped: "vectorized", or one after the
other on each CPU device: "sequential", `bayesicl.inference.chains`), then the deterministic
sites and per-condition log-likelihoods. The data are arguments, so a second fit of
same-shaped data reuses the compiled program (in memory, and on disk through JAX's
persistent cache, see `enable_compilation_cache`); compiling costs far more than sampling
this small posterior on a CPU. The result is an ArviZ InferenceData with the posterior,
sample stats (divergences, tree sizes), the per-condition log-likelihood (the marginal of
each observation given the parameters and its run's effect) and the observed data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import rational
from ..cache_folder import cache_dir
from ..errors import BayesiclError
from ..families import family_spec
from ..seeds import stream
from .data import FitData
from . import model as model_module
from .chains import constrained_draws, map_chains, nuts_chain, place_chains
from .map import MapResult, free_sites, to_unconstrained
from .model import (NOISE_SITES, SAMPLED, expected_observation, free_parameters, model_weights, nuts_model,
                    observation_scale, pin, strategy_weights)

#: Scalar sites reported per draw besides α, β, γ, per effects setting.
EFFECT_SITES = {"none": (), "run": ("sigma_run",), "run+trend": ("sigma_run", "trend_corr")}

#: How chains run inside the one compiled program: "sequential" (one after the other on each
#: CPU device, the chains split over the devices, `bayesicl.inference.chains`) or "vectorized"
#: (vmapped, in lockstep: every chain waits for the longest trajectory). On 2 CPU cores
#: sequential measured faster both to compile and to run (benchmarks/fit.py: 4 chains × 2000
#: iterations, 256 conditions, one device: 8.5 s cold / 3.9 s warm against 20.2 s / 6.9 s).
CHAIN_METHOD = "sequential"
CHAIN_METHODS = ("vectorized", "sequential")
TARGET_ACCEPT = 0.95
JITTER = 0.1
#: Iterations between progress-bar updates.
PROGRESS_EVERY = 50


def family_target_accept(task) -> float:
    """NUTS's target acceptance for the task's family: the spec's `target_accept` where the
    default leaves divergences (regression and classification: their demos' posteriors curve
    at α → 1; docs/decisions.md), else `TARGET_ACCEPT`.

    >>> import bayesicl as bic
    >>> family_target_accept(bic.task("regression")), family_target_accept(bic.task("urns"))
    (0.99, 0.95)
    """
    own = family_spec(task).target_accept
    return TARGET_ACCEPT if own is None else float(own)


@dataclasses.dataclass(frozen=True, eq=False)
class NutsResult:
    """Posterior draws (flattened chain-major) of α, β, γ, the noise scales, σ_run, φ and
    "run_effect" (draws, R) for the fitted runs `runs` (evidence run indices), the
    InferenceData and the sampler's diagnostics."""

    draws: dict[str, np.ndarray]
    idata: Any
    diagnostics: dict[str, Any]
    runtime_s: float
    effects: str = "none"
    runs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: Where each run's AR(1) deviation starts (`bayesicl.inference.predict.trend_share`): the
    #: single-configuration model's is stationary, the population model's zero.
    trend_start: str = "stationary"


def fit_nuts(data: FitData, priors: dict, map_result: MapResult, seed: int = 0, num_chains: int = 4,
             num_samples: int = 1000, num_warmup: int = 1000, chain_method: str = CHAIN_METHOD,
             progress: bool = False, effects: str = "run+trend") -> NutsResult:
    """Sample the posterior with NUTS on the fit conditions with a finite observation."""
    clock = time.perf_counter()
    if chain_method not in CHAIN_METHODS:
        raise BayesiclError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    for name, value, least in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                               ("num_warmup", num_warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise BayesiclError(f"{name} must be an integer ≥ {least}, got {value!r}")
    rows = data.likelihood_rows
    if rows.size < 3:
        raise BayesiclError(f"NUTS needs at least 3 fit conditions with a finite observed weight, "
                            f"got {rows.size}")
    model_data = data.model_data(rows)
    pinned = tuple(rational.ablation(data.variant).items())       # hashable: keys the compiled program
    init = _initial_values(data, model_data, map_result, seed, num_chains, effects, dict(pinned))
    enable_compilation_cache()
    prior_key = tuple(sorted((k, kind, tuple(args)) for k, (kind, args) in priors.items()))
    target_accept = family_target_accept(data.evidence.task)
    sampler = _sampler(prior_key, pinned, effects, int(num_chains), int(num_samples), int(num_warmup),
                       chain_method, bool(progress), float(target_accept))
    keys = jax.random.split(jax.random.PRNGKey(int(stream((seed, 2), "fit").integers(2**31))), num_chains)
    with _progress_bar(progress, num_chains * (num_warmup + num_samples) if chain_method == "sequential"
                       else num_warmup + num_samples) as bar:
        _PROGRESS["bar"] = bar
        per_chain = place_chains((keys, init)) if chain_method == "sequential" else (keys, init)
        out = jax.device_get(sampler(*per_chain, model_data))
        _PROGRESS["bar"] = None
    runs = data.fitted_runs
    idata = _inference_data(out, data, rows, model_data, runs)
    draws = {name: np.asarray(out["sites"][name], dtype=np.float64).reshape(-1)
             for name in ("alpha", "beta", "gamma", *NOISE_SITES, *EFFECT_SITES[effects])}
    if effects != "none":
        effect = np.asarray(out["sites"]["run_effect"], dtype=np.float64)
        draws["run_effect"] = effect.reshape(-1, effect.shape[-1])
    return NutsResult(draws=draws, idata=idata, diagnostics=diagnostics(idata, dict(pinned), effects),
                      runtime_s=time.perf_counter() - clock, effects=effects, runs=runs)


def diagnostics(idata, pinned: dict[str, float], effects: str = "none") -> dict[str, Any]:
    """r̂ (max), bulk ESS (min) over the free parameters (those not `pinned`), noise scales
    and run effects, and the number of divergent transitions."""
    names = free_parameters(pinned) + list(NOISE_SITES) + list(EFFECT_SITES[effects])
    if effects != "none":
        names.append("run_effect")
    rhat = az.rhat(idata, var_names=names)
    ess = az.ess(idata, var_names=names, method="bulk")
    return {"r_hat_max": float(max(float(np.max(rhat[n].values)) for n in names)),
            "ess_bulk_min": float(min(float(np.min(ess[n].values)) for n in names)),
            "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
            "num_chains": int(idata.posterior.sizes["chain"]),
            "num_draws": int(idata.posterior.sizes["draw"])}


def enable_compilation_cache() -> None:
    """Keep compiled samplers on disk (JAX's persistent compilation cache) under the
    bayesicl cache folder, unless the user configured a JAX cache already."""
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))


@functools.lru_cache(maxsize=8)
def _sampler(prior_key, pinned: tuple, effects: str, num_chains: int, num_samples: int, num_warmup: int,
             chain_method: str, progress: bool, target_accept: float = TARGET_ACCEPT):
    """The jitted program (keys (chains,), initial values, data) → draws and statistics.

    With `progress`, the loop reports to a progress bar through a host callback; JAX does
    not cache programs with callbacks on disk, so the library default is without."""
    priors = {name: (kind, args) for name, kind, args in prior_key}
    model = pin(functools.partial(nuts_model, priors=priors, effects=effects), dict(pinned))

    def report(i):
        jax.lax.cond(i % PROGRESS_EVERY == PROGRESS_EVERY - 1, lambda: jax.debug.callback(_advance), lambda: None)

    chain = nuts_chain(model, num_warmup, num_samples, dense_mass=True, target_accept=target_accept,
                       curvature_start=True,
                       trace=("z", "diverging", "num_steps", "accept_prob", "potential_energy"),
                       on_step=report if progress else None)

    def run(keys, init, data):
        if chain_method == "vectorized":
            trace = jax.vmap(chain, in_axes=(0, 0, None))(keys, init, data)
        else:
            trace = map_chains(chain, (keys, init), data)
        sites = constrained_draws(model, (data,), trace["z"])
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), sites)
        loglik = {"r" if data.observed.ndim == 1 else "convex_weights": pointwise_log_likelihood(flat, data)}
        per_chain = lambda x: x.reshape((num_chains, num_samples) + x.shape[1:])  # noqa: E731
        return {"sites": sites, "log_likelihood": jax.tree.map(per_chain, loglik),
                "unconstrained": trace["z"], "diverging": trace["diverging"], "num_steps": trace["num_steps"],
                "accept_prob": trace["accept_prob"], "potential_energy": trace["potential_energy"]}

    return jax.jit(run)


def pointwise_log_likelihood(sites: dict, data) -> Any:
    """log p(y_c | parameters, run effect) per draw and condition (draws, C): the marginal
    of each observation (the within-run correlation of "run+trend" integrates out of it)."""
    params = tuple(jnp.asarray(sites[k])[:, None] for k in ("alpha", "beta", "gamma"))
    offset = sites["run_effect"][:, data.effect_run] if "run_effect" in sites else None
    weights = strategy_weights(params, data, offset)
    mean, sensitivity = expected_observation(data, weights)
    sigma_obs, sigma_logit = (jnp.asarray(sites[k]) for k in NOISE_SITES)
    extra = (slice(None),) + (None,) * (mean.ndim - 1)
    scale = observation_scale(sigma_obs[extra], sigma_logit[extra], sensitivity)
    logp = -0.5 * ((data.observed - mean) / scale) ** 2 - jnp.log(scale) - 0.5 * math.log(2 * math.pi)
    return logp.sum(axis=-1) if logp.ndim == 3 else logp


def _inference_data(out: dict, data: FitData, rows: np.ndarray, model_data, runs: np.ndarray) -> Any:
    site = "r" if data.observed.ndim == 1 else "convex_weights"
    posterior = {name: np.asarray(value) for name, value in out["sites"].items() if name != "run_z"}
    condition = data.evidence.conditions["condition"].to_numpy()[rows]
    dims = {site: ["condition"] if data.observed.ndim == 1 else ["condition", "strategy"],
            "run_effect": ["run"]}
    return az.from_dict(
        posterior=posterior,
        sample_stats={"diverging": np.asarray(out["diverging"]), "n_steps": np.asarray(out["num_steps"]),
                      "acceptance_rate": np.asarray(out["accept_prob"]),
                      "lp": -np.asarray(out["potential_energy"])},
        log_likelihood={site: np.asarray(out["log_likelihood"][site])},
        observed_data={site: np.asarray(model_data.observed)},
        coords={"condition": condition, "strategy": list(data.evidence.strategies),
                "run": np.asarray(runs)}, dims=dims)


def _initial_values(data: FitData, model_data, map_result: MapResult, seed: int,
                    num_chains: int, effects: str = "none", pinned=None) -> dict[str, jax.Array]:
    sites = free_sites(pinned or {})
    center = to_unconstrained(map_result.params, sites)
    weights = model_weights(tuple(map_result.params[k] for k in ("alpha", "beta", "gamma")), model_data)
    residual = np.asarray(model_data.observed) - np.asarray(expected_observation(model_data, weights)[0])
    sigma = min(max(float(np.sqrt(np.mean(residual ** 2))), 1e-3), 1.0)
    rng = stream((seed, 3), "fit")
    init = {}
    for i, site in enumerate(sites):
        value = center[i]
        if site == "log_gamma":     # the sampler's γ̃ = γ N_ref^(1−α)
            site = SAMPLED["gamma"]
            value = value + (1.0 - map_result.params["alpha"]) * math.log(data.reference_step)
        init[site] = value + JITTER * rng.standard_normal(num_chains)
    # Unconstrained values of the positive scales are their logs: half the residual each.
    init["sigma_obs"] = np.log(sigma / 2) + JITTER * rng.standard_normal(num_chains)
    init["sigma_logit"] = np.log(2 * sigma) + JITTER * rng.standard_normal(num_chains)
    if effects != "none":
        init["sigma_run"] = np.log(0.5) + JITTER * rng.standard_normal(num_chains)
        site = "run_effect" if model_module.RUN_PARAMETERIZATION == "centred" else "run_z"
        init[site] = JITTER * rng.standard_normal((num_chains, model_data.run_rows.shape[0]))
    if effects == "run+trend":
        init["trend_corr"] = JITTER * rng.standard_normal(num_chains)       # logit φ ≈ 0
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in init.items()}


# -- progress ---------------------------------------------------------------------------------------

_PROGRESS: dict[str, Any] = {"bar": None}


def _advance() -> None:
    bar = _PROGRESS["bar"]
    if bar is not None:
        bar.update(PROGRESS_EVERY)


class _progress_bar:
    """A tqdm bar over sampler iterations (stderr), or nothing."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.bar = enabled, total, None

    def __enter__(self):
        if self.enabled:
            self.bar = tqdm(total=self.total, desc="NUTS (first run compiles)", unit="it")
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
