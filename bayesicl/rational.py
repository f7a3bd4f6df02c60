"""The rational strategy model (docs/model.md#rational-model): posterior weights of the strategies at (D, N).

For strategies s with loss L̄_s(D) (nats per token, docs/model.md#strategy-loss) and complexity K_s(D) (bits,
docs/model.md#complexity), at training step N:

    η_s(N, D) = −γ · N^(1−α) · L̄_s(D) − ln 2 · K_s(D)^β
    w_s(N, D) = softmax_s η_s(N, D)
    h_c       = Σ_s w_s · s          (a mixture of distributions, or an average of predictions)

The log posterior odds of M against G split into the log prior odds −ln 2 (K_M^β − K_G^β)
and the log Bayes factor −γ N^(1−α) (L̄_M − L̄_G). Everything here is a pure JAX function of
arrays that broadcast against each other; the strategy axis S is the last axis of `loss` and
`complexity` (M first, G second), so one call covers every condition of a fit and every
posterior draw (add leading axes).

Ablations (docs/model.md#ablations) are `VARIANTS`: α = 0 (evidence linear in N), β = 1 (complexity enters
linearly), γ = 1, and complexity constant in D (K_s(D) := K_s(D_min)).

>>> import jax.numpy as jnp
>>> eta, w = log_weights((0.6, 0.2, 0.85), loss=jnp.array([0.10, 0.15]),
...                      complexity=jnp.array([4000.0, 200.0]), step=jnp.array([1000.0, 20000.0]))
>>> w[:, 0].round(3).tolist()                # G leads at step 1000, M by step 20000
[0.275, 0.644]
>>> round(float(transition_step(0.6, 0.2, 0.85, 0.10, 0.15, 4000.0, 200.0)))
9266
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import BayesiclError

LN2 = math.log(2.0)
#: log(1e-30): the floor of mixture log-probabilities, as in `bayesicl.observe`.
LOG_FLOOR = math.log(1e-30)
#: The model variants (docs/model.md#ablations) and the parameters each pins; None and
#: "full" are the full model, "constant_complexity" pins nothing (it changes the data:
#: `constant_complexity`). The one table an ablation's name is read from.
ABLATIONS = {"full": {}, "alpha0": {"alpha": 0.0}, "beta1": {"beta": 1.0}, "gamma1": {"gamma": 1.0},
             "constant_complexity": {}}
VARIANTS = tuple(ABLATIONS)
PARAMETERS = ("alpha", "beta", "gamma")


def unpack(params: Any) -> tuple[Any, Any, Any]:
    """(α, β, γ) from a mapping with those keys or a length-3 sequence (arrays broadcast).

    >>> unpack({"alpha": 0.6, "beta": 0.2, "gamma": 0.85})
    (0.6, 0.2, 0.85)
    """
    if isinstance(params, Mapping):
        missing = [k for k in PARAMETERS if k not in params]
        if missing:
            raise BayesiclError(f"strategy-model parameters lack {missing}")
        return params["alpha"], params["beta"], params["gamma"]
    if isinstance(params, Sequence) and len(params) == 3:
        return tuple(params)
    raise BayesiclError("strategy-model parameters must be (alpha, beta, gamma) or a mapping of them")


def _power(base, exponent):
    """base^exponent for base ≥ 0 with a finite gradient at base = 0 (0^e = 0 for e > 0)."""
    base = jnp.asarray(base, dtype=jnp.result_type(float))
    positive = base > 0
    safe = jnp.where(positive, base, 1.0)
    return jnp.where(positive, jnp.exp(exponent * jnp.log(safe)), 0.0)


def evidence_scale(alpha, step):
    """N^(1−α): how much evidence N steps of training carry (sub-linear for α > 0).

    >>> float(evidence_scale(0.5, 100.0))
    10.0
    """
    return _power(step, 1.0 - jnp.asarray(alpha))


def log_weights(params, loss, complexity, step):
    """η_s(N, D) and the strategy weights w_s = softmax_s η_s.

    loss, complexity (..., S) — L̄_s(D) in nats and K_s(D) in bits; step (...) — N.
    params (α, β, γ) broadcast against the leading axes. Returns (η, w), both (..., S).

    >>> eta, w = log_weights((0.5, 1.0, 1.0), jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]), 4.0)
    >>> (eta.round(4).tolist(), w.sum().round(6).tolist())
    ([-2.6931, -4.6931], 1.0)
    """
    alpha, beta, gamma = (jnp.asarray(p) for p in unpack(params))
    loss = jnp.asarray(loss)
    complexity = jnp.asarray(complexity)
    scale = evidence_scale(alpha, jnp.asarray(step))
    eta = (-gamma[..., None] * scale[..., None] * loss
           - LN2 * _power(complexity, beta[..., None]))
    return eta, jax.nn.softmax(eta, axis=-1)


def log_prior_odds(beta, complexity_m, complexity_g):
    """−ln 2 (K_M^β − K_G^β): the log prior odds of M against G (K in bits).

    >>> round(float(log_prior_odds(1.0, 3.0, 1.0)), 4)      # two extra bits: odds 1/4
    -1.3863
    """
    return -LN2 * (_power(complexity_m, beta) - _power(complexity_g, beta))


def log_bayes_factor(alpha, gamma, step, loss_m, loss_g):
    """−γ N^(1−α) (L̄_M − L̄_G): the log Bayes factor of M against G after N steps.

    >>> float(log_bayes_factor(0.5, 2.0, 100.0, 0.1, 0.2))
    2.0
    """
    return -gamma * evidence_scale(alpha, step) * (jnp.asarray(loss_m) - jnp.asarray(loss_g))


def posterior_odds(params, loss, complexity, step, pair: tuple[int, int] = (0, 1)):
    """η_i − η_j = log prior odds + log Bayes factor of strategy i against j (default M vs G).

    loss, complexity (..., S); step (...). Returns (...).

    >>> float(posterior_odds((0.5, 1.0, 2.0), jnp.array([0.1, 0.2]), jnp.array([3.0, 1.0]), 100.0))
    0.6137...
    """
    alpha, beta, gamma = unpack(params)
    i, j = pair
    loss, complexity = jnp.asarray(loss), jnp.asarray(complexity)
    return (log_prior_odds(beta, complexity[..., i], complexity[..., j])
            + log_bayes_factor(alpha, gamma, step, loss[..., i], loss[..., j]))


def transition_step(alpha, beta, gamma, loss_m, loss_g, complexity_m, complexity_g):
    """N*(D): the step where M and G have equal posterior weight (docs/model.md#transition-step).

    With a = ln 2 (K_M^β − K_G^β) and b = γ (L̄_G − L̄_M), the log odds of M are
    b·N^(1−α) − a, so N* = (a / b)^(1/(1−α)) when a and b are non-zero with the same sign
    (both positive: G gives way to M at N*; both negative: M gives way to G). Otherwise there
    is no crossing: N* = 0 when M wins at every N > 0, ∞ when G does, NaN when a = b = 0.

    >>> float(transition_step(0.5, 1.0, 1.0, 0.1, 0.2, 2.0, 1.0))       # (ln 2 / 0.1)²
    48.0453...
    >>> [float(transition_step(0.5, 1.0, 1.0, lm, 0.2, km, 1.0)) for lm, km in
    ...  [(0.1, 0.5), (0.3, 2.0), (0.3, 0.5)]]                    # M always, G always, M → G
    [0.0, inf, 12.0113...]
    """
    a = LN2 * (_power(complexity_m, beta) - _power(complexity_g, beta))
    b = jnp.asarray(gamma) * (jnp.asarray(loss_g) - jnp.asarray(loss_m))
    same_sign = (a * b) > 0
    ratio = jnp.where(same_sign, a / jnp.where(same_sign, b, 1.0), 1.0)
    crossing = jnp.exp(jnp.log(ratio) / (1.0 - jnp.asarray(alpha)))
    m_always = ((a <= 0) & (b >= 0)) & ~((a == 0) & (b == 0))
    g_always = ((a >= 0) & (b <= 0)) & ~((a == 0) & (b == 0))
    return jnp.where(same_sign, crossing,
                     jnp.where(m_always, 0.0, jnp.where(g_always, jnp.inf, jnp.nan)))


def transition_direction(beta, complexity_m, complexity_g, loss_m, loss_g) -> np.ndarray:
    """Which way the crossing goes: "G→M" (generalize, then memorize), "M→G", or the winner
    at every step ("M", "G"), or "tie"; a NumPy array of strings.

    >>> transition_direction(0.5, 4.0, 1.0, 0.1, 0.2).tolist()
    'G→M'
    """
    a = np.asarray(LN2 * (np.asarray(complexity_m, float) ** beta - np.asarray(complexity_g, float) ** beta))
    b = np.asarray(loss_g, float) - np.asarray(loss_m, float)
    a, b = np.broadcast_arrays(a, b)
    out = np.full(a.shape, "tie", dtype=object)
    out[(a > 0) & (b > 0)] = "G→M"
    out[(a < 0) & (b < 0)] = "M→G"
    out[((a <= 0) & (b >= 0)) & ~((a == 0) & (b == 0))] = "M"
    out[((a >= 0) & (b <= 0)) & ~((a == 0) & (b == 0))] = "G"
    return out


def pairwise_transition_steps(alpha, beta, gamma, loss, complexity):
    """N* for every ordered pair (i, j) of S strategies: where w_i = w_j (docs/model.md#transition-step).

    loss, complexity (..., S) → (..., S, S); entry [i, j] treats i as "M" and j as "G"
    (the two weights are equal there whatever the others do); the diagonal is NaN.

    >>> steps = pairwise_transition_steps(0.5, 1.0, 1.0, jnp.array([0.1, 0.2, 0.4]),
    ...                                   jnp.array([2.0, 1.0, 0.5]))
    >>> steps.shape, bool(jnp.isnan(steps[0, 0])), round(float(steps[0, 1]), 2)
    ((3, 3), True, 48.05)
    """
    loss, complexity = jnp.asarray(loss), jnp.asarray(complexity)
    steps = transition_step(jnp.asarray(alpha)[..., None, None], jnp.asarray(beta)[..., None, None],
                            jnp.asarray(gamma)[..., None, None], loss[..., :, None], loss[..., None, :],
                            complexity[..., :, None], complexity[..., None, :])
    size = loss.shape[-1]
    return jnp.where(jnp.eye(size, dtype=bool), jnp.nan, steps)


def interpolate(weights, strategy_outputs, kind: str):
    """h_c = Σ_s w_s · s: the strategy model's output (docs/model.md#rational-model).

    weights (..., S); strategy_outputs (..., S, B, P, O) — normalized log-probabilities
    (kind "log_probs": h is the mixture of the probabilities, returned as log-probabilities
    floored at log 1e-30) or predictions (kind "predictions": their weighted average).
    Returns (..., B, P, O).

    >>> s = jnp.log(jnp.array([[[[0.9, 0.1]]], [[[0.1, 0.9]]]]))      # (S, B, P, O) = (2, 1, 1, 2)
    >>> jnp.exp(interpolate(jnp.array([0.25, 0.75]), s, "log_probs")).round(3).tolist()
    [[[0.3, 0.7]]]
    """
    weights = jnp.asarray(weights)[..., None, None, None]
    outputs = jnp.asarray(strategy_outputs)
    if kind == "predictions":
        return jnp.sum(weights * outputs, axis=-4)
    if kind == "log_probs":
        shape = jnp.broadcast_shapes(weights.shape, outputs.shape)
        mixture = jax.nn.logsumexp(jnp.broadcast_to(outputs, shape), axis=-4, b=jnp.broadcast_to(weights, shape))
        return jnp.maximum(mixture, LOG_FLOOR)
    raise BayesiclError(f"unknown output kind {kind!r}; expected 'log_probs' or 'predictions'")


# -- ablations --------------------------------------------------------------------------------------

def check_variant(variant: str | None) -> str:
    """The canonical name of a model variant (None → "full"); refuses unknown names.

    >>> check_variant(None), check_variant("alpha0")
    ('full', 'alpha0')
    """
    name = "full" if variant is None else str(variant)
    if name not in VARIANTS:
        raise BayesiclError(f"unknown model variant {variant!r}; known: {', '.join(VARIANTS)}")
    return name


def ablation(variant: str | None) -> dict[str, float]:
    """The parameters a model variant pins, {name: value} (empty for the full model and for
    "constant_complexity"): what the fits pin with NumPyro handlers
    (`bayesicl.inference.model.pin`).

    >>> ablation("gamma1"), ablation(None)
    ({'gamma': 1.0}, {})
    """
    return dict(ABLATIONS[check_variant(variant)])


def variant_params(params, variant: str | None) -> tuple[Any, Any, Any]:
    """(α, β, γ) with the variant's pinned parameter set (α = 0, β = 1 or γ = 1).

    >>> variant_params((0.6, 0.2, 0.85), "beta1")
    (0.6, 1.0, 0.85)
    """
    values = {**dict(zip(PARAMETERS, unpack(params))), **ablation(variant)}
    return values["alpha"], values["beta"], values["gamma"]


def constant_complexity(complexity: np.ndarray, diversity: np.ndarray) -> np.ndarray:
    """K_s(D) := K_s(D_min) for every row: the "constant_complexity" ablation.

    complexity (n, S) with the diversity of each row in `diversity` (n,). Returns (n, S).

    >>> constant_complexity(np.array([[10.0, 1.0], [40.0, 1.0]]), np.array([4, 16])).tolist()
    [[10.0, 1.0], [10.0, 1.0]]
    """
    complexity = np.asarray(complexity, dtype=np.float64)
    smallest = int(np.argmin(np.asarray(diversity)))
    return np.broadcast_to(complexity[smallest], complexity.shape).copy()
