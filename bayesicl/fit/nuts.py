"""NUTS fit: the posterior of (α, β, γ, σ_obs) under `rational_model(..., mode="nuts")`.

Chains start at the MAP estimate (the optimum of `bayesicl.fit.map`) jittered by 0.1 in the
unconstrained space, with the noise scales set from the root-mean-square residual of the
observations around the MAP prediction, so warm-up does not have to find the band where the weights move from a
prior draw (where every weight can be saturated and the likelihood flat). NUTS uses a dense
mass matrix — logit α, log β and log γ are strongly correlated (γN^(1−α) trades α against
γ) — and target acceptance 0.9.

The sampler is NumPyro's NUTS kernel (`numpyro.infer.hmc.hmc`) on the model's potential
energy, driven by one jitted program per configuration: initialization, warm-up and sampling
of every chain (vmapped: "vectorized", or one after the other: "sequential"), then the
deterministic sites and per-condition log-likelihoods. The data are arguments, so a second fit
of same-shaped data reuses the compiled program (in memory, and on disk through JAX's
persistent cache, see `enable_compilation_cache`); compiling costs far more than sampling
this 4-parameter posterior on a CPU. The result is an ArviZ InferenceData with the posterior,
sample stats (divergences, tree sizes), the per-condition log-likelihood (LOO/WAIC) and the
observed data.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, log_likelihood, potential_energy

from ..errors import BayesiclError
from ..seeds import stream
from .data import FitData
from .map import MapResult, free_sites, to_unconstrained
from .model import NOISE_SITES, expected_observation, model_weights, rational_model

#: How chains run inside the one compiled program: "sequential" (one after the other) or
#: "vectorized" (vmapped, in lockstep: every chain waits for the longest trajectory). On 2 CPU
#: cores sequential measured faster both to compile and to run (benchmarks/fit.py: 4 chains ×
#: 2000 iterations, 256 conditions: 8.5 s cold / 3.9 s warm against 20.2 s / 6.9 s).
CHAIN_METHOD = "sequential"
CHAIN_METHODS = ("vectorized", "sequential")
TARGET_ACCEPT = 0.9
JITTER = 0.1
#: Iterations between progress-bar updates.
PROGRESS_EVERY = 50


@dataclasses.dataclass(frozen=True, eq=False)
class NutsResult:
    """Posterior draws (flattened chain-major) of α, β, γ, σ_obs, the InferenceData and
    the sampler's diagnostics."""

    draws: dict[str, np.ndarray]
    idata: Any
    diagnostics: dict[str, Any]
    runtime_s: float


def fit_nuts(data: FitData, priors: dict, map_result: MapResult, seed: int = 0, num_chains: int = 4,
             num_samples: int = 1000, num_warmup: int = 1000, chain_method: str = CHAIN_METHOD,
             progress: bool = False) -> NutsResult:
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
    init = _initial_values(data, model_data, map_result, seed, num_chains)
    enable_compilation_cache()
    prior_key = tuple(sorted((k, kind, tuple(args)) for k, (kind, args) in priors.items()))
    sampler = _sampler(prior_key, data.variant, int(num_chains), int(num_samples), int(num_warmup),
                       chain_method, bool(progress))
    keys = jax.random.split(jax.random.PRNGKey(int(stream((seed, 2), "fit").integers(2**31))), num_chains)
    with _progress_bar(progress, num_chains * (num_warmup + num_samples) if chain_method == "sequential"
                       else num_warmup + num_samples) as bar:
        _PROGRESS["bar"] = bar
        out = jax.device_get(sampler(keys, init, model_data))
        _PROGRESS["bar"] = None
    idata = _inference_data(out, data, rows, model_data)
    draws = {name: np.asarray(out["sites"][name], dtype=np.float64).reshape(-1)
             for name in ("alpha", "beta", "gamma", *NOISE_SITES)}
    return NutsResult(draws=draws, idata=idata, diagnostics=diagnostics(idata, data.variant),
                      runtime_s=time.perf_counter() - clock)


def diagnostics(idata, variant: str) -> dict[str, Any]:
    """r̂ (max), bulk ESS (min) over the free parameters and noise scales, and the number of
    divergent transitions."""
    names = free_sites(variant) + list(NOISE_SITES)
    rhat = az.rhat(idata, var_names=names)
    ess = az.ess(idata, var_names=names, method="bulk")
    return {"r_hat_max": float(max(float(rhat[n]) for n in names)),
            "ess_bulk_min": float(min(float(ess[n]) for n in names)),
            "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
            "num_chains": int(idata.posterior.sizes["chain"]),
            "num_draws": int(idata.posterior.sizes["draw"])}


