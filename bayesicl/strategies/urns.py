"""Balls-and-urns strategies (docs/model.md#urns-strategies): next-colour distributions after x_1..x_t.

Row t (t = 0..T−1) of every output is the predictive distribution of x_{t+1} given the start
token and x_1..x_t; `tokens` is (B, T+1) with the start token (id d) first.

- M: posterior over the D pool urns, log π_i(t) = log p_i + Σ_{k≤t} log θ_i[x_k] − logsumexp,
  prediction Σ_i π_i(t) θ_i. Computed in float32 by a scan over positions that carries the
  log-weights (B, D) re-centred on their maximum at every step, so the numbers exponentiated
  are ≤ 0 and the ones that matter stay small (accurate to ~1e-6 at D = 4096, T = 320).
- G: the Dirichlet(a·1) posterior mean (c_v(t) + a) / (t + d·a), float64.
- C: the prior predictive 1/d, float64.

>>> import numpy as np
>>> pool = np.array([[0.9, 0.1], [0.1, 0.9]])
>>> tokens = np.array([[2, 0, 0, 0]])
>>> probs = memorizing_probs(tokens, *memorizing_prior_arrays(pool, None))
>>> probs[0, :, 0].round(4).tolist()   # pool mean, then the evidence for urn 0 piles up
[0.5, 0.82, 0.8902]
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import xlogy

from ..errors import BayesiclError
from ..families import FamilySpec, register_family
from ..tasks.urns import Urns
from .base import in_chunks
from .complexity import weighted_pool
from .loss import batch_parameters, checked_outputs

#: log θ is floored here so that an urn with θ_v = 0 gets a large finite penalty for colour v
#: (and 0 · log θ_v stays 0 for colours not yet seen) instead of −inf and NaN.
LOG_PARAMETER_FLOOR = -1.0e4

#: Sequences per kernel call ≈ this / D: the (chunk, D) float32 state then stays in cache.
_MEMORIZING_ELEMENTS_PER_CHUNK = 2**19


def memorizing_prior_arrays(pool: np.ndarray, probabilities: np.ndarray | None):
    """(log θ (D, d), log prior (D,)) as float32 arrays, floored at `LOG_PARAMETER_FLOOR`."""
    pool = np.asarray(pool, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_theta = np.maximum(np.log(pool), LOG_PARAMETER_FLOOR)
        log_prior = (np.zeros(pool.shape[0]) if probabilities is None
                     else np.maximum(np.log(probabilities), LOG_PARAMETER_FLOOR))
    return jnp.asarray(log_theta, jnp.float32), jnp.asarray(log_prior, jnp.float32)


def memorizing_prior(task, pool: np.ndarray, probabilities: np.ndarray | None):
    """The memorizing strategy's prior in kernel form (see `memorizing_prior_arrays`)."""
    return memorizing_prior_arrays(pool, probabilities)


@jax.jit
def memorizing_probs(tokens: jax.Array, log_pool_theta: jax.Array, log_prior: jax.Array) -> jax.Array:
    """M's predictive distributions, (B, T+1) tokens → (B, T, d) float32.

    `log_pool_theta` (D, d) and `log_prior` (D,) are float32 logs (floored, not −inf).
    """
    theta = jnp.exp(log_pool_theta)                                  # (D, d)
    log_theta_of_colour = log_pool_theta.T                           # (d, D): row v = log θ_·[v]

    def step(log_weights, colour):
        # log_weights (B, D) has maximum 0, so exp cannot overflow; Σ_v θ_i[v] = 1 makes the
        # row sum of the mixture the normalizer.
        mixture = jnp.exp(log_weights) @ theta                       # (B, d)
        probs = mixture / mixture.sum(axis=-1, keepdims=True)
        log_weights = log_weights + log_theta_of_colour[colour]
        return log_weights - log_weights.max(axis=-1, keepdims=True), probs

    start = jnp.broadcast_to(log_prior - log_prior.max(), (tokens.shape[0], log_prior.shape[0]))
    _, probs = jax.lax.scan(step, start, tokens[:, 1:].T)            # (T, B, d)
    return jnp.swapaxes(probs, 0, 1)


