"""Markov-chain strategies (docs/model.md, "Markov chains"): four next-state predictors.

`tokens` is (B, T+1) with the start token (id V) first; row t (t = 0..T−1) of every output
predicts x_{t+1} from x_1..x_t. With n_t(u→v) = #{k < t : x_k = u, x_{k+1} = v} (transitions
seen before row t) and c_t(v) = #{k ≤ t : x_k = v} (states seen up to x_t):

- M2 (memorizing, bigram, `order=2`): posterior over the D pool chains,
  log π_i(t) = log p_i + Σ_{u,v} n_t(u→v) log P_i[u, v] − logsumexp; row t = Σ_i π_i P_i[x_t].
  float32 scan over positions carrying the log-weights (B, D), re-centred on their maximum.
- G2 (generalizing, bigram): (n_t(x_t→v) + 1) / (n_t(x_t→·) + V), the Dirichlet(1) posterior
  mean of row x_t, exact under the uniform start. float64.
- M1 (memorizing, unigram, `order=1`): s_i = the stationary distribution of P_i (float64);
  log ρ_i(t) = log p_i + Σ_v c_t(v) log s_i[v] − logsumexp; row t = Σ_i ρ_i s_i (row 0 is the
  prior mean). The urns M kernel with the urns θ_i replaced by s_i.
- G1 (generalizing, unigram): (c_t(v) + 1) / (t + V), the urns G kernel with a = 1.
- C (constant): 1/V.

M1 and G1 ignore the order of the states (they are misspecified on purpose: what a network
that only counts states would do). Row 0 has no previous state: it is 1/V for M2, G2, G1 and C,
the prior mean of the s_i for M1, and is never scored. The per-position loss of L̄ is
KL(P[x_t] ‖ p̂_t) on rows 1..T−1 (`transition_kl`).

>>> import numpy as np
>>> pool = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.1, 0.9], [0.9, 0.1]]])   # sticky, flipping
>>> tokens = np.array([[2, 0, 0, 0]])
>>> probs = outputs("memorizing", None, memorizing_prior(None, pool, None, order=2),
...                 {"tokens": tokens}, order=2)
>>> probs[0, :, 0].round(4).tolist()      # 1/V, the prior mix of row 0, then the sticky chain
[0.5, 0.5, 0.82]
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
from ..tasks.markov import Markov
from . import urns
from .base import in_chunks

#: The strategy orders of this family: 1 (unigram statistics) and 2 (bigram, transitions).
ORDERS = (1, 2)
#: `memorizing(task, pool)` and `generalizing(task)` without an order are the bigram pair.
DEFAULT_ORDER = 2
#: The four strategies the fit uses by default, bigram pair first (the r of docs/model.md is
#: then M2 vs G2).
DEFAULT_STRATEGIES = ("M2", "G2", "M1", "G1")

#: Sums of the four convex weights this family reports: w_mem = w_M1 + w_M2 (memorizing,
#: either statistic) and w_bigram = w_M2 + w_G2 (transition statistics, either prior).
WEIGHT_GROUPS = {"w_mem": ("M1", "M2"), "w_bigram": ("M2", "G2")}

#: log P is floored here so that a chain with P[u, v] = 0 gets a large finite penalty.
LOG_PARAMETER_FLOOR = urns.LOG_PARAMETER_FLOOR
#: Sequences per M2 kernel call ≈ this / D, so the (chunk, D) float32 state stays small.
_MEMORIZING_ELEMENTS_PER_CHUNK = 2**19
#: Sequences per G2 kernel call ≈ this / (T · V²) (the running transition counts, float64).
_COUNT_ELEMENTS_PER_CHUNK = 2**22


def stationary_distributions(pool: np.ndarray) -> np.ndarray:
    """s_i with s_i P_i = s_i, Σ_v s_i[v] = 1, for every chain of a (D, V, V) pool; float64.

    Solved as one batched linear system: (P_iᵀ − I) s = 0 with its last equation replaced by
    Σ_v s_v = 1 (unique for an irreducible chain, which Dirichlet(1) rows are almost surely).

    >>> stationary_distributions(np.array([[[0.5, 0.5], [0.25, 0.75]]])).round(4).tolist()
    [[0.3333, 0.6667]]
    """
    pool = np.asarray(pool, dtype=np.float64)
    V = pool.shape[-1]
    system = np.swapaxes(pool, -1, -2) - np.eye(V)
    system[..., -1, :] = 1.0
    rhs = np.zeros(pool.shape[:-1])
    rhs[..., -1] = 1.0
    s = np.linalg.solve(system, rhs[..., None])[..., 0]
    return np.clip(s, 0.0, None) / np.clip(s, 0.0, None).sum(axis=-1, keepdims=True)


def memorizing_prior(task, pool: np.ndarray, probabilities: np.ndarray | None, *, order: int):
    """The memorizing prior in kernel form: M2 (log P (V·V + 1, D), P (D, V·V), log prior (D,))
    with a zero row appended to log P for "no transition yet"; M1 the urns arrays of the
    stationary distributions (log s (D, V), log prior (D,)). float32."""
    pool = np.asarray(pool, dtype=np.float64)
    if order == 1:
        return urns.memorizing_prior_arrays(stationary_distributions(pool), probabilities)
    D, V = pool.shape[:2]
    with np.errstate(divide="ignore"):
        log_pool = np.maximum(np.log(pool), LOG_PARAMETER_FLOOR).reshape(D, V * V)
        log_prior = (np.zeros(D) if probabilities is None
                     else np.maximum(np.log(probabilities), LOG_PARAMETER_FLOOR))
    log_transition = np.concatenate([log_pool.T, np.zeros((1, D))])         # (V·V + 1, D)
    return (jnp.asarray(log_transition, jnp.float32), jnp.asarray(pool.reshape(D, V * V), jnp.float32),
            jnp.asarray(log_prior, jnp.float32))


@jax.jit
def bigram_memorizing_probs(tokens: jax.Array, log_transition: jax.Array, pool_rows: jax.Array,
                            log_prior: jax.Array) -> jax.Array:
    """M2's predictive distributions, (B, T+1) tokens → (B, T, V) float32.

    `log_transition` (V·V + 1, D): row u·V + v is log P_·[u, v], the last row zeros;
    `pool_rows` (D, V·V): P_i flattened; `log_prior` (D,).
    """
    x = tokens[:, 1:]                                                      # x_1..x_T, (B, T)
    B, T = x.shape
    num_states = int(round(pool_rows.shape[1] ** 0.5))                   # static: from a shape
    # The transition that enters before row t (x_{t−1} → x_t) for t = 1..T−1; none at t = 1.
    no_transition = jnp.full((B, 1), log_transition.shape[0] - 1, dtype=x.dtype)
    entering = jnp.concatenate([no_transition, x[:, :-2] * num_states + x[:, 1:-1]], axis=1)  # (B, T−1)

    def step(log_weights, inputs):
        pair, state = inputs
        log_weights = log_weights + log_transition[pair]                  # (B, D)
        log_weights = log_weights - log_weights.max(axis=-1, keepdims=True)
        # exp ≤ 1 cannot overflow; every chain's row P_i[x_t] sums to 1, so the row sum of the
        # mixture is the normalizer.
        mixture = (jnp.exp(log_weights) @ pool_rows).reshape(B, num_states, num_states)
        row = jnp.take_along_axis(mixture, state[:, None, None], axis=1)[:, 0]   # (B, V)
        return log_weights, row / row.sum(axis=-1, keepdims=True)

    start = jnp.broadcast_to(log_prior - log_prior.max(), (B, log_prior.shape[0]))
    _, rows = jax.lax.scan(step, start, (entering.T, x[:, :-1].T))        # (T−1, B, V)
    first = jnp.full((B, 1, num_states), 1.0 / num_states, dtype=rows.dtype)
    return jnp.concatenate([first, jnp.swapaxes(rows, 0, 1)], axis=1)


@partial(jax.jit, static_argnames="num_states")
def bigram_generalizing_probs(tokens: jax.Array, num_states: int) -> jax.Array:
    """G2's Dirichlet(1) posterior means of row x_t, (B, T+1) tokens → (B, T, V) float64."""
    x = tokens[:, 1:]
    V = num_states
    B, T = x.shape
    # Transition k (x_k → x_{k+1}, k = 1..T−2) is counted from row k + 1 on.
    seen = jax.nn.one_hot(x[:, :-2] * V + x[:, 1:-1], V * V, dtype=jnp.float64)    # (B, T−2, V²)
    counts = jnp.cumsum(seen, axis=1).reshape(B, T - 2, V, V)
    counts = jnp.concatenate([jnp.zeros((B, 2, V, V)), counts], axis=1)[:, :T]     # before row t
    row = jnp.take_along_axis(counts[:, 1:], x[:, :-1, None, None], axis=2)[:, :, 0]  # (B, T−1, V)
    probs = (row + 1.0) / (row.sum(axis=-1, keepdims=True) + V)
    return jnp.concatenate([jnp.full((B, 1, V), 1.0 / V), probs], axis=1)


