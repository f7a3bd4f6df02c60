"""Urns strategies (docs/model.md#urns-strategies) agree with a brute-force float64 Bayes rule.

The references below recompute each posterior from scratch at every position with Python
loops over sequences and positions and NumPy over the pool, sharing no code with the package.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import bayesicl as bic


def brute_force_memorizing(tokens, pool, prior=None):
    """Σ_i π_i(t) θ_i with π_i(t) ∝ p_i Π_{k≤t} θ_i[x_k], recomputed from the counts at each t."""
    tokens = np.asarray(tokens)
    pool = np.asarray(pool, dtype=np.float64)
    num_tasks, d = pool.shape
    prior = np.full(num_tasks, 1.0 / num_tasks) if prior is None else np.asarray(prior)
    out = np.empty((tokens.shape[0], tokens.shape[1] - 1, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pool = np.log(pool)
        for b in range(tokens.shape[0]):
            for t in range(tokens.shape[1] - 1):
                counts = np.bincount(tokens[b, 1:t + 1], minlength=d).astype(np.float64)
                log_post = np.log(prior) + np.array(
                    [sum(c * log_pool[i, v] for v, c in enumerate(counts) if c > 0)
                     for i in range(num_tasks)])
                post = np.exp(log_post - log_post.max())
                post /= post.sum()
                out[b, t] = post @ pool
    return out


def brute_force_generalizing(tokens, d, a):
    tokens = np.asarray(tokens)
    out = np.empty((tokens.shape[0], tokens.shape[1] - 1, d))
    for b in range(tokens.shape[0]):
        for t in range(tokens.shape[1] - 1):
            for v in range(d):
                seen = sum(1 for k in range(1, t + 1) if tokens[b, k] == v)
                out[b, t, v] = (seen + a) / (t + d * a)
    return out


def random_tokens(rng, num_sequences, d, context_length):
    tokens = np.empty((num_sequences, context_length + 1), dtype=np.int64)
    tokens[:, 0] = d
    tokens[:, 1:] = rng.integers(0, d, size=(num_sequences, context_length))
    return tokens


@pytest.mark.parametrize("d, context_length, diversity", [(3, 7, 5), (8, 24, 64)])
def test_memorizing_is_the_pool_posterior_predictive(d, context_length, diversity):
    task = bic.task("urns", num_dims=d, context_length=context_length)
    pool = task.pool(diversity, seed=11)
    rng = np.random.default_rng(0)
    for batch_tokens in (task.sample(pool, 4, seed=3)["tokens"], random_tokens(rng, 4, d, context_length)):
        probs = bic.strategies.memorizing(task, pool)({"tokens": batch_tokens})
        assert probs.shape == (4, context_length, d)
        np.testing.assert_allclose(probs, brute_force_memorizing(batch_tokens, pool), rtol=0, atol=1e-5)


def test_memorizing_with_zipf_prior_uses_the_sampling_distribution():
    task = bic.task("urns", num_dims=4, context_length=12)
    pool = task.pool(10, seed=2)
    tokens = task.sample(pool, 5, seed=1, zipf=1.5)["tokens"]
    p = np.arange(1, 11, dtype=np.float64) ** -1.5
    p /= p.sum()
    probs = bic.strategies.memorizing(task, pool, zipf=1.5)({"tokens": tokens})
    np.testing.assert_allclose(probs, brute_force_memorizing(tokens, pool, prior=p), atol=1e-5)
    # Row 0 is the prior mean: the Zipf-weighted, not the plain, pool mean.
    np.testing.assert_allclose(probs[:, 0], np.broadcast_to(p @ pool, (5, 4)), atol=1e-6)


def test_memorizing_first_row_is_the_pool_mean():
    task = bic.task("urns", num_dims=8, context_length=5)
    pool = task.pool(64, seed=4)
    probs = bic.strategies.memorizing(task, pool)(task.sample(pool, 3, seed=0))
    np.testing.assert_allclose(probs[:, 0], np.broadcast_to(pool.mean(axis=0), (3, 8)), atol=1e-6)


def test_memorizing_is_accurate_and_finite_at_d4096_and_t320():
    task = bic.task("urns", num_dims=8, context_length=320)
    pool = task.pool(4096, seed=5)
    tokens = np.concatenate([task.sample(pool, 1, seed=6)["tokens"],
                             task.sample(task.ood_pool(seed=6), 1, seed=6)["tokens"]])
    probs = bic.strategies.memorizing(task, pool)({"tokens": tokens})
    assert np.all(np.isfinite(probs))
    reference = np.empty_like(probs, dtype=np.float64)
    log_pool = np.log(pool)
    for b in range(2):  # the same rule, vectorized over the 4096 urns to keep the test short
        for t in range(320):
            counts = np.bincount(tokens[b, 1:t + 1], minlength=8)
            log_post = log_pool @ counts
            post = np.exp(log_post - log_post.max())
            reference[b, t] = post @ pool / post.sum()
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-5)


def test_an_urn_that_cannot_produce_a_seen_colour_drops_out_of_the_posterior():
    task = bic.task("urns", num_dims=3, context_length=4)
    pool = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    tokens = np.array([[3, 2, 0, 2, 1]])
    probs = bic.strategies.memorizing(task, pool)({"tokens": tokens})
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, brute_force_memorizing(tokens, pool), atol=1e-6)


@pytest.mark.parametrize("concentration", [1.0, 0.5])
def test_generalizing_is_the_dirichlet_posterior_mean(concentration):
    task = bic.task("urns", num_dims=5, context_length=9, concentration=concentration)
    tokens = random_tokens(np.random.default_rng(1), 6, 5, 9)
    probs = bic.strategies.generalizing(task)({"tokens": tokens})
    np.testing.assert_allclose(probs, brute_force_generalizing(tokens, 5, concentration), atol=1e-12)


def test_constant_is_the_uniform_prior_predictive():
    task = bic.task("urns", num_dims=6, context_length=3)
    probs = bic.strategies.constant(task)({"tokens": random_tokens(np.random.default_rng(2), 2, 6, 3)})
    np.testing.assert_array_equal(probs, np.full((2, 3, 6), 1 / 6))


def test_strategies_accept_jax_arrays_and_ignore_extra_keys():
    task = bic.task("urns", num_dims=4, context_length=6)
    pool = task.pool(8, seed=0)
    batch = task.sample(pool, 3, seed=0)
    m = bic.strategies.memorizing(task, pool)
    from_jax = m({"tokens": jnp.asarray(batch["tokens"]), "anything": np.zeros(1)})
    np.testing.assert_array_equal(from_jax, m(batch))
    assert isinstance(from_jax, np.ndarray)


def test_log_probs_are_the_log_of_the_probabilities():
    task = bic.task("urns", num_dims=4, context_length=6)
    pool = task.pool(8, seed=0)
    batch = task.sample(pool, 3, seed=0)
    for strategy in bic.strategies.for_task(task, pool, names=("M", "G", "C")).values():
        np.testing.assert_allclose(np.exp(strategy(batch, log=True)), strategy(batch), rtol=1e-6)