@partial(jax.jit, static_argnames="num_colours")
def generalizing_probs(tokens: jax.Array, num_colours: int, concentration: float) -> jax.Array:
    """G's Dirichlet posterior means, (B, T+1) tokens → (B, T, d) float64."""
    seen = jax.nn.one_hot(tokens[:, 1:-1], num_colours, dtype=jnp.float64)   # x_1..x_{T−1}
    counts = jnp.cumsum(seen, axis=1)
    counts = jnp.concatenate([jnp.zeros_like(counts[:, :1]), counts], axis=1)  # (B, T, d)
    position = jnp.arange(counts.shape[1], dtype=jnp.float64)[:, None]
    return (counts + concentration) / (position + num_colours * concentration)


def outputs(kind: str, task, prior: Any, batch) -> np.ndarray:
    """Evaluate strategy `kind` on a validated urns batch (see `Strategy.__call__`)."""
    tokens = np.asarray(batch["tokens"]).astype(np.int32)
    if kind == "memorizing":
        log_theta, log_prior = prior
        chunk = max(1, _MEMORIZING_ELEMENTS_PER_CHUNK // log_theta.shape[0])
        return in_chunks(lambda t: memorizing_probs(t, log_theta, log_prior), (tokens,), chunk)
    if kind == "generalizing":
        return np.array(generalizing_probs(tokens, task.num_dims, float(task.concentration)))
    return np.full((tokens.shape[0], task.context_length, task.num_dims), 1.0 / task.num_dims)


def kl_loss(task, log_probs: np.ndarray, batch) -> np.ndarray:
    """The loss of L̄ at every row t: KL(θ ‖ p̂_t) = Σ_v θ_v (log θ_v − log p̂_t[v]), (n, T),
    from (n, T, d) log-probabilities and the generating urns batch["theta"] (n, d).

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=2, context_length=1)
    >>> kl_loss(task, np.log([[[0.5, 0.5]]]), {"theta": [[0.5, 0.5]]}).tolist()
    [[0.0]]
    """
    theta = batch_parameters(batch, "theta", (None, task.num_dims), "urns")
    log_probs = checked_outputs(log_probs, (theta.shape[0], task.context_length, task.num_dims))
    entropy_term = xlogy(theta, theta).sum(-1)                   # Σ_v θ_v log θ_v, (n,)
    return entropy_term[:, None] - np.einsum("nv,ntv->nt", theta, log_probs)


def prior_parameters(kind: str, task, pool: Any, probabilities: np.ndarray | None, order: None = None, *,
                     paper_compatible: bool = False) -> np.ndarray:
    """What K_data compresses (docs/model.md#complexity): M the pool (D, d), G the d Dirichlet
    concentrations, C the prediction 1/d; float64. `paper_compatible`: G and C as the paper's
    int64 pseudo-counts (an integer concentration).

    >>> import bayesicl as bic
    >>> prior_parameters("generalizing", bic.task("urns", num_dims=3), None, None).tolist()
    [1.0, 1.0, 1.0]
    """
    d = int(task.num_dims)
    if kind == "memorizing":
        return weighted_pool(pool, probabilities)
    if paper_compatible:
        if not float(task.concentration).is_integer():
            raise BayesiclError("paper_compatible stores the urns prior as int64 and needs an "
                                f"integer concentration, got {task.concentration!r}")
        return np.full(d, int(task.concentration), dtype="<i8")
    if kind == "generalizing":
        return np.full(d, float(task.concentration), dtype="<f8")
    return np.full(d, 1.0 / d, dtype="<f8")        # the one prediction C makes everywhere


#: The urns family (docs/model.md#urns). K_code of M and G under the paper's convention is the
#: paper's, measured from its own class sources (BayesianAveragingCategoricalSequence,
#: PosteriorMeanCategoricalSequence); with the paper's K_data they give its K_G = 4 416 and
#: K_M(4) = 6 832 bits. The paper's fit starts at (α, β, γ) = (0.6, 0.2, 0.85).
FAMILY = register_family(FamilySpec(
    "urns", Urns, kernels=sys.modules[__name__], loss=kl_loss, prior_parameters=prior_parameters,
    paper_code_bits={"memorizing": 4784.0, "generalizing": 4328.0},
    output_dims=("position", "token"),
    input_dims={"tokens": ("slot",), "theta": ("token",)}, pool_dims={"pool": ("task", "token")},
    paper_start=(0.6, 0.2, 0.85), paper_metrics=("tvd", "spearman"), transformer="tokens"))
