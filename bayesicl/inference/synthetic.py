"""Synthetic evidence with a known answer: a "transformer" that IS a mixture of real strategies.

For each diversity D the real strategies (`bayesicl.strategies`) run on the run's own ID and
OOD evaluation inputs (`task.eval_sets(task.pool(D, seed), seed)`); L̄_s(D) and K_s(D) come
from `bayesicl.evidence.terms.strategy_terms` on the same pools. At each step N the synthetic
transformer outputs h = Σ_s w_s · s (log of the mixture of probabilities, or the weighted
average of predictions) with weights given by the caller — a known (α, β, γ) through the
rational model, or any function of the terms (noise and misfit included). Recovering the
weights' parameters from this evidence is the fit's end-to-end check (tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .. import observe, rational
from ..errors import BayesiclError
from ..evidence import evidence_from_arrays
from ..evidence.terms import make_strategy, strategy_terms
from ..families import family_spec
from ..seeds import stream
from ..tasks import from_settings

Weights = Callable[[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray], np.ndarray]


def strategy_outputs(task, strategies: Sequence[str], diversities: Sequence[int], num_sequences: int,
                     seed: int = 0) -> tuple[np.ndarray, dict]:
    """The strategies' outputs on each run's (ID, OOD) inputs: (R, S, 2, B, P, O) and the pools.

    Log-probabilities floored at 1e-30 (distributions) or predictions with O = 1.
    """
    kind = family_spec(task).output_kind
    pools, outputs = {}, []
    for diversity in diversities:
        pool = task.pool(int(diversity), seed=seed)
        pools[(int(diversity), seed)] = pool
        inputs = task.eval_sets(pool, seed=seed, num_sequences=num_sequences)
        per_strategy = []
        for name in strategies:
            strategy = make_strategy(task, name, pool)
            per_split = []
            for split in ("id", "ood"):
                values = np.asarray(strategy(inputs[split]), dtype=np.float64)
                if kind == "predictions":
                    values = values[..., None]
                else:
                    values = observe.log_probs(values[:, None] if values.ndim == 2 else values)
                per_split.append(values)
            per_strategy.append(np.stack(per_split))
        outputs.append(np.stack(per_strategy))
    return np.stack(outputs), pools


def synthetic_evidence(task, diversities: Sequence[int], steps: Sequence[int], *, params=None,
                       weights: Weights | None = None, strategies=("memorizing", "generalizing"),
                       num_sequences: int = 32, loss_sequences: int = 512, seed: int = 0,
                       outputs: tuple[np.ndarray, dict] | None = None,
                       terms: tuple[pd.DataFrame, pd.DataFrame] | None = None, cutoff="all",
                       output_dtype: str = "float32"):
    """Evidence whose transformer outputs are Σ_s w_s s at every (D, N) of the grid.

    Give `params` = (α, β, γ) (weights from `bayesicl.rational.log_weights`) or `weights`, a
    function (loss, complexity, diversity (C,), step (C,)) → M-weights (C,) with two
    strategies, convex weights (C, S) with more. Conditions are ordered diversity-major.
    `outputs` reuses `strategy_outputs(...)` and `terms` reuses (L̄, K) from
    `synthetic_terms(...)` computed earlier (neither depends on the weights).
    `output_dtype` is the storage precision of the transformer outputs, as a run's
    ``output_dtype`` (docs/run-format.md): "float16" rounds them as a logged run does, so
    a weight of exactly 0 or 1 is observed to within the float16 resolution, as on real runs.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [4, 16], [100, 1000], params=(0.5, 0.3, 1.0),
    ...                         num_sequences=8, loss_sequences=64)
    >>> ev.conditions[["diversity", "step"]].values.tolist()
    [[4, 100], [4, 1000], [16, 100], [16, 1000]]
    """

    if (params is None) == (weights is None):
        raise BayesiclError("synthetic_evidence: give either params (alpha, beta, gamma) or weights")
    strategies = tuple(strategies)
    diversities = [int(d) for d in diversities]
    steps = np.asarray(steps, dtype=np.int64)
    per_run, pools = outputs if outputs is not None else strategy_outputs(
        task, strategies, diversities, num_sequences, seed)
    loss, complexity = terms if terms is not None else synthetic_terms(task, strategies, pools, loss_sequences)
    diversity = np.repeat(diversities, steps.size)
    step = np.tile(steps, len(diversities))
    if params is not None:
        _, w = rational.log_weights(params, loss.loc[diversity].to_numpy(),
                                    complexity.loc[diversity].to_numpy(), step.astype(np.float64))
        w = np.asarray(w)
    else:
        w = np.asarray(weights(loss, complexity, diversity, step), dtype=np.float64)
        if w.ndim == 1:
            w = np.stack([w, 1.0 - w], axis=1)
    if w.shape != (diversity.size, len(strategies)):
        raise BayesiclError(f"synthetic weights have shape {w.shape}, expected {(diversity.size, len(strategies))}")
    run = np.repeat(np.arange(len(diversities)), steps.size)
    kind = family_spec(task).output_kind
    transformer = np.stack([mixture_output(per_run[r], w[c], kind) for c, r in enumerate(run)])
    if output_dtype not in ("float32", "float16"):
        raise BayesiclError(f"synthetic_evidence: output_dtype must be float32 or float16, not {output_dtype!r}")
    transformer = transformer.astype(output_dtype)
    return evidence_from_arrays(task, strategies, transformer.astype(np.float32), per_run.astype(np.float32),
                                diversity=diversity, step=step, seed=np.full(diversity.size, seed),
                                loss=loss, complexity=complexity, cutoff=cutoff,
                                target=None, run=run)


def synthetic_terms(task, strategies: Sequence[str], pools: dict, loss_sequences: int = 512):
    """L̄_s(D) and K_s(D) of the pools of `strategy_outputs` (not cached on disk)."""

    return strategy_terms(task, tuple(strategies), pools, num_sequences=loss_sequences, cache=False)


def mixture_output(strategy_outputs: np.ndarray, weights: np.ndarray, kind: str) -> np.ndarray:
    """Σ_s w_s s for one run: (S, split, B, P, O) outputs, (S,) weights → (split, B, P, O).

    >>> s = np.log(np.array([[0.9, 0.1], [0.5, 0.5]]))[:, None, None, None, :]
    >>> np.exp(mixture_output(s, np.array([0.5, 0.5]), "log_probs")).round(2).ravel().tolist()
    [0.7, 0.3]
    """
    w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (strategy_outputs.ndim - 1))
    if kind == "predictions":
        return np.sum(w * strategy_outputs, axis=0)
    probs = np.exp(observe.normalize_log_probs(strategy_outputs))
    return observe.log_probs(np.sum(w * probs, axis=0))


def misfit_weights(params, run_sd: float = 0.0, trend_sd: float = 0.0, trend_corr: float = 0.0,
                   noise_sd: float = 0.0, seed: int = 0, strategies: Sequence[str] = ("memorizing", "generalizing")
                   ) -> Weights:
    """A `weights` function for `synthetic_evidence` whose runs misfit the rational model the
    way real runs do: the model's log-odds of M against G at (α, β, γ) = `params`, plus per
    run (one per diversity here) an offset ~ Normal(0, `run_sd`), an AR(1) deviation along the
    run's checkpoints (stationary sd `trend_sd`, lag-1 correlation `trend_corr`) and
    independent noise of sd `noise_sd`, all drawn from `stream((seed, 1), "synthetic")`.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> ev = synthetic_evidence(task, [4, 16], [100, 1000], num_sequences=8, loss_sequences=64,
    ...                         weights=misfit_weights((0.5, 0.3, 1.0), run_sd=1.0, seed=1))
    >>> ev.num_conditions
    4
    """

    def weights(loss, complexity, diversity, step):
        names = list(strategies)
        eta, _ = rational.log_weights(params, loss.loc[diversity, names].to_numpy(),
                                      complexity.loc[diversity, names].to_numpy(), np.asarray(step, dtype=np.float64))
        z = np.array(eta[:, 0] - eta[:, 1], dtype=np.float64)
        rng = stream((seed, 1), "synthetic")
        for d in np.unique(diversity):
            rows = np.flatnonzero(diversity == d)
            rows = rows[np.argsort(np.asarray(step)[rows], kind="stable")]
            z[rows] += run_sd * rng.standard_normal()
            deviation = trend_sd * rng.standard_normal()
            for row in rows:
                z[row] += deviation
                deviation = trend_corr * deviation + math.sqrt(1.0 - trend_corr ** 2) * trend_sd * rng.standard_normal()
        z += noise_sd * rng.standard_normal(z.size)
        return 1.0 / (1.0 + np.exp(-z))

    return weights


# -- populations of configurations (docs/model.md#population-model) ---------------------------------

#: Parameters of θ_j in the population model's coordinates: logit α, log β, log γ̃.
THETA_NAMES = ("logit_alpha", "log_beta", "log_gamma_ref")


class SyntheticPopulation:
    """Evidence of several configurations drawn from a known population.

    ``evidence`` (one `Evidence` per configuration, settings carry the configuration),
    ``settings`` (the varied settings of each), ``theta`` (J, 3) the true (logit α, log β,
    log γ̃) of each configuration, ``params`` the true (α, β, γ) per configuration, and the
    truth in raw coordinates: θ_j = ``intercept`` + ``slope`` · log s_j + diag(``tau``) L z_j
    (``slope`` (3, P) per log setting, ``corr`` = L Lᵀ). γ̃ = γ N_ref^(1−α) at
    ``reference_step``."""

    def __init__(self, evidence, settings, theta, intercept, slope, tau, corr, names, reference_step):
        self.evidence, self.settings, self.theta = evidence, settings, theta
        self.intercept, self.slope, self.tau, self.corr = intercept, slope, tau, corr
        self.names, self.reference_step = tuple(names), float(reference_step)

    @property
    def params(self) -> list[tuple[float, float, float]]:
        """The true (α, β, γ) of each configuration."""
        return [theta_to_params(t, self.reference_step) for t in self.theta]

    def truth(self, covariates) -> dict[str, np.ndarray]:
        """μ (3,), B (3, P) and τ (3,) in the coordinates of a fit's `Covariates`
        (x = (log s − center)/scale): B = slope · scale, μ = intercept + slope · center."""
        index = [self.names.index(n) for n in covariates.names]
        slope = self.slope[:, index]
        return {"mu": self.intercept + slope @ np.asarray(covariates.center),
                "B": slope * np.asarray(covariates.scale)[None, :], "tau": self.tau.copy()}


def theta_to_params(theta, reference_step: float) -> tuple[float, float, float]:
    """(logit α, log β, log γ̃) → (α, β, γ) with γ = γ̃ N_ref^(α−1).

    >>> [round(v, 4) for v in theta_to_params((0.0, 0.0, 0.0), 100.0)]
    [0.5, 1.0, 0.1]
    """
    alpha = 1.0 / (1.0 + math.exp(-float(theta[0])))
    return alpha, math.exp(float(theta[1])), math.exp(float(theta[2])) * float(reference_step) ** (alpha - 1.0)


def synthetic_population(task, grid, diversities: Sequence[int], steps: Sequence[int], *,
                         intercept=None, slope=None, tau=None, corr=None, seed: int = 0,
                         run_sd: float = 0.0, trend_sd: float = 0.0, trend_corr: float = 0.0,
                         noise_sd: float = 0.0, num_sequences: int = 16, loss_sequences: int = 256,
                         holdout: float = 0.2, strategies: Sequence[str] = ("memorizing", "generalizing")
                         ) -> SyntheticPopulation:
    """Evidence for every configuration of `grid` ({setting: values}, their product) drawn
    from a known population model; see `SyntheticPopulation`.

    A setting of the task (e.g. context_length) changes the task, hence L̄ and K; any other
    (e.g. mlp_width) only enters the configuration's settings (its covariate). The truth:
    θ_j = intercept + slope · log s_j + diag(tau) L z_j, z_j ~ N(0, I), L the Cholesky
    factor of `corr` (identity by default); unset parts are drawn from
    `stream(seed, "synthetic")`: the intercept puts α ≈ 0.6, β ≈ 0.2 and N* of the middle
    diversity near N_ref (± N(0, 0.1) per coordinate), slope ~ N(0, 0.15) per log unit,
    tau = |N(0, 0.2)| + 0.05. Each configuration's runs misfit the rational
    model as in `misfit_weights` (run offsets `run_sd`, AR(1) deviations `trend_sd`,
    `trend_corr`, noise `noise_sd`). γ̃ is at N_ref = the geometric mean of the steps a fit with
    `holdout` sees (cutoff "all").

    >>> import bayesicl as bic
    >>> pop = synthetic_population(bic.task("urns", num_dims=4, context_length=8), {"mlp_width": [32, 64]},
    ...                            [4, 8], [100, 1000], num_sequences=4, loss_sequences=32)
    >>> len(pop.evidence), pop.evidence[1].settings["config"], pop.theta.shape
    (2, {'mlp_width': 64}, (2, 3))
    """
    names = list(grid)
    if not names:
        raise BayesiclError("synthetic_population: give at least one setting to vary")
    combos = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    logs = np.array([[math.log(float(c[n])) for n in names] for c in combos])
    rng = stream(seed, "synthetic")
    steps = np.asarray(steps, dtype=np.int64)
    fit_steps = np.sort(steps)[:math.ceil((1.0 - holdout) * steps.size)]
    reference = float(np.exp(np.mean(np.log(np.maximum(fit_steps, 1)))))
    cache: dict[str, tuple] = {}
    tasks, arch = [], []
    for combo in combos:
        task_settings, other = dict(task.settings), {}
        for key, value in combo.items():
            (task_settings if key in task_settings else other)[key] = value
        config_task = from_settings(task_settings)
        key = repr(sorted(task_settings.items()))
        if key not in cache:
            outputs = strategy_outputs(config_task, strategies, diversities, num_sequences, seed)
            cache[key] = (outputs, synthetic_terms(config_task, strategies, outputs[1], loss_sequences))
        tasks.append((config_task, key))
        arch.append(other)
    slope = (np.asarray(slope, dtype=np.float64).reshape(3, len(names)) if slope is not None
             else 0.15 * rng.standard_normal((3, len(names))))
    tau = np.asarray(tau, dtype=np.float64) if tau is not None else np.abs(0.2 * rng.standard_normal(3)) + 0.05
    corr = np.eye(3) if corr is None else np.asarray(corr, dtype=np.float64)
    z = rng.standard_normal((len(combos), 3))
    if intercept is None:
        # α ≈ 0.6, β ≈ 0.2 and γ̃ = a / ΔL at the middle diversity of the first configuration,
        # which puts N* there at N_ref (a = ln 2 (K_M^β − K_G^β), ΔL = L̄_G − L̄_M), so the
        # transitions fall inside the step grid; then centred over the grid's covariates.
        loss, bits = cache[tasks[0][1]][1]
        middle = sorted(int(d) for d in diversities)[len(diversities) // 2]
        a = math.log(2) * (bits.loc[middle].iloc[0] ** 0.2 - bits.loc[middle].iloc[1] ** 0.2)
        delta = loss.loc[middle].iloc[1] - loss.loc[middle].iloc[0]
        center = np.array([math.log(0.6 / 0.4), math.log(0.2), math.log(abs(a / delta))])
        intercept = center + 0.1 * rng.standard_normal(3) - slope @ logs.mean(axis=0)
    intercept = np.asarray(intercept, dtype=np.float64)
    theta = intercept[None] + logs @ slope.T + (z @ np.linalg.cholesky(corr).T) * tau[None]
    evidence = []
    for j, ((config_task, key), other) in enumerate(zip(tasks, arch)):
        outputs, terms = cache[key]
        weights = misfit_weights(theta_to_params(theta[j], reference), run_sd=run_sd, trend_sd=trend_sd,
                                 trend_corr=trend_corr, noise_sd=noise_sd, seed=seed * 1000 + j,
                                 strategies=strategies)
        ev = synthetic_evidence(config_task, diversities, steps, weights=weights, strategies=strategies,
                                num_sequences=num_sequences, seed=seed, outputs=outputs, terms=terms,
                                cutoff="all")
        settings = {"task": dict(config_task.settings), "zipf": None, "config": other}
        evidence.append(dataclasses.replace(ev, settings=settings))
    return SyntheticPopulation(evidence, combos, theta, intercept, slope, tau, corr, names, reference)
