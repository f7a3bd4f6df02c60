"""The markov task family (docs/model.md#markov-chains): pools, sequences, validation."""

import numpy as np
import pytest

import bayesicl as bic


def test_pools_are_nested_row_stochastic_chains_with_dirichlet_one_rows():
    task = bic.task("markov", num_states=3, context_length=8)
    pool = task.pool(4096, seed=1)
    assert pool.shape == (4096, 3, 3)
    np.testing.assert_allclose(pool.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(task.pool(16, seed=1), pool[:16])
    # Dirichlet(1, 1, 1): each entry has mean 1/3 and variance (1/3)(2/3)/4 = 1/18.
    entries = pool.reshape(-1)
    assert abs(entries.mean() - 1 / 3) < 1e-9          # rows sum to one exactly
    assert abs(entries.var() - 1 / 18) < 3e-3
    assert not np.allclose(task.ood_pool(seed=1)[:16], pool[:16])


def test_sequences_start_uniformly_and_follow_their_chain():
    task = bic.task("markov", num_states=3, context_length=40)
    pool = task.pool(2, seed=0)
    batch = task.sample(pool, 4000, seed=3)
    tokens, index = batch["tokens"], batch["task_index"]
    assert tokens.shape == (4000, 41) and np.all(tokens[:, 0] == 3)
    np.testing.assert_array_equal(batch["transitions"], pool[index])
    first = np.bincount(tokens[:, 1], minlength=3) / 4000
    np.testing.assert_allclose(first, 1 / 3, atol=0.03)
    for i in range(2):
        x = tokens[index == i, 1:]
        counts = np.zeros((3, 3))
        np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
        np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), pool[i], atol=0.02)


def test_same_seed_same_sequences_and_zipf_prefers_early_chains():
    task = bic.task("markov", num_states=4, context_length=6)
    pool = task.pool(50, seed=0)
    a, b = task.sample(pool, 10, seed=2), task.sample(pool, 10, seed=2)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    skewed = task.sample(pool, 3000, seed=2, zipf=1.5)["task_index"]
    assert np.mean(skewed == 0) > 0.3 > np.mean(task.sample(pool, 3000, seed=2)["task_index"] == 0)


def test_num_states_is_the_family_parameter_and_row_zero_is_not_scored():
    task = bic.task("markov", num_states=5, context_length=7)
    assert task.num_states == task.num_dims == 5
    assert task.settings == {"task": "markov", "num_dims": 5, "context_length": 7}
    assert bic.tasks.from_settings(task.settings) == task
    assert task.scored_positions().tolist() == [False] + [True] * 6


@pytest.mark.parametrize("bad", [
    lambda: bic.task("markov", num_states=0),
    lambda: bic.task("markov", num_states=3, num_dims=3),
    lambda: bic.task("markov", num_states=3, context_length=1),
    lambda: bic.task("markov", num_states=2).validate_pool(np.full((2, 2, 2), 0.7)),
    lambda: bic.task("markov", num_states=2).validate_pool(np.full((2, 3, 3), 1 / 3)),
    lambda: bic.task("markov", num_states=2, context_length=2).validate_batch({"tokens": [[2, 0, 2]]}),
    lambda: bic.task("markov", num_states=2, context_length=2).validate_batch({"tokens": [[0, 0, 1]]}),
])
def test_bad_input_raises_a_one_line_error(bad):
    with pytest.raises(bic.BayesiclError) as error:
        bad()
    assert "\n" not in str(error.value)
