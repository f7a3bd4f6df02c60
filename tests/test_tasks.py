"""Task families: seeds, nesting, layouts and the sampling laws of docs/model.md#task-families."""

import numpy as np
import pytest

import bayesicl as bic
from bayesicl.tasks import LabelledPool


FAMILIES = ["urns", "regression", "classification"]


def _rows(pool):
    return pool.means if isinstance(pool, LabelledPool) else pool


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_gives_same_pool_and_sequences(name):
    task = bic.task(name, num_dims=4, context_length=8)
    a, b = task.pool(16, seed=3), task.pool(16, seed=3)
    np.testing.assert_array_equal(_rows(a), _rows(b))
    sa, sb = task.sample(a, 5, seed=7), task.sample(b, 5, seed=7)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key])


@pytest.mark.parametrize("name", FAMILIES)
def test_pools_are_nested_across_diversities(name):
    task = bic.task(name, num_dims=4, context_length=8)
    big = task.pool(4096, seed=1)
    for diversity in (1, 4, 64, 4096):
        small = task.pool(diversity, seed=1)
        np.testing.assert_array_equal(_rows(small), _rows(big)[:diversity])
    if name == "classification":
        np.testing.assert_array_equal(task.pool(64, seed=1).labels, big.labels[:64])


@pytest.mark.parametrize("name", FAMILIES)
def test_purposes_do_not_share_draws(name):
    task = bic.task(name, num_dims=4, context_length=8)
    pool = task.pool(32, seed=0)
    sets = task.eval_sets(pool, seed=0, num_sequences=6)
    key = "tokens" if name == "urns" else "x"
    assert not np.array_equal(sets["id"][key], sets["ood"][key])
    loss_seqs = task.sample(pool, 6, seed=0, purpose="loss_sequences")
    assert not np.array_equal(sets["id"][key], loss_seqs[key])
    assert not np.allclose(_rows(task.ood_pool(seed=0))[:32], _rows(pool))


def test_urns_sequences_follow_their_urn():
    task = bic.task("urns", num_dims=3, context_length=2000)
    pool = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    batch = task.sample(pool, 4, seed=0)
    assert batch["tokens"].shape == (4, 2001)
    assert np.all(batch["tokens"][:, 0] == 3)
    for row, theta in zip(batch["tokens"][:, 1:], batch["theta"]):
        freq = np.bincount(row, minlength=3) / row.size
        np.testing.assert_allclose(freq, theta, atol=0.04)


def test_regression_noise_has_the_paper_variance():
    task = bic.task("regression", num_dims=8, context_length=64)
    batch = task.sample(task.pool(4, seed=0), 500, seed=1)
    residual = batch["y"] - np.einsum("btd,bd->bt", batch["x"], batch["w"])
    assert task.noise_variance == 8 / 256
    assert abs(residual.var() / task.noise_variance - 1) < 0.05


def test_classification_query_answer_is_in_context():
    task = bic.task("classification", num_dims=8, context_length=16)
    pool = task.pool(64, seed=0)
    batch = task.sample(pool, 200, seed=1)
    assert np.all(batch["labels"][:, -1] == -1)
    # The query copies an exemplar that appears in the context, so its label is present there.
    assert all(t in row[:-1] for t, row in zip(batch["target"], batch["labels"]))
    assert all(q in row for q, row in zip(batch["task_index"], batch["context_index"]))
    # Noisy copies are scaled so that their variance matches the prior's 1/d per coordinate.
    assert abs(batch["x"].var() * task.num_dims - 1) < 0.1


def test_classification_iwl_query_never_in_context():
    task = bic.task("classification", num_dims=8, context_length=16)
    pool = task.pool(8, seed=0)
    batch = task.iwl_sample(pool, 50, seed=1)
    assert batch["x"].shape == (50, 16, 8)
    assert np.all(batch["target"] == pool.labels[batch["task_index"]])
    assert not np.any(batch["context_index"] == batch["task_index"][:, None])
    # Every other pool member can appear in the context.
    assert set(np.unique(batch["context_index"])) == set(range(8))
    with pytest.raises(ValueError, match="at least 2"):
        task.iwl_sample(task.pool(1, seed=0), 3, seed=0)


def test_zipf_sampling_prefers_early_tasks():
    task = bic.task("urns", num_dims=4, context_length=4)
    batch = task.sample(task.pool(16, seed=0), 4000, seed=0, zipf=1.5)
    counts = np.bincount(batch["task_index"], minlength=16)
    p = np.arange(1, 17) ** -1.5
    np.testing.assert_allclose(counts / 4000, p / p.sum(), atol=0.03)


@pytest.mark.parametrize("bad", [
    lambda: bic.task("urn"),
    lambda: bic.task("urns", num_dims=0),
    lambda: bic.task("urns", context_length=-3),
    lambda: bic.task("urns", colours=3),
    lambda: bic.task("urns").pool(0),
    lambda: bic.task("urns").pool(-4),
    lambda: bic.task("urns", num_dims=3).sample(np.full((2, 3), 0.5), 2),
    lambda: bic.task("urns", num_dims=3).sample(np.full((2, 4), 0.25), 2),
    lambda: bic.task("regression", num_dims=3).sample(np.full((2, 3), np.nan), 2),
    lambda: bic.task("urns").sample(bic.task("urns").pool(4), 2, seed=-1),
    lambda: bic.task("urns").sample(bic.task("urns").pool(4), 2, zipf=-1.0),
])
def test_bad_input_raises_value_error_with_one_line(bad):
    with pytest.raises(ValueError) as info:
        bad()
    assert "\n" not in str(info.value) and str(info.value)
