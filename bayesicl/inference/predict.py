"""Predictions of a fitted strategy model: weights per condition, their intervals, N*(D).

Point fits (MAP) give one set of weights. Posterior fits (NUTS) give weights per draw; the
reported predicted weight is the posterior mean of the rational model's w_M, ``weight_low``/
``weight_high`` its 90% credible interval (central), and ``observed_low``/``observed_high``
the 90% posterior-predictive interval of the OBSERVED M-weight: per draw, the observation is
Normal(ρ(w), s) as in the model (`bayesicl.inference.model`), w including the run's log-odds effect
(its posterior draw for a fitted run, a new draw from Normal(0, σ_run) for a run the fit did
not see; on OOD also the OOD stage's run effect, `bayesicl.inference.cut`), and it is clipped and
mapped to a weight like the observed one: w̃ = (clip(r, −1, 1) + 1)/2; with more than two
strategies w̃ = clip(w_M + noise, 0, 1). ``expected_observed_weight`` is (ρ(w_M) + 1)/2
averaged over draws: the observed weight the rational model's mixture itself would show.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pandas as pd

from .. import rational
from ..errors import BayesiclError
from .model import RESOLUTION, observation_scale
from .objective import hermite_with_slope

#: Central interval reported everywhere (docs/model.md#nuts: 90%).
INTERVAL = 0.9
LOW, HIGH = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
#: Draws processed at a time (bounds memory at draws × conditions × strategies floats).
DRAW_CHUNK = 512


def weights_for(params: dict[str, np.ndarray], loss: np.ndarray, complexity: np.ndarray,
                step: np.ndarray) -> np.ndarray:
    """w (draws, C, S) for parameter draws (draws,) and condition terms (C, S), (C,).

    >>> w = weights_for({"alpha": np.array([0.5]), "beta": np.array([1.0]), "gamma": np.array([1.0])},
    ...                 np.array([[1.0, 2.0]]), np.array([[1.0, 1.0]]), np.array([4.0]))
    >>> w.shape, round(float(w[0, 0, 0]), 4)
    ((1, 1, 2), 0.8808)
    """
    alpha, beta, gamma = (np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in rational.PARAMETERS)
    out = []
    for start in range(0, alpha.size, DRAW_CHUNK):
        part = slice(start, start + DRAW_CHUNK)
        out.append(np.asarray(_offset_weights(alpha[part], beta[part], gamma[part], 0.0, loss, complexity,
                                              np.asarray(step, dtype=np.float64))))
    return np.concatenate(out)


@jax.jit
def _offset_weights(alpha, beta, gamma, offset, loss, complexity, step):
    """w (n, C, S) for draws (n,) with the log-odds `offset` (n, C) added to η_M, compiled as
    one program per shape (run eagerly, each operation compiled on its own)."""
    eta, _ = rational.log_weights((alpha[:, None], beta[:, None], gamma[:, None]), loss, complexity, step)
    return jax.nn.softmax(eta.at[..., 0].add(offset), axis=-1)


@functools.partial(jax.jit, static_argnames="many")
def _chunk_moments(alpha, beta, gamma, offset, loss, complexity, step, tables, run, sigma_obs, sigma_logit,
                   many: bool):
    """`observation_moments` for one chunk of draws; `tables` = (nodes, values, slopes) of
    the split's ρ tables (unused with more than two strategies)."""
    weights = _offset_weights(alpha, beta, gamma, offset, loss, complexity, step)
    if many:
        mean, sensitivity = weights, weights * (1.0 - weights)
        extra = (slice(None), None, None)
    else:
        w = weights[..., 0]
        mean, slope = hermite_with_slope(*tables, w, rows=run)
        sensitivity = slope * w * (1.0 - w)
        extra = (slice(None), None)
    return mean, observation_scale(sigma_obs[extra], sigma_logit[extra], sensitivity), sensitivity


