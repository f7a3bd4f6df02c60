"""Properties every strategy has on any valid input, and the errors bad inputs get."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesicl as bic
from bayesicl.tasks import LabelledPool

S = bic.strategies
FAMILIES = ("urns", "regression", "classification")
KINDS = ("memorizing", "generalizing", "constant")

small = settings(max_examples=12, deadline=None)
setup = st.fixed_dictionaries({
    "family": st.sampled_from(FAMILIES),
    # Few distinct shapes, so that examples share compiled kernels; the draws vary freely.
    "d": st.sampled_from([2, 5]),
    "context_length": st.sampled_from([2, 7]),
    "diversity": st.sampled_from([1, 3, 12]),
    "num_sequences": st.sampled_from([1, 4]),
    "seed": st.integers(0, 2**16),
    "ood": st.booleans(),
})


def make(case):
    task = bic.task(case["family"], num_dims=case["d"], context_length=case["context_length"])
    pool = task.pool(case["diversity"], seed=case["seed"])
    source = task.ood_pool(seed=case["seed"]) if case["ood"] else pool
    return task, pool, task.sample(source, case["num_sequences"], seed=case["seed"])


def expected_shape(task, num_sequences):
    if task.family == "urns":
        return (num_sequences, task.context_length, task.num_dims)
    if task.family == "regression":
        return (num_sequences, task.context_length)
    return (num_sequences, task.num_labels)


@small
@given(setup)
def test_every_strategy_has_the_logged_layout_and_is_finite(case):
    task, pool, batch = make(case)
    for strategy in S.for_task(task, pool, KINDS).values():
        out = strategy(batch)
        assert isinstance(out, np.ndarray)
        assert out.shape == expected_shape(task, case["num_sequences"])
        assert np.all(np.isfinite(out))


@small
@given(setup.filter(lambda case: case["family"] != "regression"))
def test_probabilities_are_distributions(case):
    task, pool, batch = make(case)
    for strategy in S.for_task(task, pool, KINDS).values():
        probs = strategy(batch)
        assert np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)


@small
@given(setup, st.integers(0, 2**16))
def test_memorizing_does_not_depend_on_the_order_of_the_pool(case, permutation_seed):
    task, pool, batch = make(case)
    order = np.random.default_rng(permutation_seed).permutation(case["diversity"])
    permuted = (LabelledPool(pool.means[order], pool.labels[order]) if task.family == "classification"
                else pool[order])
    np.testing.assert_allclose(S.memorizing(task, permuted)(batch), S.memorizing(task, pool)(batch),
                               rtol=1e-5, atol=1e-6)


@small
@given(setup.filter(lambda case: case["diversity"] > 1), st.integers(0, 2**16))
def test_weighted_memorizing_prior_moves_with_its_pool_task(case, permutation_seed):
    # Permuting the pool together with its prior weights leaves M unchanged.
    task, pool, batch = make(case)
    weights = np.random.default_rng(permutation_seed).dirichlet(np.ones(case["diversity"]))
    order = np.random.default_rng(permutation_seed + 1).permutation(case["diversity"])
    permuted = (LabelledPool(pool.means[order], pool.labels[order]) if task.family == "classification"
                else pool[order])
    np.testing.assert_allclose(S.memorizing(task, permuted, probabilities=weights[order])(batch),
                               S.memorizing(task, pool, probabilities=weights)(batch), rtol=1e-5, atol=1e-6)


# -- bad inputs: a BayesiclError (a ValueError) whose message names the problem ---------------

def test_a_pool_of_the_wrong_dimension_is_rejected():
    task = bic.task("urns", num_dims=8, context_length=4)
    with pytest.raises(ValueError, match=r"pool has shape \(4, 6\), expected \(D, 8\)"):
        S.memorizing(task, bic.task("urns", num_dims=6, context_length=4).pool(4, seed=0))


@pytest.mark.parametrize("family", FAMILIES)
def test_an_empty_pool_is_rejected(family):
    task = bic.task(family, num_dims=3, context_length=4)
    empty = LabelledPool(np.zeros((0, 3)), np.zeros(0, dtype=int)) if family == "classification" else np.zeros((0, 3))
    with pytest.raises(ValueError, match="pool"):
        S.memorizing(task, empty)
    with pytest.raises(ValueError, match="diversity D must be a positive integer"):
        S.memorizing(task, task.pool(0, seed=0))


def test_urns_whose_probabilities_do_not_sum_to_one_are_rejected():
    task = bic.task("urns", num_dims=3, context_length=4)
    with pytest.raises(ValueError, match="sum to 1"):
        S.memorizing(task, np.array([[0.5, 0.3, 0.1]]))


def test_prior_weights_that_do_not_sum_to_one_are_rejected():
    task = bic.task("regression", num_dims=3, context_length=4)
    pool = task.pool(3, seed=0)
    with pytest.raises(ValueError, match="pool probabilities must sum to 1"):
        S.memorizing(task, pool, probabilities=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        S.memorizing(task, pool, probabilities=[0.5, 0.5])


@pytest.mark.parametrize("family", FAMILIES)
def test_nan_in_the_pool_is_rejected(family):
    task = bic.task(family, num_dims=3, context_length=4)
    pool = task.pool(3, seed=0)
    if family == "classification":
        means = pool.means.copy()
        means[1, 2] = np.nan
        pool = LabelledPool(means, pool.labels)
    else:
        pool = pool.copy()
        pool[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.memorizing(task, pool)


@pytest.mark.parametrize("family, key", [("regression", "x"), ("regression", "y"), ("classification", "x")])
def test_nan_in_the_batch_is_rejected(family, key):
    task = bic.task(family, num_dims=3, context_length=4)
    batch = task.sample(task.pool(3, seed=0), 2, seed=0)
    batch[key] = batch[key].copy()
    batch[key][0, 1] = np.nan
    for strategy in S.for_task(task, task.pool(3, seed=0), KINDS).values():
        with pytest.raises(ValueError, match=f"batch\\['{key}'\\] contains NaN"):
            strategy(batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_of_the_wrong_dimension_is_rejected(family):
    task = bic.task(family, num_dims=3, context_length=4)
    other = bic.task(family, num_dims=5, context_length=4)
    batch = other.sample(other.pool(2, seed=0), 2, seed=0)
    for strategy in S.for_task(task, task.pool(2, seed=0), KINDS).values():
        with pytest.raises(ValueError, match=r"shape|outside|start token"):
            strategy(batch)


def test_unknown_strategies_and_non_mapping_batches_are_rejected():
    task = bic.task("urns", num_dims=3, context_length=4)
    with pytest.raises(ValueError, match="unknown strategy 'ridge'"):
        S.for_task(task, task.pool(2, seed=0), names=("ridge",))
    with pytest.raises(ValueError, match="takes no pool"):
        S.Strategy("generalizing", task, pool=task.pool(2, seed=0))
    with pytest.raises(ValueError, match="batch mapping"):
        S.generalizing(task)(np.zeros((2, 5), dtype=int))


def test_an_empty_batch_is_rejected():
    task = bic.task("urns", num_dims=4, context_length=6)
    batch = task.sample(task.pool(8, seed=0), 3, seed=1)
    with pytest.raises(ValueError, match="holds no sequences"):
        S.constant(task)({k: v[:0] for k, v in batch.items()})
