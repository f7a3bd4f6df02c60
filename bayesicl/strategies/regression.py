"""Linear-regression strategies (docs/model.md#regression-strategies): predictions of y_t from x_t and (x_k, y_k), k < t.

All three compute in float64 (outputs (B, T) float64).

- M (discrete MMSE): π_i(t) ∝ p_i exp(−Σ_{k<t} (y_k − w_i·x_k)² / (2σ²)), ŷ_t = Σ_i π_i(t) w_i·x_t.
  A scan over positions carries the log-weights (B, D), re-centred on their maximum at every
  step (log space: the exponents reach −10³ on OOD sequences). Entry 0 is (prior mean)·x_0.
- G (ridge, the posterior mean under w ~ N(0, I)): ŵ_t = (X_{<t}ᵀX_{<t} + σ²I)⁻¹ X_{<t}ᵀy_{<t},
  ŷ_t = ŵ_t·x_t. All T prefix systems are formed by exclusive cumulative sums of x_k x_kᵀ and
  y_k x_k and solved at once by a batched Cholesky factorization (B, T, d, d); ŷ_0 = 0.
- C: ŷ = 0.

>>> import numpy as np
>>> x = np.array([[[1.0, 0.0], [1.0, 0.0]]]); y = np.array([[2.0, 2.0]])
>>> generalizing_predictions(x, y, 0.5).round(3).tolist()     # 2 · 1 / (1 + 0.5)
[[0.0, 1.333]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import in_chunks

#: Sequences per kernel call ≈ this / D for M, this / (T d²) for G: bounded working memory.
_MEMORIZING_ELEMENTS_PER_CHUNK = 2**18
_RIDGE_ELEMENTS_PER_CHUNK = 2**20


def memorizing_prior(task, pool: np.ndarray, probabilities: np.ndarray | None):
    """(pool weights w_i (D, d), log prior (D,)) as float64 arrays."""
    pool = jnp.asarray(pool, jnp.float64)
    if probabilities is None:
        return pool, jnp.zeros(pool.shape[0], jnp.float64)
    with np.errstate(divide="ignore"):
        return pool, jnp.asarray(np.log(probabilities), jnp.float64)


@jax.jit
def memorizing_predictions(x: jax.Array, y: jax.Array, pool_w: jax.Array, log_prior: jax.Array,
                           noise_variance: float) -> jax.Array:
    """M's predictions, x (B, T, d), y (B, T), pool (D, d), log prior (D,) → (B, T) float64."""
    x = x.astype(jnp.float64)
    y = y.astype(jnp.float64)

    def step(log_weights, pair):
        x_t, y_t = pair                                              # (B, d), (B,)
        pool_predictions = x_t @ pool_w.T                            # (B, D): w_i·x_t
        weights = jnp.exp(log_weights)
        prediction = (weights * pool_predictions).sum(-1) / weights.sum(-1)
        log_weights = log_weights - (y_t[:, None] - pool_predictions) ** 2 / (2 * noise_variance)
        return log_weights - log_weights.max(axis=-1, keepdims=True), prediction

    start = jnp.broadcast_to(log_prior - log_prior.max(), (x.shape[0], log_prior.shape[0]))
    _, predictions = jax.lax.scan(step, start, (jnp.swapaxes(x, 0, 1), y.T))
    return predictions.T


@jax.jit
def generalizing_predictions(x: jax.Array, y: jax.Array, noise_variance: float) -> jax.Array:
    """G's (ridge) predictions, x (B, T, d), y (B, T) → (B, T) float64."""
    x = x.astype(jnp.float64)
    y = y.astype(jnp.float64)

    def before(terms):                                               # Σ_{k<t}, axis 1
        total = jnp.cumsum(terms, axis=1)
        return jnp.concatenate([jnp.zeros_like(total[:, :1]), total[:, :-1]], axis=1)

    gram = before(x[..., :, None] * x[..., None, :])                 # (B, T, d, d)
    gram = gram + noise_variance * jnp.eye(x.shape[-1], dtype=jnp.float64)
    moment = before(y[..., None] * x)                                # (B, T, d)
    factor = jnp.linalg.cholesky(gram)
    w_hat = jax.scipy.linalg.cho_solve((factor, True), moment[..., None])[..., 0]
    return (w_hat * x).sum(-1)


def outputs(kind: str, task, prior: Any, batch) -> np.ndarray:
    """Evaluate strategy `kind` on a validated regression batch (see `Strategy.__call__`)."""
    x = np.asarray(batch["x"], dtype=np.float64)
    y = np.asarray(batch["y"], dtype=np.float64)
    variance = float(task.noise_variance)
    if kind == "memorizing":
        pool_w, log_prior = prior
        chunk = max(1, _MEMORIZING_ELEMENTS_PER_CHUNK // pool_w.shape[0])
        return in_chunks(lambda a, b: memorizing_predictions(a, b, pool_w, log_prior, variance),
                         (x, y), chunk)
    if kind == "generalizing":
        chunk = max(1, _RIDGE_ELEMENTS_PER_CHUNK // (x.shape[1] * x.shape[2] ** 2))
        return in_chunks(lambda a, b: generalizing_predictions(a, b, variance), (x, y), chunk)
    return np.zeros(y.shape)
