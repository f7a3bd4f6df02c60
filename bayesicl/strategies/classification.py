"""Few-shot classification strategies (docs/model.md#classification-strategies): label probabilities (B, L) for the query.

The query x_q is the last item of `x` (B, T, d); the context is items 0..T−2 with their labels.
Items are noisy copies x = (μ + √ε·n)/√(1+ε), n ~ N(0, I/d), of exemplars μ ~ N(0, I/d).
All three compute in float64.

- M (label memorizing, ignores the context): p(i | x_q) ∝ p_i exp(−d/(2ε) ‖√(1+ε)·x_q − μ_i‖²)
  over the pool; predict Σ_i p(i | x_q) onehot(ℓ_i).
- G (copying from context): p(j | x_q) ∝ exp(−d(1+ε)² / (2ε(2+ε)) ‖x_q − x_j/(1+ε)‖²) over the
  T−1 context items — the density of a second noisy copy of the exemplar behind x_j;
  predict Σ_j p(j | x_q) onehot(ℓ_j).
- C: uniform 1/L.

Both weightings are softmaxes of log-densities (log space). Outputs are clamped to
[1e-5, 1 − 1e-5] (the paper's convention, docs/model.md#classification-strategies); with L = 2 the clamped pair still sums
to 1, with L > 2 the clamped vector is renormalized.

>>> import numpy as np
>>> means = np.array([[1.0, 0.0], [-1.0, 0.0]]); labels = np.array([0, 1])
>>> x = np.array([[[0.0, 0.0], [0.8, 0.1]]])       # one context item (ignored by M), query last
>>> memorizing_probs(x, means, labels, np.zeros(2), 0.5, 2).round(5).tolist()
[[0.99961, 0.00039]]
>>> x[0, -1] = [2.0, 0.0]                           # p(ℓ = 1 | x_q) ≈ 3e-9 is clamped to 1e-5
>>> memorizing_probs(x, means, labels, np.zeros(2), 0.5, 2).round(5).tolist()
[[0.99999, 1e-05]]
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesiclError
from ..families import FamilySpec, register_family
from ..tasks.classification import Classification
from .base import in_chunks
from .complexity import weighted_pool
from .loss import checked_outputs

#: docs/model.md#classification-strategies: probabilities are kept in [CLAMP, 1 − CLAMP].
CLAMP = 1e-5

_ELEMENTS_PER_CHUNK = 2**20


def clamp(probs: jax.Array) -> jax.Array:
    """Clamp (..., L) probabilities to [1e-5, 1 − 1e-5]; renormalize when L > 2."""
    clamped = jnp.clip(probs, CLAMP, 1.0 - CLAMP)
    if probs.shape[-1] == 2:
        return clamped
    return clamped / clamped.sum(axis=-1, keepdims=True)


def memorizing_prior(task, pool, probabilities: np.ndarray | None):
    """(means μ (D, d), labels ℓ (D,), log prior (D,)) as JAX arrays (float64, int)."""
    means = jnp.asarray(pool.means, jnp.float64)
    with np.errstate(divide="ignore"):
        log_prior = (np.zeros(means.shape[0]) if probabilities is None else np.log(probabilities))
    return means, jnp.asarray(pool.labels), jnp.asarray(log_prior, jnp.float64)


@partial(jax.jit, static_argnames="num_labels")
def memorizing_probs(x: jax.Array, means: jax.Array, labels: jax.Array, log_prior: jax.Array,
                     within_class_variance: float, num_labels: int) -> jax.Array:
    """M's label probabilities, x (B, T, d), pool (D, d) + labels (D,) → (B, L) float64."""
    eps = within_class_variance
    dims = x.shape[-1]
    query = jnp.sqrt(1.0 + eps) * x[:, -1].astype(jnp.float64)      # (B, d)
    # ‖q − μ_i‖² = ‖q‖² − 2 q·μ_i + ‖μ_i‖²; ‖q‖² is the same for every i and cancels.
    log_density = dims / (2 * eps) * (2 * query @ means.T - (means**2).sum(-1))   # (B, D)
    weights = jax.nn.softmax(log_density + log_prior, axis=-1)
    return clamp(weights @ jax.nn.one_hot(labels, num_labels, dtype=jnp.float64))


@partial(jax.jit, static_argnames="num_labels")
def generalizing_probs(x: jax.Array, labels: jax.Array, within_class_variance: float,
                       num_labels: int) -> jax.Array:
    """G's label probabilities, x (B, T, d), labels (B, T) (last = −1) → (B, L) float64."""
    eps = within_class_variance
    x = x.astype(jnp.float64)
    dims = x.shape[-1]
    scale = dims * (1 + eps) ** 2 / (2 * eps * (2 + eps))
    offsets = x[:, -1:, :] - x[:, :-1, :] / (1 + eps)                 # (B, T−1, d)
    weights = jax.nn.softmax(-scale * (offsets**2).sum(-1), axis=-1)  # (B, T−1)
    context_labels = jax.nn.one_hot(labels[:, :-1], num_labels, dtype=jnp.float64)
    return clamp(jnp.einsum("bj,bjl->bl", weights, context_labels))


