"""The rational strategy model as ONE NumPyro model, run two ways (SPEC §6, §8).

`rational_model(data, mode=...)` samples the unconstrained parameters logit α, log β, log γ
(records α, β, γ as deterministic sites), computes every condition's strategy weights
w_c = softmax η(N_c, D_c) with `bayesicl.rational.log_weights`, and then

- mode "nuts": priors on the parameters (`default_priors`) and a likelihood with learned
  scales. Two strategies: the unclipped observed relative distance
  r_c ~ Normal(ρ_c(w_M,c), s_c), where ρ_c(w) is the r the mixture w·M + (1 − w)·G itself
  would show on the run's inputs (2w − 1 for squared error; a tabulated monotone warp of it
  for SKL, see `bayesicl.fit.observation`). More strategies: each observed convex weight
  ~ Normal(w_s,c, s_c,s). The scale has two parts,
      s_c² = ε² + σ_obs² + (σ_logit · ∂ρ_c/∂z)²,   ∂ρ_c/∂z = ρ_c'(w) · w(1 − w),
  σ_obs ~ HalfNormal(0.5) an additive error on r, σ_logit ~ HalfNormal(1) an error on the
  log-odds z of the weight (first order), ε = 1e-3 the resolution of r (`RESOLUTION`): a
  network whose weight is off by the same odds ratio everywhere deviates most in r where w is
  near 1/2 and hardly at all where it is saturated, and a single homoscedastic σ would make
  the posterior overconfident. One
  observation per condition, so the posterior width reflects how well the model explains
  the conditions, not how many tokens they hold.
- mode "map": flat (improper) priors on the unconstrained parameters and the paper's
  objective as a factor, −J(W_fit); the maximum of this log density is the minimum of the
  paper's objective, reached by `bayesicl.fit.map` through NumPyro's potential energy.

Variants pin a parameter (α = 0, β = 1, γ = 1); "constant_complexity" changes the data
(K_s(D) := K_s(D_min)) and not the model.

>>> import jax
>>> from numpyro.infer import Predictive
>>> data = ModelData(loss=jnp.array([[0.1, 0.2]]), complexity=jnp.array([[900.0, 100.0]]),
...                  step=jnp.array([1000.0]), run=jnp.array([0]), observed=None,
...                  curve_nodes=jnp.array([0.0, 1.0]), curve_values=jnp.array([[-1.0, 1.0]]),
...                  curve_slopes=jnp.array([[2.0, 2.0]]))
>>> draws = Predictive(rational_model, num_samples=3)(jax.random.PRNGKey(0), data)
>>> sorted(draws), draws["r"].shape
(['alpha', 'beta', 'gamma', 'log_beta', 'log_gamma', 'logit_alpha', 'r', 'sigma_logit', 'sigma_obs'], (3, 1))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints, transforms

from .. import rational
from ..errors import BayesiclError
from .objective import hermite_with_slope

#: The paper's starting points (α, β, γ) per family (SPEC §8); markov borrows urns'.
PAPER_START = {"urns": (0.6, 0.2, 0.85), "regression": (0.65, 0.3, 0.01),
               "classification": (0.8, 0.12, 1.5), "markov": (0.6, 0.2, 0.85)}
#: Unconstrained site of each parameter and the map from it to the parameter.
UNCONSTRAINED = {"alpha": ("logit_alpha", transforms.SigmoidTransform()),
                 "beta": ("log_beta", transforms.ExpTransform()),
                 "gamma": ("log_gamma", transforms.ExpTransform())}
#: Prior families accepted per parameter (support (0, 1) for α, (0, ∞) for the others).
PRIOR_FAMILIES = {
    "alpha": {"Beta": dist.Beta},
    "beta": {"LogNormal": dist.LogNormal, "HalfNormal": dist.HalfNormal, "Gamma": dist.Gamma,
             "Exponential": dist.Exponential, "HalfCauchy": dist.HalfCauchy},
}
PRIOR_FAMILIES["gamma"] = PRIOR_FAMILIES["beta"]
PRIOR_FAMILIES["sigma_obs"] = PRIOR_FAMILIES["beta"]
PRIOR_FAMILIES["sigma_logit"] = PRIOR_FAMILIES["beta"]
#: The observation-noise scales of the likelihood.
NOISE_SITES = ("sigma_obs", "sigma_logit")
#: The resolution ε of an observed r: outputs are stored as float16 (relative error ~5e-4),
#: which moves r by ~1e-3; below this the likelihood must not pretend to be sharper.
RESOLUTION = 1e-3

Prior = tuple[str, tuple[float, ...]]


def default_priors(family: str) -> dict[str, Prior]:
    """Weakly informative priors centred on the paper's values for the family.

    α ~ Beta(2, 2) (any sub-linear rate, away from the degenerate ends); β ~ LogNormal(log β₀, 1)
    and γ ~ LogNormal(log γ₀, 2) (a factor e ≈ 2.7 and e² ≈ 7.4 per standard deviation around
    the paper's fitted values β₀, γ₀; γ is the wider because its scale depends on the loss
    units); σ_obs ~ HalfNormal(0.5) (r lives on [−1, 1] where the model fits) and
    σ_logit ~ HalfNormal(1) (log-odds errors of a few tenths are typical of a good fit).

    >>> default_priors("urns")["beta"]
    ('LogNormal', (-1.6094379124341003, 1.0))
    """
    _, beta0, gamma0 = PAPER_START.get(family, PAPER_START["urns"])
    return {"alpha": ("Beta", (2.0, 2.0)), "beta": ("LogNormal", (math.log(beta0), 1.0)),
            "gamma": ("LogNormal", (math.log(gamma0), 2.0)), "sigma_obs": ("HalfNormal", (0.5,)),
            "sigma_logit": ("HalfNormal", (1.0,))}


def resolve_priors(family: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Prior]:
    """The family's default priors with `overrides` applied.

    An override is "Beta(2,2)" or ("Beta", (2, 2)), keyed by alpha, beta, gamma, sigma_obs or
    sigma_logit.

    >>> resolve_priors("urns", {"alpha": "Beta(5, 2)"})["alpha"]
    ('Beta', (5.0, 2.0))
    """
    priors = default_priors(family)
    for name, spec in (overrides or {}).items():
        if name not in PRIOR_FAMILIES:
            raise BayesiclError(f"prior for unknown parameter {name!r}; known: {sorted(PRIOR_FAMILIES)}")
        kind, args = parse_prior(spec) if isinstance(spec, str) else (str(spec[0]), tuple(map(float, spec[1])))
        if kind not in PRIOR_FAMILIES[name]:
            raise BayesiclError(f"prior {kind} is not allowed for {name}; use one of "
                                f"{sorted(PRIOR_FAMILIES[name])}")
        try:
            PRIOR_FAMILIES[name][kind](*args, validate_args=True)
        except (TypeError, ValueError) as error:
            raise BayesiclError(f"prior {name}={kind}{args}: {error}") from None
        priors[name] = (kind, args)
    return priors


def parse_prior(text: str) -> Prior:
    """'Beta(2, 2)' → ('Beta', (2.0, 2.0)).

    >>> parse_prior("LogNormal(-1.6, 1)")
    ('LogNormal', (-1.6, 1.0))
    """
    match = re.fullmatch(r"\s*([A-Za-z]+)\s*\(([^()]*)\)\s*", str(text))
    if not match:
        raise BayesiclError(f"prior {text!r} is not of the form Name(arg, ...), e.g. Beta(2,2)")
    try:
        args = tuple(float(a) for a in match.group(2).split(",") if a.strip())
    except ValueError:
        raise BayesiclError(f"prior {text!r}: arguments must be numbers") from None
    return match.group(1), args


class ModelData(NamedTuple):
    """The conditions the model explains, as arrays (C conditions, S strategies).

    loss, complexity (C, S): L̄_s(D_c), K_s(D_c); step (C,): N_c; run (C,): each condition's
    run (row of the ρ tables); observed: (C,) unclipped r (two strategies), (C, S) convex
    weights (more), or None (map mode, or to simulate); curve_*: the ID-split ρ tables
    (nodes (K,), values and slopes (R, K)) of `bayesicl.fit.observation`.
    """

    loss: Any
    complexity: Any
    step: Any
    run: Any
    observed: Any
    curve_nodes: Any
    curve_values: Any
    curve_slopes: Any


def strategy_parameters(mode: str, priors: Mapping[str, Prior], variant: str | None):
    """Sample (or pin) α, β, γ: unconstrained sites with priors (nuts) or flat (map)."""
    pinned = rational.FIXED.get(rational.check_variant(variant))
    values = []
    for name in rational.PARAMETERS:
        if pinned is not None and pinned[0] == name:
            values.append(numpyro.deterministic(name, jnp.asarray(pinned[1], dtype=jnp.float64)))
            continue
        site, to_parameter = UNCONSTRAINED[name]
        if mode == "map":
            prior = dist.ImproperUniform(constraints.real, (), ())
        else:
            kind, args = priors[name]
            prior = dist.TransformedDistribution(PRIOR_FAMILIES[name][kind](*args), to_parameter.inv)
        values.append(numpyro.deterministic(name, to_parameter(numpyro.sample(site, prior))))
    return tuple(values)


def expected_observation(data: ModelData, weights):
    """The model's mean of each condition's observation and its sensitivity to the log-odds:
    (ρ_c(w_M), ρ_c'(w_M)·w_M(1 − w_M)) with two strategies, (w, w(1 − w)) with more."""
    if weights.shape[-1] > 2:
        return weights, weights * (1.0 - weights)
    w = weights[..., 0]
    mean, slope = hermite_with_slope(data.curve_nodes, data.curve_values[data.run],
                                     data.curve_slopes[data.run], w)
    return mean, slope * w * (1.0 - w)


def observation_scale(sigma_obs, sigma_logit, sensitivity):
    """s = √(ε² + σ_obs² + (σ_logit · sensitivity)²), ε = `RESOLUTION`."""
    return jnp.sqrt(RESOLUTION ** 2 + sigma_obs ** 2 + (sigma_logit * sensitivity) ** 2)


def rational_model(data: ModelData, mode: str = "nuts", priors: Mapping[str, Prior] | None = None,
                   variant: str | None = None, objective: Callable[[Any], Any] | None = None):
    """The rational strategy model; see the module docstring for the two modes."""
    priors = default_priors("urns") if priors is None else priors
    params = strategy_parameters(mode, priors, variant)
    _, weights = rational.log_weights(params, data.loss, data.complexity, data.step)
    if mode == "map":
        if objective is None:
            raise BayesiclError("rational_model in map mode needs the objective J(weights)")
        numpyro.factor("objective", -objective(weights))
        return weights
    if mode != "nuts":
        raise BayesiclError(f"unknown model mode {mode!r}; expected 'nuts' or 'map'")
    sigma_obs, sigma_logit = (numpyro.sample(name, PRIOR_FAMILIES[name][priors[name][0]](*priors[name][1]))
                              for name in NOISE_SITES)
    mean, sensitivity = expected_observation(data, weights)
    scale = observation_scale(sigma_obs, sigma_logit, sensitivity)
    with numpyro.plate("condition", weights.shape[0]):
        if weights.shape[-1] > 2:
            numpyro.sample("convex_weights", dist.Normal(mean, scale).to_event(1), obs=data.observed)
        else:
            numpyro.sample("r", dist.Normal(mean, scale), obs=data.observed)
    return weights


def model_weights(params, data: ModelData):
    """w (…, C, S) for parameter draws (…) — the model's forward pass outside NumPyro."""
    alpha, beta, gamma = (jnp.asarray(p)[..., None] for p in rational.unpack(params))
    return rational.log_weights((alpha, beta, gamma), data.loss, data.complexity, data.step)[1]

