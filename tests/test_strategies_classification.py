"""Classification strategies (docs/model.md#classification-strategies) agree with brute-force float64 Bayes rules.

The references loop over sequences and over pool members / context items, compute each
Gaussian log-density from its definition, normalize, sum the label indicators and clamp.
"""

import numpy as np
import pytest

import bayesicl as bic
from bayesicl.tasks import LabelledPool


def clamp_like_the_paper(probs):
    clamped = np.clip(probs, 1e-5, 1 - 1e-5)
    return clamped if clamped.shape[-1] == 2 else clamped / clamped.sum(axis=-1, keepdims=True)


def brute_force_memorizing(x, pool, eps, num_labels, prior=None):
    d = x.shape[2]
    num_tasks = pool.means.shape[0]
    prior = np.full(num_tasks, 1.0 / num_tasks) if prior is None else prior
    out = np.zeros((x.shape[0], num_labels))
    for b in range(x.shape[0]):
        query = np.sqrt(1 + eps) * x[b, -1]
        log_density = np.array([np.log(prior[i]) - d / (2 * eps) * np.sum((query - pool.means[i]) ** 2)
                                for i in range(num_tasks)])
        weights = np.exp(log_density - log_density.max())
        weights /= weights.sum()
        for i in range(num_tasks):
            out[b, pool.labels[i]] += weights[i]
    return clamp_like_the_paper(out)


def brute_force_generalizing(x, labels, eps, num_labels):
    d = x.shape[2]
    scale = d * (1 + eps) ** 2 / (2 * eps * (2 + eps))
    out = np.zeros((x.shape[0], num_labels))
    for b in range(x.shape[0]):
        log_density = np.array([-scale * np.sum((x[b, -1] - x[b, j] / (1 + eps)) ** 2)
                                for j in range(x.shape[1] - 1)])
        weights = np.exp(log_density - log_density.max())
        weights /= weights.sum()
        for j in range(x.shape[1] - 1):
            out[b, labels[b, j]] += weights[j]
    return clamp_like_the_paper(out)


@pytest.mark.parametrize("d, context_length, diversity, num_labels", [(2, 4, 3, 2), (8, 32, 64, 2), (4, 8, 16, 3)])
def test_memorizing_is_the_label_posterior_over_the_pool(d, context_length, diversity, num_labels):
    task = bic.task("classification", num_dims=d, context_length=context_length, num_labels=num_labels)
    pool = task.pool(diversity, seed=1)
    m = bic.strategies.memorizing(task, pool)
    for batch in (task.sample(pool, 5, seed=2), task.sample(task.ood_pool(seed=2), 5, seed=2)):
        probs = m(batch)
        assert probs.shape == (5, num_labels)
        expected = brute_force_memorizing(batch["x"], pool, task.within_class_variance, num_labels)
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("d, context_length, num_labels", [(2, 4, 2), (8, 32, 2), (4, 8, 3)])
def test_generalizing_copies_labels_by_the_two_copy_density(d, context_length, num_labels):
    task = bic.task("classification", num_dims=d, context_length=context_length, num_labels=num_labels)
    batch = task.sample(task.ood_pool(seed=3), 5, seed=4)
    probs = bic.strategies.generalizing(task)(batch)
    expected = brute_force_generalizing(batch["x"], batch["labels"], task.within_class_variance, num_labels)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)


def test_memorizing_with_zipf_prior_uses_the_sampling_distribution():
    task = bic.task("classification", num_dims=2, context_length=6, within_class_variance=2.0)
    pool = task.pool(6, seed=5)
    batch = task.sample(pool, 8, seed=1, zipf=1.0)
    p = 1.0 / np.arange(1, 7)
    p /= p.sum()
    probs = bic.strategies.memorizing(task, pool, zipf=1.0)(batch)
    np.testing.assert_allclose(probs, brute_force_memorizing(batch["x"], pool, 2.0, 2, prior=p), atol=1e-5)


def test_strategies_are_accurate_and_finite_at_d4096_and_t384():
    task = bic.task("classification", num_dims=8, context_length=384)
    pool = task.pool(4096, seed=6)
    batch = task.sample(pool, 3, seed=7)
    m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
    for strategy, expected in (
            (m, brute_force_memorizing(batch["x"], pool, 0.5, 2)),
            (g, brute_force_generalizing(batch["x"], batch["labels"], 0.5, 2))):
        probs = strategy(batch)
        assert np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)


def test_outputs_are_clamped_to_the_papers_range():
    task = bic.task("classification", num_dims=2, context_length=3)
    pool = LabelledPool(np.array([[3.0, 0.0], [-3.0, 0.0]]), np.array([0, 1]))
    x = np.array([[[2.0, 0.0], [-2.0, 0.0], [3.0 / np.sqrt(1.5), 0.0]]])
    batch = {"x": x, "labels": np.array([[0, 1, -1]])}
    for strategy in (bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)):
        np.testing.assert_array_equal(strategy(batch), [[1 - 1e-5, 1e-5]])
    np.testing.assert_allclose(np.exp(bic.strategies.generalizing(task).log_probs(batch)), [[1 - 1e-5, 1e-5]])


def test_memorizing_ignores_the_context():
    task = bic.task("classification", num_dims=4, context_length=10)
    pool = task.pool(32, seed=8)
    batch = task.sample(pool, 6, seed=9)
    shuffled = dict(batch, x=batch["x"].copy(), labels=batch["labels"].copy())
    shuffled["x"][:, :-1] = np.random.default_rng(0).standard_normal((6, 9, 4))
    shuffled["labels"][:, :-1] = 1 - batch["labels"][:, :-1]
    m = bic.strategies.memorizing(task, pool)
    np.testing.assert_array_equal(m(shuffled), m(batch))


def test_constant_is_uniform_over_labels():
    task = bic.task("classification", num_dims=4, context_length=5, num_labels=4)
    batch = task.sample(task.pool(4, seed=0), 3, seed=0)
    np.testing.assert_array_equal(bic.strategies.constant(task)(batch), np.full((3, 4), 0.25))