def outputs(kind: str, task, prior: Any, batch) -> np.ndarray:
    """Evaluate strategy `kind` on a validated classification batch (see `Strategy.__call__`)."""
    x = np.asarray(batch["x"], dtype=np.float64)
    eps = float(task.within_class_variance)
    num_labels = int(task.num_labels)
    if kind == "memorizing":
        means, labels, log_prior = prior
        chunk = max(1, _ELEMENTS_PER_CHUNK // means.shape[0])
        return in_chunks(lambda a: memorizing_probs(a, means, labels, log_prior, eps, num_labels),
                         (x,), chunk)
    if kind == "generalizing":
        labels = np.asarray(batch["labels"]).astype(np.int32)
        chunk = max(1, _ELEMENTS_PER_CHUNK // (x.shape[1] * x.shape[2]))
        return in_chunks(lambda a, b: generalizing_probs(a, b, eps, num_labels), (x, labels), chunk)
    return np.full((x.shape[0], num_labels), 1.0 / num_labels)


def label_loss(task, log_probs: np.ndarray, batch) -> np.ndarray:
    """The loss of L̄ at the query: −log p̂[target], (n,), from the (n, L) log-probabilities of
    the clamped probabilities (docs/model.md#classification-strategies).

    >>> import bayesicl as bic
    >>> task = bic.task("classification", num_dims=2, context_length=3)
    >>> label_loss(task, np.log([[0.5, 0.5]]), {"target": np.array([1])}).round(4).tolist()
    [0.6931]
    """
    if "target" not in batch:
        raise BayesiclError("classification batch is missing key 'target' (the query label)")
    target = np.asarray(batch["target"])
    if target.ndim != 1 or not np.issubdtype(target.dtype, np.integer) \
            or np.any(target < 0) or np.any(target >= task.num_labels):
        raise BayesiclError(f"classification batch['target'] must be (B,) labels in 0..{task.num_labels - 1}")
    log_probs = checked_outputs(log_probs, (target.shape[0], task.num_labels))
    return -np.take_along_axis(log_probs, target[:, None].astype(np.int64), axis=1)[:, 0]


def prior_parameters(kind: str, task, pool: Any, probabilities: np.ndarray | None, order: None = None, *,
                     paper_compatible: bool = False) -> np.ndarray:
    """What K_data compresses (docs/model.md#complexity): M the pool (D, d + 1) with the labels
    as the last column, G the prior (0, 1/d, ε), C the prediction 1/L (L,); float64.
    `paper_compatible`: G and C as the paper's exemplar prior (mean, variance) = (0, 1/d).

    >>> import bayesicl as bic
    >>> prior_parameters("constant", bic.task("classification", num_dims=2), None, None).tolist()
    [0.5, 0.5]
    """
    d = int(task.num_dims)
    if kind == "memorizing":
        return weighted_pool(np.column_stack([pool.means, pool.labels]), probabilities)
    if paper_compatible:                       # exemplars ~ N(0, (1/d)·I)
        return np.array([0.0, 1.0 / d], dtype="<f8")
    if kind == "generalizing":
        return np.array([0.0, 1.0 / d, float(task.within_class_variance)], dtype="<f8")
    labels = int(getattr(task, "num_labels", 2))
    return np.full(labels, 1.0 / labels, dtype="<f8")    # the one prediction C makes everywhere


#: The classification family (docs/model.md#classification). One scored position (the query),
#: so L̄ takes 50 000 loss sequences. The paper's fit starts at (0.8, 0.12, 1.5). NUTS samples
#: at target acceptance 0.99 (the demo left 16 divergences at 0.95, none at 0.99;
#: docs/decisions.md). The demo fits without run effects: with one run per D, per-run
#: offsets are confounded with D (σ_run ≈ 1.9, 14 divergences, ID correlation 0.90; without
#: them 0 divergences, r̂ 1.005, correlation 0.96; data/README.md).
FAMILY = register_family(FamilySpec(
    "classification", Classification, kernels=sys.modules[__name__], loss=label_loss,
    loss_sequences=50_000, prior_parameters=prior_parameters, output_dims=("label",),
    input_dims={"x": ("item", "dim"), "labels": ("item",), "target": ()},
    pool_dims={"pool_means": ("task", "dim"), "pool_labels": ("task",)},
    paper_start=(0.8, 0.12, 1.5), target_accept=0.99, metrics=("tvd", "agreement", "kl"),
    paper_metrics=("tvd", "agreement"), demo_fit={"effects": "none"}, transformer="query"))