def enable_compilation_cache() -> None:
    """Keep compiled samplers on disk (JAX's persistent compilation cache) under the
    bayesicl cache folder, unless the user configured a JAX cache already."""
    if jax.config.jax_compilation_cache_dir is None:
        from ..evidence.cache import cache_dir

        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))


@functools.lru_cache(maxsize=8)
def _sampler(prior_key, variant: str, num_chains: int, num_samples: int, num_warmup: int,
             chain_method: str, progress: bool):
    """The jitted program (keys (chains,), initial values, data) → draws and statistics.

    With `progress`, the loop reports to a progress bar through a host callback; JAX does
    not cache programs with callbacks on disk, so the library default is without."""
    priors = {name: (kind, args) for name, kind, args in prior_key}
    model = functools.partial(rational_model, mode="nuts", priors=priors, variant=variant)
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda data: (lambda z: potential_energy(model, (data,), {}, z)), algo="NUTS")

    def chain(key, z0, data):
        state = init_kernel(z0, num_warmup, dense_mass=True, target_accept_prob=TARGET_ACCEPT,
                            model_args=(data,), rng_key=key)

        def step(state, i):
            state = sample_kernel(state, model_args=(data,))
            if progress:
                jax.lax.cond(i % PROGRESS_EVERY == PROGRESS_EVERY - 1,
                             lambda: jax.debug.callback(_advance), lambda: None)
            return state, (state.z, state.diverging, state.num_steps, state.accept_prob,
                           state.potential_energy)

        _, trace = jax.lax.scan(step, state, jnp.arange(num_warmup + num_samples))
        return jax.tree.map(lambda x: x[num_warmup:], trace)

    def run(keys, init, data):
        if chain_method == "vectorized":
            z, diverging, steps, accept, energy = jax.vmap(chain, in_axes=(0, 0, None))(keys, init, data)
        else:
            z, diverging, steps, accept, energy = jax.lax.map(lambda a: chain(a[0], a[1], data), (keys, init))
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), z)
        sites = constrain_fn(model, (data,), {}, flat, return_deterministic=True, batch_ndims=1)
        loglik = log_likelihood(model, sites, data)
        per_chain = lambda x: x.reshape((num_chains, num_samples) + x.shape[1:])  # noqa: E731
        return {"sites": jax.tree.map(per_chain, sites), "log_likelihood": jax.tree.map(per_chain, loglik),
                "unconstrained": z, "diverging": diverging, "num_steps": steps,
                "accept_prob": accept, "potential_energy": energy}

    return jax.jit(run)


def _inference_data(out: dict, data: FitData, rows: np.ndarray, model_data) -> Any:
    site = "r" if data.observed.ndim == 1 else "convex_weights"
    posterior = {name: np.asarray(value) for name, value in out["sites"].items()}
    condition = data.evidence.conditions["condition"].to_numpy()[rows]
    dims = {site: ["condition"] if data.observed.ndim == 1 else ["condition", "strategy"]}
    return az.from_dict(
        posterior=posterior,
        sample_stats={"diverging": np.asarray(out["diverging"]), "n_steps": np.asarray(out["num_steps"]),
                      "acceptance_rate": np.asarray(out["accept_prob"]),
                      "lp": -np.asarray(out["potential_energy"])},
        log_likelihood={site: np.asarray(out["log_likelihood"][site])},
        observed_data={site: np.asarray(model_data.observed)},
        coords={"condition": condition, "strategy": list(data.evidence.strategies)}, dims=dims)


def _initial_values(data: FitData, model_data, map_result: MapResult, seed: int,
                    num_chains: int) -> dict[str, jax.Array]:
    sites = free_sites(data.variant)
    center = to_unconstrained(map_result.params, sites)
    weights = model_weights(tuple(map_result.params[k] for k in ("alpha", "beta", "gamma")), model_data)
    residual = np.asarray(model_data.observed) - np.asarray(expected_observation(model_data, weights)[0])
    sigma = min(max(float(np.sqrt(np.mean(residual ** 2))), 1e-3), 1.0)
    rng = stream((seed, 3), "fit")
    init = {site: center[i] + JITTER * rng.standard_normal(num_chains) for i, site in enumerate(sites)}
    # Unconstrained values of the positive scales are their logs: half the residual each.
    init["sigma_obs"] = np.log(sigma / 2) + JITTER * rng.standard_normal(num_chains)
    init["sigma_logit"] = np.log(2 * sigma) + JITTER * rng.standard_normal(num_chains)
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
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc="NUTS (first run compiles)", unit="it")
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
