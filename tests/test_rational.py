"""The rational strategy model (docs/model.md#rational-model): weights, posterior odds, transition steps, mixtures."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesicl  # noqa: F401  (enables float64)
from bayesicl import rational
from bayesicl.errors import BayesiclError


def numpy_weights(alpha, beta, gamma, loss, complexity, step):
    """w_s = softmax_s(−γ N^(1−α) L̄_s − ln2 K_s^β), written out in float64 NumPy."""
    eta = (-gamma * np.asarray(step, float)[..., None] ** (1 - alpha) * np.asarray(loss, float)
           - math.log(2) * np.asarray(complexity, float) ** beta)
    eta = eta - eta.max(axis=-1, keepdims=True)
    return np.exp(eta) / np.exp(eta).sum(axis=-1, keepdims=True)


def random_terms(rng, size, strategies=2):
    loss = rng.uniform(0.02, 0.3, size=(size, strategies))
    complexity = rng.uniform(100.0, 1e5, size=(size, strategies))
    return loss, complexity


def test_weights_are_the_softmax_of_evidence_and_complexity():
    rng = np.random.default_rng(0)
    loss, complexity = random_terms(rng, 50, strategies=3)
    step = rng.uniform(1.0, 1e5, size=50)
    eta, w = rational.log_weights((0.6, 0.2, 0.85), loss, complexity, step)
    np.testing.assert_allclose(np.asarray(w), numpy_weights(0.6, 0.2, 0.85, loss, complexity, step), rtol=1e-12)
    expected_eta = -0.85 * step[:, None] ** 0.4 * loss - math.log(2) * complexity ** 0.2
    np.testing.assert_allclose(np.asarray(eta), expected_eta, rtol=1e-12)


def test_weights_broadcast_over_parameter_draws():
    rng = np.random.default_rng(1)
    loss, complexity = random_terms(rng, 7)
    step = rng.uniform(10, 1000, size=7)
    alphas = np.array([0.3, 0.6, 0.9])
    _, w = rational.log_weights((alphas[:, None], np.full((3, 1), 0.3), np.full((3, 1), 2.0)), loss, complexity, step)
    assert w.shape == (3, 7, 2)
    for k, a in enumerate(alphas):
        np.testing.assert_allclose(np.asarray(w[k]), numpy_weights(a, 0.3, 2.0, loss, complexity, step), rtol=1e-12)


def test_posterior_odds_split_into_prior_odds_and_bayes_factor():
    rng = np.random.default_rng(2)
    loss, complexity = random_terms(rng, 20)
    step = rng.uniform(1, 1e5, 20)
    params = (0.55, 0.25, 1.3)
    odds = np.asarray(rational.posterior_odds(params, loss, complexity, step))
    w = numpy_weights(*params, loss, complexity, step)
    np.testing.assert_allclose(odds, np.log(w[:, 0] / w[:, 1]), rtol=1e-9, atol=1e-9)
    prior = -math.log(2) * (complexity[:, 0] ** 0.25 - complexity[:, 1] ** 0.25)
    bayes = -1.3 * step ** 0.45 * (loss[:, 0] - loss[:, 1])
    np.testing.assert_allclose(np.asarray(rational.log_prior_odds(0.25, complexity[:, 0], complexity[:, 1])),
                               prior, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(rational.log_bayes_factor(0.55, 1.3, step, loss[:, 0], loss[:, 1])),
                               bayes, rtol=1e-12)


def crossing_step(params, loss, complexity, low=1e-6, high=1e30):
    """Where w_M = 1/2, by bisection in log N on the NumPy weights (assumes one crossing)."""
    sign = lambda n: numpy_weights(*params, loss, complexity, np.array(n))[0] - 0.5  # noqa: E731
    a, b = math.log(low), math.log(high)
    assert sign(math.exp(a)) * sign(math.exp(b)) < 0
    for _ in range(200):
        mid = 0.5 * (a + b)
        if sign(math.exp(a)) * sign(math.exp(mid)) <= 0:
            b = mid
        else:
            a = mid
    return math.exp(0.5 * (a + b))


def test_transition_step_is_where_the_memorizing_weight_crosses_one_half():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(40):
        alpha, beta, gamma = rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.6), math.exp(rng.uniform(-3, 3))
        loss = np.sort(rng.uniform(0.02, 0.3, 2))               # M explains the data better ...
        complexity = np.sort(rng.uniform(100, 1e5, 2))[::-1]     # ... but is more complex
        n_star = float(rational.transition_step(alpha, beta, gamma, loss[0], loss[1], complexity[0], complexity[1]))
        if not 1e-6 < n_star < 1e30:
            continue
        found = crossing_step((alpha, beta, gamma), loss, complexity)
        assert n_star == pytest.approx(found, rel=0.01)
        before = numpy_weights(alpha, beta, gamma, loss, complexity, np.array(n_star / 2))[0]
        after = numpy_weights(alpha, beta, gamma, loss, complexity, np.array(n_star * 2))[0]
        assert before < 0.5 < after                              # G gives way to M
        checked += 1
    assert checked >= 20


def test_transition_step_sign_cases():
    alpha, beta, gamma = 0.5, 0.5, 1.0
    steps = np.geomspace(1e-3, 1e9, 200)

    def weight_m(loss, complexity):
        return numpy_weights(alpha, beta, gamma, np.broadcast_to(loss, (200, 2)),
                             np.broadcast_to(complexity, (200, 2)), steps)[:, 0]

    # Both differences negative: M is simpler but fits worse, so M gives way to G at N*.
    loss, complexity = np.array([0.3, 0.1]), np.array([100.0, 900.0])
    n_star = float(rational.transition_step(alpha, beta, gamma, *loss, *complexity))
    assert n_star == pytest.approx(crossing_step((alpha, beta, gamma), loss, complexity), rel=0.01)
    assert numpy_weights(alpha, beta, gamma, loss, complexity, np.array(n_star / 2))[0] > 0.5
    assert rational.transition_direction(beta, complexity[0], complexity[1], loss[0], loss[1]).item() == "M→G"
    # M simpler and better: it wins at every step, N* = 0.
    loss, complexity = np.array([0.1, 0.3]), np.array([100.0, 900.0])
    assert float(rational.transition_step(alpha, beta, gamma, *loss, *complexity)) == 0.0
    assert np.all(weight_m(loss, complexity) > 0.5)
    # M more complex and worse: G wins at every step, N* = ∞.
    loss, complexity = np.array([0.3, 0.1]), np.array([900.0, 100.0])
    assert float(rational.transition_step(alpha, beta, gamma, *loss, *complexity)) == math.inf
    assert np.all(weight_m(loss, complexity) < 0.5)
    # Equal complexity, M better: M wins from the first step (N* = 0); equal everything: NaN.
    assert float(rational.transition_step(alpha, beta, gamma, 0.1, 0.3, 500.0, 500.0)) == 0.0
    assert math.isnan(float(rational.transition_step(alpha, beta, gamma, 0.2, 0.2, 500.0, 500.0)))
    # Equal loss, M more complex: G forever.
    assert float(rational.transition_step(alpha, beta, gamma, 0.2, 0.2, 900.0, 100.0)) == math.inf


def test_pairwise_transition_steps_equalize_each_pair_of_weights():
    loss = np.array([0.05, 0.15, 0.3])
    complexity = np.array([5000.0, 800.0, 50.0])
    params = (0.6, 0.3, 1.0)
    steps = np.asarray(rational.pairwise_transition_steps(*params, loss, complexity))
    assert np.isnan(np.diag(steps)).all()
    for i in range(3):
        for j in range(3):
            if i != j and np.isfinite(steps[i, j]) and steps[i, j] > 0:
                w = numpy_weights(*params, loss, complexity, np.array(steps[i, j]))
                assert w[i] == pytest.approx(w[j], rel=1e-6)
    np.testing.assert_allclose(steps[0, 1], float(rational.transition_step(*params, loss[0], loss[1],
                                                                           complexity[0], complexity[1])))


def test_interpolate_mixes_probabilities_and_averages_predictions():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(5), size=(3, 4, 6))                    # (S, B, P, O)
    w = rng.dirichlet(np.ones(3), size=2)                                # two conditions
    h = np.exp(np.asarray(rational.interpolate(w, np.log(probs)[None], "log_probs")))
    np.testing.assert_allclose(h, np.einsum("cs,sbpo->cbpo", w, probs), rtol=1e-10)
    predictions = rng.standard_normal((3, 4, 6, 1))
    avg = np.asarray(rational.interpolate(w, predictions[None], "predictions"))
    np.testing.assert_allclose(avg, np.einsum("cs,sbpo->cbpo", w, predictions), rtol=1e-12)
    with pytest.raises(BayesiclError):
        rational.interpolate(w, predictions[None], "logits")


def test_ablations_pin_parameters_and_freeze_complexity():
    assert rational.variant_params((0.6, 0.2, 0.85), "alpha0") == (0.0, 0.2, 0.85)
    assert rational.variant_params((0.6, 0.2, 0.85), "gamma1") == (0.6, 0.2, 1.0)
    assert rational.variant_params((0.6, 0.2, 0.85), None) == (0.6, 0.2, 0.85)
    with pytest.raises(BayesiclError):
        rational.check_variant("delta0")
    # α = 0: the log Bayes factor is linear in N.
    factor = np.asarray(rational.log_bayes_factor(0.0, 2.0, np.array([10.0, 20.0, 40.0]), 0.1, 0.2))
    np.testing.assert_allclose(factor, [2.0, 4.0, 8.0])
    frozen = rational.constant_complexity(np.array([[30.0, 1.0], [10.0, 1.0], [90.0, 1.0]]), np.array([16, 4, 64]))
    np.testing.assert_array_equal(frozen, [[10.0, 1.0]] * 3)


def test_gradients_are_finite_at_step_zero_and_at_zero_complexity():
    def total(p):
        _, w = rational.log_weights(p, jnp.array([[0.1, 0.2]]), jnp.array([[0.0, 10.0]]), jnp.array([0.0]))
        return w[0, 0]

    grad = jax.grad(lambda p: total((p[0], p[1], p[2])))(jnp.array([0.5, 0.3, 1.0]))
    assert np.all(np.isfinite(np.asarray(grad)))
