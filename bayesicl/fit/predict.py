"""Predictions of a fitted strategy model: weights per condition, their intervals, N*(D).

Point fits (MAP) give one set of weights. Posterior fits (NUTS) give weights per draw; the
reported predicted weight is the posterior mean of w_M, ``weight_low``/``weight_high`` its
90% credible interval, and ``predicted_low``/``predicted_high`` the 90% posterior-predictive
interval of the OBSERVED M-weight: per draw, w̃ = (clip(ρ(w_M) + s·z, −1, 1) + 1)/2 with
z ~ Normal(0, 1), ρ the run's relative-distance curve on that split (see
`bayesicl.fit.observation`) and s the model's observation scale (`bayesicl.fit.model`); with
more than two strategies w̃ = clip(w_M + s·z, 0, 1).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import rational
from ..seeds import stream
from .model import observation_scale

#: Central interval reported everywhere (SPEC §14: 90%).
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
        _, w = rational.log_weights((jnp.asarray(alpha[part])[:, None], jnp.asarray(beta[part])[:, None],
                                     jnp.asarray(gamma[part])[:, None]),
                                    jnp.asarray(loss), jnp.asarray(complexity), jnp.asarray(step, dtype=jnp.float64))
        out.append(np.asarray(w))
    return np.concatenate(out)


def observed_weight_draws(weights_m: np.ndarray, draws: dict[str, np.ndarray], curves, run: np.ndarray,
                          split_index: int, seed: int, many_strategies: bool) -> np.ndarray:
    """Posterior-predictive draws of the observed M-weight, (draws, C).

    weights_m (draws, C); draws holds sigma_obs and sigma_logit (draws,). Per draw the
    observation is Normal(ρ(w), `observation_scale`) as in the model, then clipped and mapped
    to a weight like the observed one.
    """
    rng = stream((seed, 4, split_index), "fit")
    z = rng.standard_normal(weights_m.shape)
    out = np.empty_like(weights_m)
    for start in range(0, weights_m.shape[0], DRAW_CHUNK):
        part = slice(start, start + DRAW_CHUNK)
        w = weights_m[part]
        if many_strategies:
            mean, sensitivity = w, w * (1.0 - w)
        else:
            mean, slope = (np.asarray(a) for a in curves.with_slope(jnp.asarray(run)[None, :], split_index,
                                                                     jnp.asarray(w)))
            sensitivity = slope * w * (1.0 - w)
        scale = np.asarray(observation_scale(draws["sigma_obs"][part, None], draws["sigma_logit"][part, None],
                                             sensitivity))
        out[part] = mean + scale * z[part]
    if many_strategies:
        return np.clip(out, 0.0, 1.0)
    return (np.clip(out, -1.0, 1.0) + 1.0) / 2.0


def transition_table(params: dict, loss: pd.DataFrame, complexity: pd.DataFrame,
                     draws: dict | None = None, pair: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """N*(D) per diversity for the strategy pair (i, j) (default M vs G).

    Columns: diversity, transition_step (the point estimate, or the posterior median),
    transition_low, transition_high (90% interval over draws; NaN for a point fit) and
    direction ("G→M", "M→G", or "M"/"G" when one wins at every step, see
    `bayesicl.rational.transition_direction`).

    >>> loss = pd.DataFrame({"m": [0.1, 0.1]}, index=[4, 8]).assign(g=0.2)
    >>> bits = pd.DataFrame({"m": [2.0, 4.0]}, index=[4, 8]).assign(g=1.0)
    >>> transition_table({"alpha": 0.5, "beta": 1.0, "gamma": 1.0}, loss, bits)["transition_step"].round(1).tolist()
    [48.0, 432.4]
    """
    i, j = pair
    lm, lg = loss.iloc[:, i].to_numpy(), loss.iloc[:, j].to_numpy()
    km, kg = complexity.iloc[:, i].to_numpy(), complexity.iloc[:, j].to_numpy()
    point = np.asarray(rational.transition_step(params["alpha"], params["beta"], params["gamma"],
                                                lm, lg, km, kg))
    low = high = np.full(point.shape, np.nan)
    if draws is not None:
        per_draw = np.asarray(rational.transition_step(
            draws["alpha"][:, None], draws["beta"][:, None], draws["gamma"][:, None], lm, lg, km, kg))
        # No crossing counts as ∞ (NaN: a tie everywhere); "nearest" keeps ∞ out of interpolation.
        per_draw = np.where(np.isnan(per_draw), np.inf, per_draw)
        point = np.quantile(per_draw, 0.5, axis=0, method="nearest")
        low, high = np.quantile(per_draw, [LOW, HIGH], axis=0, method="nearest")
    return pd.DataFrame({
        "diversity": loss.index.to_numpy(),
        "transition_step": point, "transition_low": low, "transition_high": high,
        "direction": rational.transition_direction(params["beta"], km, kg, lm, lg)})