def run_offsets(effect: np.ndarray | None, sigma: np.ndarray | None, fitted_runs, runs: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Log-odds run effects per draw and condition (n, C): a fitted run's draws (`effect`
    (n, R) for `fitted_runs`), a new Normal(0, σ_run) draw per run and draw for any other run;
    zeros without run effects.

    >>> rng = np.random.default_rng(0)
    >>> run_offsets(np.array([[0.5], [0.7]]), np.array([1.0, 1.0]), [3], np.array([3, 3]), rng).tolist()
    [[0.5, 0.5], [0.7, 0.7]]
    """
    if effect is None:
        return np.zeros((1, len(runs)))
    column = {int(r): k for k, r in enumerate(fitted_runs)}
    unique = np.unique(runs)
    fresh = rng.standard_normal((effect.shape[0], unique.size)) * np.asarray(sigma)[:, None]
    out = np.empty((effect.shape[0], len(runs)))
    for j, r in enumerate(unique):
        rows = runs == r
        out[:, rows] = (effect[:, column[int(r)]] if int(r) in column else fresh[:, j])[:, None]
    return out


def observation_moments(params: dict[str, np.ndarray], offset: np.ndarray, sigma_obs: np.ndarray,
                        sigma_logit: np.ndarray, loss: np.ndarray, complexity: np.ndarray, step: np.ndarray,
                        curves, run: np.ndarray, split_index: int, with_sensitivity: bool = False):
    """Mean and scale of each condition's observation per draw: (n, C) with two strategies
    (the relative distance r), (n, C, S) with more (the convex weights). `offset` (n, C) is
    the log-odds run effect added to η_M. With `with_sensitivity` also ∂(mean)/∂z, the
    first-order effect of a log-odds deviation (what `condition_on_runs` needs)."""
    params = {k: np.asarray(params[k], dtype=np.float64) for k in rational.PARAMETERS}
    offset = np.broadcast_to(offset, (params["alpha"].size, np.shape(step)[0]))
    sigma_obs, sigma_logit = np.asarray(sigma_obs), np.asarray(sigma_logit)
    many = np.shape(loss)[-1] > 2
    tables = None if many else (curves.nodes, curves.values[:, split_index], curves.slopes[:, split_index])
    means, scales, sensitivities = [], [], []
    for start in range(0, params["alpha"].size, DRAW_CHUNK):
        part = slice(start, start + DRAW_CHUNK)
        mean, scale, sensitivity = _chunk_moments(
            *(params[k][part] for k in rational.PARAMETERS), offset[part], loss, complexity,
            np.asarray(step, dtype=np.float64), tables, np.asarray(run), sigma_obs[part], sigma_logit[part], many)
        means.append(np.asarray(mean))
        scales.append(np.asarray(scale))
        sensitivities.append(np.asarray(sensitivity))
    if with_sensitivity:
        return np.concatenate(means), np.concatenate(scales), np.concatenate(sensitivities)
    return np.concatenate(means), np.concatenate(scales)


def trend_share(position, corr, trend_start: str = "stationary"):
    """The share of σ_logit² that a run's AR(1) deviation has at checkpoint position p (0 = the
    run's first): 1 when it is stationary, 1 − φ^(2(p+1)) when it starts at zero one checkpoint
    before the first (the population model, docs/model.md#population-model). Broadcasts.

    >>> round(float(trend_share(0, 0.5, "zero")), 4), float(trend_share(0, 0.5))
    (0.75, 1.0)
    """
    if trend_start == "stationary":
        return np.ones(np.broadcast_shapes(np.shape(position), np.shape(corr)))
    if trend_start != "zero":
        raise BayesiclError(f"unknown trend start {trend_start!r}; expected 'stationary' or 'zero'")
    return 1.0 - np.power(corr, 2.0 * (np.asarray(position, dtype=np.float64) + 1.0))


def start_trend(scale: np.ndarray, sensitivity: np.ndarray, sigma_logit: np.ndarray, corr: np.ndarray,
                position: np.ndarray, trend_start: str) -> np.ndarray:
    """`observation_moments`' scale (n, C), whose log-odds term σ_logit² s² is the stationary
    one, with that term scaled by `trend_share` at each condition's position (two strategies).

    >>> start_trend(np.array([[np.sqrt(2.0)]]), np.ones((1, 1)), np.ones(1), np.array([0.5]),
    ...             np.array([0]), "zero").round(4).tolist()
    [[1.3229]]
    """
    if trend_start == "stationary":
        return scale
    share = trend_share(np.asarray(position)[None, :], np.asarray(corr, dtype=np.float64)[:, None], trend_start)
    logit = (np.asarray(sigma_logit, dtype=np.float64)[:, None] * sensitivity) ** 2
    return np.sqrt(np.maximum(scale ** 2 - logit * (1.0 - share), RESOLUTION ** 2))


def condition_on_runs(mean: np.ndarray, scale: np.ndarray, sensitivity: np.ndarray, sigma_obs: np.ndarray,
                      sigma_logit: np.ndarray, corr: np.ndarray, observed: np.ndarray, given: np.ndarray,
                      run: np.ndarray, position: np.ndarray, trend_start: str = "stationary"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Forecast moments of the observations not `given`, conditional on the given ones of the
    same run, under the AR(1) trend of the model (docs/model.md#run-effects-and-honest-intervals).

    Per draw (n) and run, the observations r of the run are jointly normal around `mean`
    (n, C) with covariance Σ_ij = δ_ij (ε² + σ_obs²) + σ_logit² s_i s_j φ^|p_i − p_j|
    (s = `sensitivity`, p = `position` in checkpoint order, φ = `corr`), as in the
    likelihood; with `trend_start` "zero" every φ^|p_i − p_j| is multiplied by
    `trend_share` at min(p_i, p_j) (and `scale` must be `start_trend`'s). For the rows of a run with given rows G (`given` (C,) and a finite
    `observed`), the other rows H get the conditional normal:
    mean_H + Σ_HG Σ_GG⁻¹ (r_G − mean_G) and variance Σ_HH − Σ_HG Σ_GG⁻¹ Σ_GH. Rows in runs
    without given rows, and the given rows themselves (their replicate predictive), keep
    (mean, scale). Returns (mean, scale) (n, C).

    >>> mean, scale = np.zeros((1, 3)), np.full((1, 3), np.sqrt(1e-6 + 0.01 + 1.0))
    >>> m, s = condition_on_runs(mean, scale, np.ones((1, 3)), np.array([0.1]), np.array([1.0]),
    ...                          np.array([0.9]), np.array([1.0, 0.5, np.nan]), np.array([True, True, False]),
    ...                          np.zeros(3, dtype=int), np.arange(3))
    >>> round(float(m[0, 2]), 3), round(float(s[0, 2] ** 2), 3)    # toward the last residuals, narrower
    (0.467, 0.208)
    """
    mean, scale = np.array(mean, dtype=np.float64), np.array(scale, dtype=np.float64)
    sigma_obs, sigma_logit, corr = (np.asarray(a, dtype=np.float64)[:, None, None]
                                    for a in (sigma_obs, sigma_logit, corr))
    given = np.asarray(given, dtype=bool) & np.isfinite(observed)
    for r in np.unique(run[given]):
        rows_g = np.flatnonzero(given & (run == r))
        rows_h = np.flatnonzero(~given & (run == r))
        if rows_h.size == 0:
            continue
        pg, ph = position[rows_g].astype(np.float64), position[rows_h].astype(np.float64)
        for start in range(0, mean.shape[0], DRAW_CHUNK):
            part = slice(start, start + DRAW_CHUNK)
            sg, sh = sensitivity[part][:, rows_g], sensitivity[part][:, rows_h]
            phi, logit = corr[part], sigma_logit[part]
            kernel_gg = phi ** np.abs(pg[:, None] - pg[None, :]) * trend_share(
                np.minimum(pg[:, None], pg[None, :]), phi, trend_start)
            kernel_gh = phi ** np.abs(pg[:, None] - ph[None, :]) * trend_share(
                np.minimum(pg[:, None], ph[None, :]), phi, trend_start)
            cov_gg = logit ** 2 * sg[:, :, None] * sg[:, None, :] * kernel_gg
            cov_gg = cov_gg + (RESOLUTION ** 2 + sigma_obs[part] ** 2) * np.eye(rows_g.size)
            cov_gh = logit ** 2 * sg[:, :, None] * sh[:, None, :] * kernel_gh
            residual = observed[rows_g][None, :] - mean[part][:, rows_g]
            gain = np.linalg.solve(cov_gg, cov_gh)                                    # Σ_GG⁻¹ Σ_GH (n, g, h)
            mean[part, rows_h] += np.einsum("ngh,ng->nh", gain, residual)
            variance = scale[part][:, rows_h] ** 2 - np.einsum("ngh,ngh->nh", cov_gh, gain)
            scale[part, rows_h] = np.sqrt(np.maximum(variance, RESOLUTION ** 2))
    return mean, scale


def observed_weight_draws(mean: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Posterior-predictive draws of the observed M-weight (n, C) from observation moments:
    r = mean + scale·z clipped to [−1, 1] and mapped to (r + 1)/2 (two strategies), or the
    convex weight of M clipped to [0, 1] (more)."""
    noise = rng.standard_normal(mean.shape)
    if mean.ndim == 3:
        return np.clip(mean[..., 0] + scale[..., 0] * noise[..., 0], 0.0, 1.0)
    return (np.clip(mean + scale * noise, -1.0, 1.0) + 1.0) / 2.0


def log_predictive_density(mean: np.ndarray, scale: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """log (1/n) Σ_draws p(y_c | draw) per condition (C,) for observation moments (n, C[, S]);
    NaN where the observation is not finite."""
    logp = -0.5 * ((observed[None] - mean) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)
    if logp.ndim == 3:
        logp = logp.sum(axis=-1)
    top = np.max(logp, axis=0)
    with np.errstate(invalid="ignore"):
        out = top + np.log(np.mean(np.exp(logp - top[None]), axis=0))
    return np.where(np.isfinite(out), out, np.nan)


#: `bayesicl.rational.transition_step` as one compiled program per shape.
_transition_step = jax.jit(rational.transition_step)


def transition_table(params: dict, loss: pd.DataFrame, complexity: pd.DataFrame,
                     draws: dict | None = None, pair: tuple[int, int] = (0, 1),
                     last_step=None) -> pd.DataFrame:
    """N*(D) per diversity for the strategy pair (i, j) (default M vs G).

    Columns: diversity, transition_step (the point estimate, or the per-draw median for a
    posterior), transition_at_mean (N* at the posterior-mean parameters; the point estimate
    for a point fit), transition_low, transition_high (90% interval over draws; NaN for a
    point fit), direction ("G→M", "M→G", or "M"/"G" when one wins at every step, see
    `bayesicl.rational.transition_direction`) and, given `last_step` (a number, or a
    mapping diversity → the last trained step), extrapolated: N* beyond the last trained step.

    >>> loss = pd.DataFrame({"m": [0.1, 0.1]}, index=[4, 8]).assign(g=0.2)
    >>> bits = pd.DataFrame({"m": [2.0, 4.0]}, index=[4, 8]).assign(g=1.0)
    >>> table = transition_table({"alpha": 0.5, "beta": 1.0, "gamma": 1.0}, loss, bits, last_step=100)
    >>> table["transition_step"].round(1).tolist(), table["extrapolated"].tolist()
    ([48.0, 432.4], [False, True])
    """
    i, j = pair
    lm, lg = loss.iloc[:, i].to_numpy(), loss.iloc[:, j].to_numpy()
    km, kg = complexity.iloc[:, i].to_numpy(), complexity.iloc[:, j].to_numpy()
    at_mean = np.asarray(_transition_step(params["alpha"], params["beta"], params["gamma"],
                                                  lm, lg, km, kg))
    point = at_mean
    low = high = np.full(point.shape, np.nan)
    if draws is not None:
        per_draw = np.asarray(_transition_step(
            draws["alpha"][:, None], draws["beta"][:, None], draws["gamma"][:, None], lm, lg, km, kg))
        # No crossing counts as ∞ (NaN: a tie everywhere); "nearest" keeps ∞ out of interpolation.
        per_draw = np.where(np.isnan(per_draw), np.inf, per_draw)
        point = np.quantile(per_draw, 0.5, axis=0, method="nearest")
        low, high = np.quantile(per_draw, [LOW, HIGH], axis=0, method="nearest")
    table = pd.DataFrame({
        "diversity": loss.index.to_numpy(),
        "transition_step": point, "transition_at_mean": at_mean,
        "transition_low": low, "transition_high": high,
        "direction": rational.transition_direction(params["beta"], km, kg, lm, lg)})
    if last_step is not None:
        last = np.array([float(last_step.get(int(d), np.nan)) if hasattr(last_step, "get") else float(last_step)
                         for d in table["diversity"]])
        table["last_trained_step"] = last
        with np.errstate(invalid="ignore"):
            table["extrapolated"] = np.asarray(point, dtype=np.float64) > last
    return table
