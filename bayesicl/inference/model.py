"""The rational strategy model as two NumPyro models that share one forward pass.

Forward pass (`strategy_weights`): the unconstrained parameters give α, β, γ, and every
condition's strategy weights are w_c = softmax η(N_c, D_c) (`bayesicl.rational.log_weights`),
optionally with a log-odds offset added to the memorizing strategy's η.

- `paper_objective_model`: flat (improper) priors on logit α, log β, log γ and the paper's
  objective as a factor, −J(W_fit). Its maximum is the minimum of the paper's objective,
  reached by `bayesicl.inference.map` through NumPyro's potential energy. No noise, no run effects.
- `nuts_model`: priors (`default_priors`) and a likelihood of each fit condition's
  observation. γ is sampled at a reference step: γ̃ = γ · N_ref^(1−α), N_ref the geometric
  mean of the modeled fit steps (log γ̃ is nearly uncorrelated with logit α, while log γ and
  logit α lie on a ridge, correlation 0.99 on the demo); α, β, γ are recorded as before.

  Observation. Two strategies: the unclipped observed relative distance
  r_c ~ Normal(ρ_c(w_M,c), s_c), ρ_c(w) the r the mixture w·M + (1 − w)·G itself would show on
  the run's inputs (`bayesicl.inference.observation`). More strategies: each observed convex weight
  ~ Normal(w_s,c, s_c,s). The scale is s_c² = ε² + σ_obs² + (σ_logit · ∂ρ_c/∂z)², with
  ∂ρ_c/∂z = ρ_c'(w)·w(1 − w) the first-order effect of a log-odds deviation of sd σ_logit and
  ε = `RESOLUTION` the resolution of r.

  Effects (`EFFECTS`): the residuals of real runs are not independent — each run (one
  diversity × seed) carries its own offset in log-odds and its checkpoints drift together.
  - "none": independent observations (the scale above, nothing else);
  - "run": a per-run log-odds offset u_k ~ Normal(0, σ_run) added to η_M of every condition
    of run k (centred by default, see `RUN_PARAMETERIZATION`: each run has many checkpoints,
    its effect is pinned by its own data, and the non-centred form then couples σ_run and
    z_k along a curved ridge — divergences on the calibration runs);
  - "run+trend" (default with two strategies): the run offset, and the log-odds deviation of
    sd σ_logit is correlated along the run's checkpoints as an AR(1) process in checkpoint
    order, corr = φ^|i − j| (φ = `trend_corr`, the lag-1 correlation). The deviation enters
    the observation to first order (as σ_logit always did), so it is marginalized exactly:
    each run's observations are one multivariate normal with covariance
    diag(ε² + σ_obs²) + σ_logit² · (s_i s_j φ^|i−j|), s = ∂ρ/∂z.

Neither model knows about ablations. An ablation pins parameters (α = 0, β = 1, γ = 1;
`bayesicl.rational.ablation`) by wrapping a model in NumPyro handlers where it is run
(`pin`); "constant_complexity" changes the data (K_s(D) := K_s(D_min)) and not the model.

>>> import jax
>>> from numpyro.infer import Predictive
>>> data = ModelData(loss=jnp.array([[0.1, 0.2]]), complexity=jnp.array([[900.0, 100.0]]),
...                  step=jnp.array([1000.0]), run=jnp.array([0]), observed=None,
...                  curve_nodes=jnp.array([0.0, 1.0]), curve_values=jnp.array([[-1.0, 1.0]]),
...                  curve_slopes=jnp.array([[2.0, 2.0]]), effect_run=jnp.array([0]),
...                  run_rows=jnp.array([[0]]), run_mask=jnp.array([[True]]),
...                  run_position=jnp.array([[0.0]]), reference_step=jnp.array(1000.0))
>>> priors = default_priors("urns", reference_step=1000.0)
>>> draws = Predictive(nuts_model, num_samples=3)(jax.random.PRNGKey(0), data, priors, effects="run")
>>> sorted(draws)
['alpha', 'beta', 'gamma', 'log_beta', 'log_gamma_ref', 'logit_alpha', 'r', 'run_effect', 'sigma_logit', 'sigma_obs', 'sigma_run']
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints, transforms

from .. import rational
from ..errors import BayesiclError
from ..families import paper_start
from .objective import hermite_with_slope

#: Unconstrained site of each parameter of the paper objective and the map to the parameter.
UNCONSTRAINED = {"alpha": ("logit_alpha", transforms.SigmoidTransform()),
                 "beta": ("log_beta", transforms.ExpTransform()),
                 "gamma": ("log_gamma", transforms.ExpTransform())}
#: The sampler's unconstrained sites (γ at the reference step instead of γ).
SAMPLED = {"alpha": "logit_alpha", "beta": "log_beta", "gamma": "log_gamma_ref"}
#: The sample sites each parameter is computed from, in either model: what pinning it removes.
FEEDS = {name: tuple(dict.fromkeys((UNCONSTRAINED[name][0], SAMPLED[name]))) for name in UNCONSTRAINED}
#: Prior families accepted per parameter (support (0, 1) for α and φ, (0, ∞) for the others).
POSITIVE = {"LogNormal": dist.LogNormal, "HalfNormal": dist.HalfNormal, "Gamma": dist.Gamma,
            "Exponential": dist.Exponential, "HalfCauchy": dist.HalfCauchy}
PRIOR_FAMILIES = {"alpha": {"Beta": dist.Beta}, "beta": POSITIVE, "gamma_ref": POSITIVE,
                  "sigma_obs": POSITIVE, "sigma_logit": POSITIVE, "sigma_run": POSITIVE,
                  "trend_corr": {"Beta": dist.Beta}}
#: The observation-noise scales of the likelihood.
NOISE_SITES = ("sigma_obs", "sigma_logit")
#: Run-level effects the sampler can model (see the module docstring).
EFFECTS = ("none", "run", "run+trend")
#: The resolution ε of an observed r: outputs are stored as float16 (relative error ~5e-4),
#: which moves r by ~1e-3; below this the likelihood must not pretend to be sharper.
RESOLUTION = 1e-3

Prior = tuple[str, tuple[float, ...]]


def default_effects(num_strategies: int) -> str:
    """The effects the sampler uses unless told: "run+trend" with two strategies (the
    calibrated default, see tests/test_calibration.py), "run" with more (the trend is
    modelled on the relative distance of two strategies only).

    >>> default_effects(2), default_effects(3)
    ('run+trend', 'run')
    """
    return "run+trend" if num_strategies == 2 else "run"


def check_effects(effects: str | None, num_strategies: int = 2) -> str:
    """The effects setting, validated (None → `default_effects`).

    >>> check_effects("run")
    'run'
    """
    if effects is None:
        return default_effects(num_strategies)
    if effects not in EFFECTS:
        raise BayesiclError(f"unknown effects {effects!r}; expected one of {', '.join(EFFECTS)}")
    if effects == "run+trend" and num_strategies > 2:
        raise BayesiclError("effects 'run+trend' needs two strategies (the trend is on their relative "
                            "distance); use effects='run' with more strategies")
    return effects


def default_priors(family: str, reference_step: float = 1000.0) -> dict[str, Prior]:
    """Weakly informative priors centred on the paper's values for the family.

    α ~ Beta(2, 2) (any sub-linear rate, away from the degenerate ends); β ~ LogNormal(log β₀,
    0.5) (β₀ · [0.37, 2.7] at 2 sd: K is thousands to 10⁵ bits, so β moves the log prior odds
    K^β by orders of magnitude — a prior predictive check on the demo runs found sd 1 leaving
    every fit condition saturated (w_M < 0.01 or > 0.99) in 24% of prior draws, sd 0.5 in 6%);
    γ̃ = γ N_ref^(1−α), the evidence multiplier at the reference step,
    ~ LogNormal(log(γ₀ N_ref^(1−α₀)), 1.5): centred where the paper's (α₀, γ₀) put it, a
    factor 20 either way at 2 sd (γ's scale depends on the loss units); σ_obs ~ HalfNormal(0.5)
    (r lives on [−1, 1]); σ_logit ~ HalfNormal(1) (log-odds deviations of a few tenths);
    σ_run ~ HalfNormal(1.5) (run offsets of up to ~3 in log-odds are plausible on real runs);
    φ ~ Beta(2, 2) (the lag-1 correlation of the within-run deviation).

    >>> default_priors("urns")["beta"]
    ('LogNormal', (-1.6094379124341003, 0.5))
    """
    alpha0, beta0, gamma0 = paper_start(family)
    center = math.log(gamma0) + (1.0 - alpha0) * math.log(float(reference_step))
    return {"alpha": ("Beta", (2.0, 2.0)), "beta": ("LogNormal", (math.log(beta0), 0.5)),
            "gamma_ref": ("LogNormal", (center, 1.5)), "sigma_obs": ("HalfNormal", (0.5,)),
            "sigma_logit": ("HalfNormal", (1.0,)), "sigma_run": ("HalfNormal", (1.5,)),
            "trend_corr": ("Beta", (2.0, 2.0))}


def resolve_priors(family: str, overrides: Mapping[str, Any] | None = None,
                   reference_step: float = 1000.0) -> dict[str, Prior]:
    """The family's default priors (at `reference_step`) with `overrides` applied.

    An override is "Beta(2,2)" or ("Beta", (2, 2)), keyed by a name of `PRIOR_FAMILIES`.

    >>> resolve_priors("urns", {"alpha": "Beta(5, 2)"})["alpha"]
    ('Beta', (5.0, 2.0))
    """
    priors = default_priors(family, reference_step)
    for name, spec in (overrides or {}).items():
        if name == "gamma":
            raise BayesiclError("the sampler's prior is on gamma_ref = gamma * N_ref^(1-alpha) (gamma at the "
                                "reference step N_ref, the geometric mean of the fit steps); override gamma_ref")
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


def prior_distribution(priors: Mapping[str, Prior], name: str):
    """The NumPyro distribution of a prior entry."""
    kind, args = priors[name]
    return PRIOR_FAMILIES[name][kind](*args)


class ModelData(NamedTuple):
    """The conditions the model explains, as arrays (C conditions, S strategies).

    loss, complexity (C, S): L̄_s(D_c), K_s(D_c); step (C,): N_c; run (C,): each condition's
    run (row of the ρ tables); observed: (C,) unclipped r (two strategies), (C, S) convex
    weights (more), or None (map mode, or to simulate); curve_*: the ρ tables of one split
    (nodes (K,), values and slopes (R, K)) of `bayesicl.inference.observation`. Run effects:
    effect_run (C,) the index of each condition's run among the fitted runs (0 … R_fit − 1);
    run_rows, run_mask, run_position (R_fit, T): each fitted run's conditions (padded),
    which are real, and their positions in the run's checkpoint order; reference_step: N_ref.
    """

    loss: Any
    complexity: Any
    step: Any
    run: Any
    observed: Any
    curve_nodes: Any
    curve_values: Any
    curve_slopes: Any
    effect_run: Any = None
    run_rows: Any = None
    run_mask: Any = None
    run_position: Any = None
    reference_step: Any = 1.0


# -- the shared forward pass ----------------------------------------------------------------------

def strategy_weights(params, data: ModelData, offset=None):
    """w (…, C, S) for parameters (α, β, γ) broadcasting against (…, 1): the model's forward
    pass, with an optional log-odds `offset` (…, C) added to η_M."""
    eta, weights = rational.log_weights(params, data.loss, data.complexity, data.step)
    if offset is None:
        return weights
    return jax.nn.softmax(eta.at[..., 0].add(offset), axis=-1)


def model_weights(params, data: ModelData):
    """w (…, C, S) for parameter draws (…) — the model's forward pass outside NumPyro."""
    alpha, beta, gamma = (jnp.asarray(p)[..., None] for p in rational.unpack(params))
    return strategy_weights((alpha, beta, gamma), data)


def expected_observation(data: ModelData, weights):
    """The model's mean of each condition's observation and its sensitivity to the log-odds:
    (ρ_c(w_M), ρ_c'(w_M)·w_M(1 − w_M)) with two strategies, (w, w(1 − w)) with more."""
    if weights.shape[-1] > 2:
        return weights, weights * (1.0 - weights)
    w = weights[..., 0]
    mean, slope = hermite_with_slope(data.curve_nodes, data.curve_values, data.curve_slopes, w, rows=data.run)
    return mean, slope * w * (1.0 - w)


def observation_scale(sigma_obs, sigma_logit, sensitivity):
    """s = √(ε² + σ_obs² + (σ_logit · sensitivity)²), ε = `RESOLUTION`."""
    return jnp.sqrt(RESOLUTION ** 2 + sigma_obs ** 2 + (sigma_logit * sensitivity) ** 2)


# -- the paper's objective ------------------------------------------------------------------------

def paper_parameters():
    """α, β, γ from flat (improper) priors on logit α, log β, log γ."""
    values = []
    for name in rational.PARAMETERS:
        site, to_parameter = UNCONSTRAINED[name]
        value = numpyro.sample(site, dist.ImproperUniform(constraints.real, (), ()))
        values.append(numpyro.deterministic(name, to_parameter(value)))
    return tuple(values)


def paper_objective_model(data: ModelData, objective: Callable[[Any], Any]):
    """The paper's fit as a log density: −J(W) under flat priors; returns the weights."""
    weights = strategy_weights(paper_parameters(), data)
    numpyro.factor("objective", -objective(weights))
    return weights


# -- the Bayesian model ---------------------------------------------------------------------------

def sampled_parameters(priors: Mapping[str, Prior], reference_step):
    """α, β, γ with priors on logit α, log β and log γ̃ (γ̃ = γ N_ref^(1−α))."""

    def draw(name, to_parameter, prior_name):
        prior = dist.TransformedDistribution(prior_distribution(priors, prior_name), to_parameter.inv)
        return to_parameter(numpyro.sample(SAMPLED[name], prior))

    alpha = numpyro.deterministic("alpha", draw("alpha", transforms.SigmoidTransform(), "alpha"))
    beta = numpyro.deterministic("beta", draw("beta", transforms.ExpTransform(), "beta"))
    gamma_ref = draw("gamma", transforms.ExpTransform(), "gamma_ref")
    gamma = numpyro.deterministic("gamma", gamma_ref * jnp.power(reference_step, alpha - 1.0))
    return alpha, beta, gamma


def nuts_model(data: ModelData, priors: Mapping[str, Prior], effects: str = "run+trend"):
    """The Bayesian rational strategy model; see the module docstring. Returns the weights."""
    params = sampled_parameters(priors, data.reference_step)
    sigma_obs, sigma_logit = (numpyro.sample(name, prior_distribution(priors, name)) for name in NOISE_SITES)
    offset = None
    if effects != "none":
        offset = run_effects(priors, data.run_rows.shape[0])[data.effect_run]
    weights = strategy_weights(params, data, offset)
    corr = None
    if effects == "run+trend":
        corr = numpyro.sample("trend_corr", prior_distribution(priors, "trend_corr"))
    observation_likelihood(data, weights, sigma_obs, sigma_logit, corr)
    return weights


# -- ablations ------------------------------------------------------------------------------------

def pin(model: Callable, pinned: Mapping[str, float]) -> Callable:
    """`model` with the parameters in `pinned` ({"alpha": 0.0} …) held at their values: the
    ablations of `bayesicl.rational.ablation`, as NumPyro handlers.

    `substitute` sets each pinned deterministic site (α, β or γ), so everything downstream
    (the weights; γ from γ̃ and α) sees the pinned value; the sample sites the parameter was
    computed from (`FEEDS`) get a placeholder value and are hidden by `block`, so they leave
    the joint density and the sampler's coordinates — the model's density is that of a model
    with the parameter a constant. An empty `pinned` returns `model` itself.

    >>> free = {"logit_alpha": 0.0, "log_gamma": 0.0}
    >>> trace = handlers.trace(handlers.substitute(pin(paper_parameters, {"beta": 1.0}), free)).get_trace()
    >>> [name for name, site in trace.items() if site["type"] == "sample"], float(trace["beta"]["value"])
    (['logit_alpha', 'log_gamma'], 1.0)
    """
    if not pinned:
        return model
    unknown = sorted(set(pinned) - set(FEEDS))
    if unknown:
        raise BayesiclError(f"cannot pin {unknown}; the pinnable parameters are {list(FEEDS)}")
    hidden = [site for name in pinned for site in FEEDS[name]]
    values = {name: jnp.asarray(value, dtype=jnp.float64) for name, value in pinned.items()}
    placeholders = {site: jnp.zeros((), dtype=jnp.float64) for site in hidden}
    return handlers.block(handlers.substitute(model, data={**values, **placeholders}), hide=hidden)


def free_parameters(pinned: Mapping[str, float]) -> list[str]:
    """The parameters (α, β, γ order) that `pinned` leaves free.

    >>> free_parameters({"alpha": 0.0})
    ['beta', 'gamma']
    """
    return [name for name in rational.PARAMETERS if name not in pinned]


def observation_likelihood(data: ModelData, weights, sigma_obs, sigma_logit, corr=None,
                           trend_start: str = "stationary") -> None:
    """The likelihood of the conditions' observations given their weights (C, S), shared by
    `nuts_model` and the OOD stage (`bayesicl.inference.cut`).

    Without a trend (`corr` None): independent observations, r_c ~ Normal(ρ_c(w_M), s_c) (two
    strategies, site "r") or the convex weights ~ Normal(w, s) (more, site "convex_weights"),
    s from `observation_scale`. With the trend's lag-1 correlation `corr` (two strategies):
    each run's observations jointly, `run_log_density` (factor "r_runs"). Nothing is added
    when ``data.observed`` is None and the trend is on (a factor cannot be simulated)."""
    mean, sensitivity = expected_observation(data, weights)
    if corr is not None:
        if data.observed is not None:
            numpyro.factor("r_runs", run_log_density(data, mean, sensitivity, sigma_obs, sigma_logit, corr,
                                                     trend_start=trend_start))
        return
    scale = observation_scale(sigma_obs, sigma_logit, sensitivity)
    with numpyro.plate("condition", weights.shape[0]):
        if weights.shape[-1] > 2:
            numpyro.sample("convex_weights", dist.Normal(mean, scale).to_event(1), obs=data.observed)
        else:
            numpyro.sample("r", dist.Normal(mean, scale), obs=data.observed)


#: Parameterization of the run effects: "centred" samples u_k ~ Normal(0, σ_run) directly,
#: "non-centred" samples z_k ~ Normal(0, 1) and sets u_k = σ_run z_k.
RUN_PARAMETERIZATION = "centred"


def run_effects(priors: Mapping[str, Prior], count: int, parameterization: str | None = None):
    """σ_run and the run effects u (count,) as sample sites ("sigma_run", "run_effect")."""
    sigma_run = numpyro.sample("sigma_run", prior_distribution(priors, "sigma_run"))
    if (parameterization or RUN_PARAMETERIZATION) == "centred":
        return numpyro.sample("run_effect", dist.Normal(0.0, sigma_run).expand([count]).to_event(1))
    z = numpyro.sample("run_z", dist.Normal(0.0, 1.0).expand([count]).to_event(1))
    return numpyro.deterministic("run_effect", sigma_run * z)


def run_log_density(data: ModelData, mean, sensitivity, sigma_obs, sigma_logit, corr, observed=None,
                    trend_start: str = "stationary"):
    """Σ over runs of `run_log_densities`."""
    return jnp.sum(run_log_densities(data, mean, sensitivity, sigma_obs, sigma_logit, corr, observed, trend_start))


#: Where a run's AR(1) deviation starts: "stationary" (the single-configuration model: its
#: marginal sd is σ_logit at every checkpoint) or "zero" (the population model: x = 0 one
#: checkpoint before the run's first, so x_p has variance 1 − φ^(2(p+1)) and a run's level
#: is its run effect's alone; docs/model.md#population-model).
TREND_STARTS = ("stationary", "zero")

#: Checkpoints per iteration of the Kalman filter's loop in `run_log_densities` (fully
#: unrolled, the sampler's program took minutes to compile; 4 compiles in seconds and runs
#: faster than 1).
FILTER_UNROLL = 4


def run_log_densities(data: ModelData, mean, sensitivity, sigma_obs, sigma_logit, corr, observed=None,
                      trend_start: str = "stationary"):
    """log MVN(r_run; mean_run, Σ_run) per run (R,), Σ = diag(ε² + σ_obs²) +
    σ_logit² s_i s_j φ^|i−j| over each run's real conditions (padding excluded); corr = 0
    gives independent observations. σ_obs and σ_logit are scalars or one per condition (C,).

    Computed exactly by a Kalman filter along each run's checkpoints rather than a Cholesky
    factor of Σ: the deviation is a unit-variance AR(1) state x (lag-1 correlation φ per
    checkpoint), observed as r_i − mean_i = σ_logit s_i x_i + e_i, e_i ~ Normal(0, ε² + σ_obs²);
    x starts stationary or at zero (`trend_start`, `TREND_STARTS`).
    The filter is plain arithmetic (a scan over checkpoints, `FILTER_UNROLL` steps per loop
    iteration; on the urns demo's 9 runs × 26 checkpoints its value and gradient took 150 µs
    against 450 µs for the Cholesky form): no LAPACK call, whose
    batched CPU kernels re-enter XLA's thread pool and could deadlock the sampler when two
    ran at once on a 2-core machine (docs/decisions.md "No LAPACK in the likelihood")."""
    if trend_start not in TREND_STARTS:
        raise BayesiclError(f"unknown trend start {trend_start!r}; expected one of {', '.join(TREND_STARTS)}")
    observed = data.observed if observed is None else observed
    rows, mask = data.run_rows, data.run_mask
    residual = jnp.where(mask, (observed - mean)[rows], 0.0)
    # The noise scales are scalars, or per condition (C,) (the population model's per-configuration
    # scales; the scalar form is kept as it was, so single fits compute exactly what they did).
    per_condition = jnp.ndim(sigma_obs) > 0 or jnp.ndim(sigma_logit) > 0
    if per_condition:
        gain = jnp.where(mask, (sigma_logit * sensitivity)[rows], 0.0)
        noises = RESOLUTION ** 2 + jnp.broadcast_to(sigma_obs, jnp.shape(mean)[:1])[rows] ** 2
    else:
        gain = sigma_logit * jnp.where(mask, sensitivity[rows], 0.0)
    noise_scalar = RESOLUTION ** 2 + sigma_obs ** 2
    position = data.run_position
    count = mask.sum(axis=-1)

    def step(carry, column):
        state, variance, last, started, total = carry
        r, h, real, where, *per = column
        noise = per[0] if per_condition else noise_scalar
        decay = jnp.where(started, corr ** jnp.abs(where - last), 0.0)
        state, variance = decay * state, decay ** 2 * variance + (1.0 - decay ** 2)
        innovation_variance = h ** 2 * variance + noise
        innovation = r - h * state
        gain_k = variance * h / innovation_variance
        logp = -0.5 * (jnp.log(innovation_variance) + innovation ** 2 / innovation_variance)
        carry = (jnp.where(real, state + gain_k * innovation, state),
                 jnp.where(real, variance * (1.0 - gain_k * h), variance),
                 jnp.where(real, where, last), started | real, total + jnp.where(real, logp, 0.0))
        return carry, None

    zeros = jnp.zeros(rows.shape[0], dtype=residual.dtype)
    if trend_start == "zero":       # x = 0 one checkpoint before the first: x_p has variance 1 − φ^(2(p+1))
        start = (zeros, zeros, zeros - 1.0, jnp.ones(rows.shape[0], dtype=bool), zeros)
    else:                           # stationary from the first real checkpoint on
        start = (zeros, jnp.ones_like(zeros), zeros, jnp.zeros(rows.shape[0], dtype=bool), zeros)
    columns = (residual.T, gain.T, mask.T, jnp.asarray(position, dtype=residual.dtype).T)
    columns += (noises.T,) if per_condition else ()
    (_, _, _, _, total), _ = jax.lax.scan(step, start, columns, unroll=FILTER_UNROLL)
    return total - 0.5 * count * math.log(2 * math.pi)


def sampler_coordinates(draws: Mapping[str, Any], reference_step: float) -> dict[str, Any]:
    """(α, β, γ) draws in the sampler's coordinates: logit α, log β, log γ̃ (γ̃ = γ N_ref^(1−α)).

    >>> {k: round(float(v), 4) for k, v in sampler_coordinates({"alpha": 0.5, "beta": 1.0, "gamma": 2.0}, 4.0).items()}
    {'alpha': 0.0, 'beta': 0.0, 'gamma': 1.3863}
    """
    alpha = jnp.asarray(draws["alpha"], dtype=jnp.float64)
    return {"alpha": jnp.log(alpha) - jnp.log1p(-alpha), "beta": jnp.log(jnp.asarray(draws["beta"])),
            "gamma": jnp.log(jnp.asarray(draws["gamma"])) + (1.0 - alpha) * math.log(reference_step)}


def prior_sd(priors: Mapping[str, Prior], draws: int = 20000) -> dict[str, float]:
    """Prior sd of logit α, log β and log γ̃ (seeded Monte Carlo, 2e4 draws: ~0.5% error).

    >>> round(prior_sd({"alpha": ("Beta", (2.0, 2.0)), "beta": ("LogNormal", (0.0, 1.0)),
    ...                 "gamma_ref": ("LogNormal", (0.0, 2.0))})["gamma"], 1)
    2.0
    """
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    alpha = prior_distribution(priors, "alpha").sample(keys[0], (draws,))
    beta = prior_distribution(priors, "beta").sample(keys[1], (draws,))
    gamma_ref = prior_distribution(priors, "gamma_ref").sample(keys[2], (draws,))
    values = {"alpha": jnp.log(alpha) - jnp.log1p(-alpha), "beta": jnp.log(beta), "gamma": jnp.log(gamma_ref)}
    return {k: float(jnp.std(v)) for k, v in values.items()}