def outputs(kind: str, task, prior: Any, batch, *, order: int | None = None) -> np.ndarray:
    """Evaluate strategy `kind` of `order` on a validated markov batch (see `Strategy.__call__`)."""
    tokens = np.asarray(batch["tokens"]).astype(np.int32)
    if kind == "memorizing" and order == 1:
        log_s, log_prior = prior
        chunk = max(1, _MEMORIZING_ELEMENTS_PER_CHUNK // log_s.shape[0])
        return in_chunks(lambda t: urns.memorizing_probs(t, log_s, log_prior), (tokens,), chunk)
    if kind == "memorizing":
        log_transition, pool_rows, log_prior = prior
        chunk = max(1, _MEMORIZING_ELEMENTS_PER_CHUNK // pool_rows.shape[0])
        return in_chunks(lambda t: bigram_memorizing_probs(t, log_transition, pool_rows, log_prior),
                         (tokens,), chunk)
    V = int(task.num_dims)
    if kind == "generalizing" and order == 1:
        return np.array(urns.generalizing_probs(tokens, V, 1.0))
    if kind == "generalizing":
        chunk = max(1, _COUNT_ELEMENTS_PER_CHUNK // (tokens.shape[1] * V * V))
        return in_chunks(lambda t: bigram_generalizing_probs(t, V), (tokens,), chunk)
    return np.full((tokens.shape[0], task.context_length, V), 1.0 / V)


def prior_parameters(kind: str, task, pool: Any, probabilities: np.ndarray | None,
                     order: int | None, *, paper_compatible: bool = False) -> np.ndarray:
    """What K_data compresses (float64, C order): M2 the pool (D, V·V), M1 the stationary
    distributions (D, V) (each with the prior weights as a last column when weighted), G2 the
    Dirichlet concentrations (V, V) of ones, G1 (V,) of ones, C the prediction 1/V (V,). The
    paper has no markov family: `paper_compatible` changes nothing.

    >>> import bayesicl as bic
    >>> task = bic.task("markov", num_states=2, context_length=4)
    >>> prior_parameters("generalizing", task, None, None, 1).tolist()
    [1.0, 1.0]
    """
    V = int(task.num_dims)
    if kind == "memorizing":
        pool = np.asarray(pool, dtype=np.float64)
        table = stationary_distributions(pool) if order == 1 else pool.reshape(len(pool), V * V)
        if probabilities is not None:
            table = np.column_stack([table, np.asarray(probabilities, dtype=np.float64)])
        return np.ascontiguousarray(table, dtype="<f8")
    if kind == "generalizing":
        return np.ones((V, V) if order == 2 else (V,), dtype="<f8")
    return np.full(V, 1.0 / V, dtype="<f8")


def transition_kl(task, log_probs: np.ndarray, batch) -> np.ndarray:
    """KL(P[x_t] ‖ p̂_t) at the scored rows t = 1..T−1, (B, T−1), from (B, T, V) log-probs and
    the generating chains batch["transitions"] (B, V, V).

    >>> import bayesicl as bic
    >>> task = bic.task("markov", num_states=2, context_length=3)
    >>> batch = {"tokens": [[2, 0, 1, 1]], "transitions": [[[0.5, 0.5], [0.5, 0.5]]]}
    >>> transition_kl(task, np.log(np.full((1, 3, 2), 0.5)), batch).tolist()
    [[0.0, 0.0]]
    """
    x = np.asarray(batch["tokens"])[:, 1:]
    V = int(task.num_dims)
    if "transitions" not in batch:
        raise BayesiclError("markov batch is missing key 'transitions' (the generating chains), "
                            "which the strategy loss needs (batches from task.sample carry it)")
    P = np.asarray(batch["transitions"], dtype=np.float64)
    if P.shape != (x.shape[0], V, V):
        raise BayesiclError(f"markov batch['transitions'] has shape {P.shape}, expected ({x.shape[0]}, {V}, {V})")
    truth = np.take_along_axis(P, x[:, :-1, None].astype(np.int64), axis=1)      # P[x_t], (B, T−1, V)
    return (xlogy(truth, truth) - truth * log_probs[:, 1:]).sum(axis=-1)


#: The markov family (docs/model.md, "Markov chains"): row 0 has no previous state and is never
#: scored. The fit starts where urns' does. The demo fits without run effects: with one run
#: per diversity and four strategies, per-run log-odds offsets are confounded with D itself
#: (measured: σ_run ≈ 2.2, 43 divergences, r̂ 1.02).
FAMILY = register_family(FamilySpec(
    "markov", Markov, kernels=sys.modules[__name__], loss=transition_kl,
    prior_parameters=prior_parameters, output_dims=("position", "token"),
    input_dims={"tokens": ("slot",)}, first_scored_row=1, orders=ORDERS, default_order=DEFAULT_ORDER,
    default_strategies=DEFAULT_STRATEGIES, weight_groups=WEIGHT_GROUPS, demo_fit={"effects": "none"},
    transformer="tokens"))
