"""MAP fit: minimize the paper's objective (docs/model.md#map) over (logit α, log β, log γ).

The objective is the negative log density (NumPyro's potential energy) of
`bayesicl.inference.model.paper_objective_model` — flat priors on the unconstrained parameters plus
the factor −J(W) — whose forward pass is the one the NUTS model uses. An ablation
(`FitData.variant`) is read here, where the model is run, as the parameters it pins
(`bayesicl.rational.ablation`), which `bayesicl.inference.model.pin` holds fixed. Steps:

1. multi-start from the paper's starting point of the family and seeded random starts
   (`stream(seed, "fit")`): each start is first moved to the best point of a coarse
   (log β, log γ) grid at its α (saturated weights have no gradient to follow), then
   L-BFGS-B (SciPy, with JAX float64 value and gradient) minimizes the tabulated surrogate J
   within wide bounds that keep exp/softmax finite; the best start wins;
2. polish the best start by Newton steps on the EXACT token-level objective: each step
   evaluates f_c, ∇f_c, ∇²f_c exactly at the current weights, takes the exact gradient and
   Hessian in (α, β, γ) from the model with the objective replaced by its second-order
   expansion (`taylor_value`), damps the Hessian if it is not positive definite, and
   backtracks on the exact J;
3. report the exact J at the optimum.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from numpyro import handlers
from numpyro.infer.util import potential_energy

from .. import rational
from ..errors import BayesiclError
from ..families import paper_start
from ..seeds import stream
from .data import FitData
from .model import UNCONSTRAINED, free_parameters, paper_objective_model, pin
from .objective import surrogate_value, taylor_value

#: Random starts besides the paper's starting point.
RANDOM_STARTS = 7
#: Box on the unconstrained parameters for the multi-start search (γ's is centred on γ₀).
BOUNDS = {"logit_alpha": (-9.0, 9.0), "log_beta": (math.log(1e-3), math.log(3.0)), "log_gamma": (-12.0, 12.0)}
#: Grid points per unconstrained site of the start profile (see `_profile`); coarser when
#: every evaluation is a pass over the tokens (more than two distributions).
PROFILE_POINTS = {"log_beta": 9, "log_gamma": 33}
COARSE_PROFILE_POINTS = {"log_beta": 3, "log_gamma": 7}
#: Newton polish: iterations, and the relative decrease below which it stops.
NEWTON_ITERATIONS = 30
NEWTON_TOLERANCE = 1e-13


@dataclasses.dataclass(frozen=True)
class MapResult:
    """The optimum: α, β, γ, the unconstrained values, the exact objective and each start."""

    params: dict[str, float]
    unconstrained: dict[str, float]
    objective: float
    surrogate_objective: float
    starts: list[dict[str, Any]]
    newton_iterations: int
    converged: bool
    at_bound: list[str]
    runtime_s: float


def free_sites(pinned: dict[str, float]) -> list[str]:
    """The unconstrained sites of the paper objective that the `pinned` parameters leave
    free, in (α, β, γ) order.

    >>> free_sites({"alpha": 0.0})
    ['log_beta', 'log_gamma']
    """
    return [UNCONSTRAINED[name][0] for name in free_parameters(pinned)]


def to_unconstrained(params: dict[str, float], sites: list[str]) -> np.ndarray:
    """(α, β, γ) → the vector of the free unconstrained sites.

    >>> to_unconstrained({"alpha": 0.5, "beta": 1.0, "gamma": math.e}, ["logit_alpha", "log_gamma"]).tolist()
    [0.0, 1.0]
    """
    out = []
    for site in sites:
        name = next(p for p, (s, _) in UNCONSTRAINED.items() if s == site)
        value = float(params[name])
        out.append(math.log(value / (1 - value)) if site == "logit_alpha" else math.log(value))
    return np.array(out)


def fit_map(data: FitData, family: str, seed: int = 0, starts: list[dict] | None = None,
            random_starts: int = RANDOM_STARTS) -> MapResult:
    """MAP estimate of (α, β, γ) on the fit conditions of `data`.

    `starts` (a list of {"alpha", "beta", "gamma"}) replaces the default starts: the paper's
    starting point of `family` and `random_starts` seeded random points.
    """
    clock = time.perf_counter()
    pinned = tuple(rational.ablation(data.variant).items())       # hashable: keys the compiled code
    sites = free_sites(dict(pinned))
    rows = data.fit_rows
    model_data = data.model_data(rows, observed=False)
    objective = data.objective
    family_start = paper_start(family)
    gamma0 = family_start[2]
    bounds = [BOUNDS[s] if s != "log_gamma" else (math.log(gamma0) + BOUNDS[s][0], math.log(gamma0) + BOUNDS[s][1])
              for s in sites]
    if starts is None:
        starts = [dict(zip(rational.PARAMETERS, family_start))]
        starts += _random_starts(seed, random_starts, gamma0)
    jitted = _potential(tuple(sites), pinned, objective.mode)
    potential = lambda u: jitted(jnp.asarray(u), model_data, objective.tables)  # noqa: E731
    batch = _energies(tuple(sites), pinned, objective.mode)
    energies = lambda points: batch(jnp.asarray(points), model_data, objective.tables)  # noqa: E731

    reference = float(potential(to_unconstrained(starts[0], sites))[0])
    scale = reference if np.isfinite(reference) and reference > 0 else 1.0
    results = []
    for start in starts:
        x0 = np.clip(to_unconstrained(start, sites), [b[0] for b in bounds], [b[1] for b in bounds])
        x0 = _profile(energies, x0, sites, bounds,
                      COARSE_PROFILE_POINTS if objective.mode == "tokens" else PROFILE_POINTS)
        results.append(_optimize(potential, x0, bounds, scale))
    finite = [r for r in results if np.isfinite(r["objective"])]
    if not finite:
        raise BayesiclError("MAP: the objective is not finite at any starting point")
    best = min(finite, key=lambda r: r["objective"])
    u, exact, iterations, converged = _newton_polish(best["x"], model_data, sites, pinned, objective)
    unconstrained = dict(zip(sites, map(float, u)))
    params = _params_from(unconstrained, dict(pinned))
    at_bound = [s for s, value, (lo, hi) in zip(sites, u, bounds) if value <= lo + 1e-6 or value >= hi - 1e-6]
    table = [{"start": {k: float(v) for k, v in start.items()},
              "params": _params_from(dict(zip(sites, map(float, r["x"]))), dict(pinned)),
              "surrogate_objective": r["objective"], "success": r["success"]}
             for start, r in zip(starts, results)]
    return MapResult(params=params, unconstrained=unconstrained, objective=exact,
                     surrogate_objective=best["objective"], starts=table,
                     newton_iterations=iterations, converged=converged, at_bound=at_bound,
                     runtime_s=time.perf_counter() - clock)


def _random_starts(seed: int, count: int, gamma0: float) -> list[dict[str, float]]:
    rng = stream((seed, 0), "fit")
    return [{"alpha": float(rng.uniform(0.1, 0.95)),
             "beta": float(math.exp(rng.uniform(math.log(0.05), math.log(1.0)))),
             "gamma": float(gamma0 * math.exp(rng.uniform(math.log(1e-2), math.log(1e2))))}
            for _ in range(count)]


def _params_from(unconstrained: dict[str, float], pinned: dict[str, float]) -> dict[str, float]:
    values = {name: float(value) for name, value in pinned.items()}
    for name in rational.PARAMETERS:
        site, transform = UNCONSTRAINED[name]
        if site in unconstrained:
            values[name] = float(transform(jnp.asarray(unconstrained[site])))
    return {name: values[name] for name in rational.PARAMETERS}


@functools.lru_cache(maxsize=None)
def _potential(sites: tuple[str, ...], pinned: tuple, mode: str):
    """value_and_grad of the map-mode potential energy on the surrogate tables (jitted once
    per configuration; the data and tables are arguments, so new data of the same shapes
    reuse the compiled code)."""
    def energy(u, model_data, tables):
        params = {site: u[i] for i, site in enumerate(sites)}
        kwargs = {"objective": functools.partial(surrogate_value, mode, tables)}
        return potential_energy(pin(paper_objective_model, dict(pinned)), (model_data,), kwargs, params)

    return jax.jit(jax.value_and_grad(energy))


@functools.lru_cache(maxsize=None)
def _energies(sites: tuple[str, ...], pinned: tuple, mode: str):
    """The map-mode potential energy at a batch of points (P, len(sites)) (jitted, vmapped)."""
    def energy(u, model_data, tables):
        params = {site: u[i] for i, site in enumerate(sites)}
        kwargs = {"objective": functools.partial(surrogate_value, mode, tables)}
        return potential_energy(pin(paper_objective_model, dict(pinned)), (model_data,), kwargs, params)

    return jax.jit(jax.vmap(energy, in_axes=(0, None, None)))


@functools.lru_cache(maxsize=None)
def _weights_function(sites: tuple[str, ...], pinned: tuple):
    """u → the model's weights W (C, S) for the fit conditions (the model's own forward pass)."""
    def weights(u, model_data):
        params = {site: u[i] for i, site in enumerate(sites)}
        model = handlers.substitute(handlers.seed(pin(paper_objective_model, dict(pinned)), 0), data=params)
        return model(model_data, objective=lambda w: 0.0)

    return jax.jit(weights)


@functools.lru_cache(maxsize=None)
def _newton_derivatives(sites: tuple[str, ...], pinned: tuple):
    """(gradient, Hessian) in u of the model with the objective replaced by its second-order
    expansion around the current weights: the exact derivatives of J there."""
    def taylor_energy(u, model_data, expansion):
        params = {site: u[i] for i, site in enumerate(sites)}
        kwargs = {"objective": functools.partial(taylor_value, *expansion)}
        return potential_energy(pin(paper_objective_model, dict(pinned)), (model_data,), kwargs, params)

    return jax.jit(lambda u, d, e: (jax.grad(taylor_energy)(u, d, e), jax.hessian(taylor_energy)(u, d, e)))


def _profile(energies, x0, sites, bounds, points=PROFILE_POINTS) -> np.ndarray:
    """Move a start to the best point of a (log β, log γ) grid at its α.

    A start whose weights are all saturated (0 or 1 at every fit condition) has no gradient
    to follow; the scale of β and γ decides where the transitions fall, and a coarse grid
    over them finds the band where the weights move. The start itself is kept if better.
    """
    axes = [(k, np.linspace(bounds[k][0], bounds[k][1], points[site]))
            for k, site in enumerate(sites) if site in points]
    if not axes:
        return x0
    points = np.repeat(x0[None, :], 1 + math.prod(len(grid) for _, grid in axes), axis=0)
    for row, values in enumerate(itertools.product(*(grid for _, grid in axes)), start=1):
        for (k, _), value in zip(axes, values):
            points[row, k] = value
    values = np.asarray(energies(points))
    values = np.where(np.isfinite(values), values, np.inf)
    return points[int(np.argmin(values))] if np.isfinite(values).any() else x0


def _optimize(potential, x0, bounds, scale) -> dict[str, Any]:
    def value_and_grad(x):
        value, grad = potential(x)
        value, grad = float(value) / scale, np.asarray(grad, dtype=np.float64) / scale
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(x)
        return value, grad

    try:
        found = scipy.optimize.minimize(value_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-11})
    except (ValueError, FloatingPointError):
        return {"x": x0, "objective": math.inf, "success": False}
    return {"x": np.asarray(found.x), "objective": float(found.fun) * scale, "success": bool(found.success)}


def _newton_polish(u0, model_data, sites, pinned, objective):
    """Newton steps on the exact objective from u0; returns (u, exact J, iterations, converged)."""
    derivatives = _newton_derivatives(tuple(sites), pinned)
    weights_of = _weights_function(tuple(sites), pinned)

    def exact_at(u):
        w = np.asarray(weights_of(jnp.asarray(u), model_data))
        f, g, h = objective.exact_terms(w)
        return float(np.mean(f)), (jnp.asarray(f), jnp.asarray(g), jnp.asarray(h), jnp.asarray(w))

    u = np.asarray(u0, dtype=np.float64)
    value, expansion = exact_at(u)
    converged = False
    iterations = 0
    for iterations in range(1, NEWTON_ITERATIONS + 1):
        grad, hess = (np.asarray(a) for a in derivatives(jnp.asarray(u), model_data, expansion))
        eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (hess + hess.T))
        floor = 1e-10 * max(np.abs(eigenvalues).max(), 1e-300)
        step = -eigenvectors @ ((eigenvectors.T @ grad) / np.maximum(np.abs(eigenvalues), floor))
        predicted = -(grad @ step)                       # first-order decrease along the step
        if not np.isfinite(predicted) or predicted <= NEWTON_TOLERANCE * max(value, 1e-300):
            converged = True
            break
        size = 1.0
        accepted = False
        for _ in range(40):
            trial = u + size * step
            trial_value, trial_expansion = exact_at(trial)
            if np.isfinite(trial_value) and trial_value <= value - 1e-4 * size * predicted:
                accepted = True
                break
            size *= 0.5
        if not accepted:
            converged = predicted <= 1e-8 * max(value, 1e-300)   # no descent left at float64 precision
            break
        decrease = value - trial_value
        u, value, expansion = trial, trial_value, trial_expansion
        if decrease <= NEWTON_TOLERANCE * max(value, 1e-300):
            converged = True
            break
    return u, value, iterations, converged
