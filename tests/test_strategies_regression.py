"""Regression strategies (docs/model.md#regression-strategies) agree with brute-force float64 Bayes rules.

Tolerance 1e-5·(1 + |ŷ|): the strategies compute in float64. The ridge reference uses the
Gaussian posterior-mean formula Σ Xᵀy/σ², Σ = (I + XᵀX/σ²)⁻¹, re-solved at every position.
"""

import numpy as np
import pytest

import bayesicl as bic


def brute_force_memorizing(x, y, pool, noise_variance, prior=None):
    num_tasks = pool.shape[0]
    prior = np.full(num_tasks, 1.0 / num_tasks) if prior is None else prior
    out = np.empty(y.shape)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            log_post = np.empty(num_tasks)
            for i in range(num_tasks):
                residuals = [(y[b, k] - pool[i] @ x[b, k]) ** 2 for k in range(t)]
                log_post[i] = np.log(prior[i]) - sum(residuals) / (2 * noise_variance)
            post = np.exp(log_post - log_post.max())
            post /= post.sum()
            out[b, t] = sum(post[i] * (pool[i] @ x[b, t]) for i in range(num_tasks))
    return out


def brute_force_posterior_mean(x, y, noise_variance):
    out = np.empty(y.shape)
    d = x.shape[2]
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            inputs, targets = x[b, :t], y[b, :t]
            covariance = np.linalg.inv(np.eye(d) + inputs.T @ inputs / noise_variance)
            out[b, t] = (covariance @ inputs.T @ targets / noise_variance) @ x[b, t]
    return out


def assert_close_predictions(actual, expected):
    assert actual.shape == expected.shape
    assert np.all(np.abs(actual - expected) <= 1e-5 * (1 + np.abs(expected)))


@pytest.mark.parametrize("d, context_length, diversity", [(2, 5, 3), (8, 16, 32)])
def test_memorizing_is_the_discrete_mmse_predictor(d, context_length, diversity):
    task = bic.task("regression", num_dims=d, context_length=context_length)
    pool = task.pool(diversity, seed=1)
    m = bic.strategies.memorizing(task, pool)
    for batch in (task.sample(pool, 3, seed=2), task.sample(task.ood_pool(seed=2), 3, seed=2)):
        expected = brute_force_memorizing(batch["x"], batch["y"], pool, task.noise_variance)
        assert_close_predictions(m(batch), expected)


def test_memorizing_with_zipf_prior_uses_the_sampling_distribution():
    task = bic.task("regression", num_dims=3, context_length=6)
    pool = task.pool(7, seed=3)
    batch = task.sample(pool, 4, seed=1, zipf=2.0)
    p = np.arange(1, 8, dtype=np.float64) ** -2.0
    p /= p.sum()
    predictions = bic.strategies.memorizing(task, pool, zipf=2.0)(batch)
    assert_close_predictions(predictions, brute_force_memorizing(batch["x"], batch["y"], pool,
                                                                 task.noise_variance, prior=p))
    np.testing.assert_allclose(predictions[:, 0], batch["x"][:, 0] @ (p @ pool), atol=1e-12)


def test_memorizing_is_accurate_and_finite_at_d4096():
    task = bic.task("regression", num_dims=8, context_length=64)
    pool = task.pool(4096, seed=4)
    batch = {k: np.concatenate([v, w]) for (k, v), w in zip(
        task.sample(pool, 1, seed=5).items(), task.sample(task.ood_pool(seed=5), 1, seed=5).values())}
    predictions = bic.strategies.memorizing(task, pool)(batch)
    assert np.all(np.isfinite(predictions))
    expected = np.empty((2, 64))
    for b in range(2):  # the same rule, vectorized over the 4096 weight vectors
        for t in range(64):
            residuals = batch["y"][b, :t, None] - batch["x"][b, :t] @ pool.T      # (t, D)
            log_post = -(residuals**2).sum(axis=0) / (2 * task.noise_variance)
            post = np.exp(log_post - log_post.max())
            expected[b, t] = post @ (pool @ batch["x"][b, t]) / post.sum()
    assert_close_predictions(predictions, expected)


@pytest.mark.parametrize("d, context_length", [(2, 6), (8, 16), (8, 64)])
def test_generalizing_is_the_gaussian_posterior_mean(d, context_length):
    task = bic.task("regression", num_dims=d, context_length=context_length)
    batch = task.sample(task.ood_pool(seed=0), 4, seed=3)
    predictions = bic.strategies.generalizing(task)(batch)
    assert_close_predictions(predictions, brute_force_posterior_mean(batch["x"], batch["y"],
                                                                     task.noise_variance))
    np.testing.assert_array_equal(predictions[:, 0], 0.0)


def test_generalizing_is_finite_at_t384():
    task = bic.task("regression", num_dims=8, context_length=384)
    batch = task.sample(task.ood_pool(seed=0), 2, seed=1)
    predictions = bic.strategies.generalizing(task)(batch)
    assert np.all(np.isfinite(predictions))
    # With 383 pairs the posterior mean has found w: the prediction error is near the noise.
    assert np.abs(predictions[:, -1] - np.einsum("bd,bd->b", batch["x"][:, -1], batch["w"])).max() < 0.1


def test_constant_predicts_zero():
    task = bic.task("regression", num_dims=4, context_length=5)
    batch = task.sample(task.pool(4, seed=0), 3, seed=0)
    np.testing.assert_array_equal(bic.strategies.constant(task)(batch), np.zeros((3, 5)))


def test_regression_strategies_have_no_log_probabilities():
    task = bic.task("regression", num_dims=4, context_length=5)
    batch = task.sample(task.pool(4, seed=0), 3, seed=0)
    with pytest.raises(ValueError, match="predictions, not probabilities"):
        bic.strategies.generalizing(task).log_probs(batch)
