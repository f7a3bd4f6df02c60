"""Strategy losses (docs/model.md#strategy-loss): per-position losses from their definitions, and L̄ as a median
of means over the loss sequences, recomputed here independently."""

import math

import numpy as np
import pytest

import bayesicl as bic
from bayesicl.seeds import stream

S = bic.strategies


def independent_median_of_means(per_sequence, seed):
    n = len(per_sequence)
    order = stream(seed, "median_of_means").permutation(n)
    num_blocks = math.ceil(math.sqrt(n))
    block_means, start = [], 0
    for b in range(num_blocks):           # sizes differ by at most one, larger blocks first
        size = n // num_blocks + (1 if b < n % num_blocks else 0)
        block_means.append(np.mean([per_sequence[i] for i in order[start:start + size]]))
        start += size
    return float(np.median(block_means))


def test_urns_loss_is_kl_from_the_true_urn_at_every_row():
    task = bic.task("urns", num_dims=4, context_length=6)
    pool = task.pool(8, seed=0)
    batch = task.sample(pool, 5, seed=1)
    for strategy in S.for_task(task, pool, ("M", "G", "C")).values():
        probs = strategy(batch).astype(np.float64)
        expected = np.zeros((5, 6))
        for b in range(5):
            for t in range(6):
                theta = batch["theta"][b]
                expected[b, t] = sum(theta[v] * math.log(theta[v] / probs[b, t, v]) for v in range(4) if theta[v] > 0)
        np.testing.assert_allclose(S.per_position_loss(task, strategy, batch), expected, rtol=1e-6, atol=1e-9)


def test_regression_loss_is_the_scaled_squared_error_from_the_noiseless_target():
    task = bic.task("regression", num_dims=3, context_length=5)
    pool = task.pool(4, seed=0)
    batch = task.sample(pool, 4, seed=2)
    for strategy in S.for_task(task, pool, ("M", "G", "C")).values():
        predictions = strategy(batch)
        expected = np.array([[(predictions[b, t] - batch["x"][b, t] @ batch["w"][b]) ** 2
                              / (2 * task.noise_variance) + 0.5 for t in range(5)] for b in range(4)])
        np.testing.assert_allclose(S.per_position_loss(task, strategy, batch), expected, rtol=1e-12)


def test_regression_loss_has_the_expectation_of_the_noisy_squared_error():
    # E[(ŷ − y)²/(2σ²)] = E[(ŷ − w·x)²/(2σ²)] + ½, and the lower-variance form is unbiased.
    task = bic.task("regression", num_dims=4, context_length=8)
    pool = task.pool(16, seed=0)
    batch = task.sample(pool, 4000, seed=3)
    g = S.generalizing(task)
    noisy = ((g(batch) - batch["y"]) ** 2 / (2 * task.noise_variance)).mean()
    lower_variance = S.per_position_loss(task, g, batch).mean()
    assert abs(noisy - lower_variance) < 0.02 * lower_variance


def test_classification_loss_is_the_cross_entropy_of_the_query_label():
    task = bic.task("classification", num_dims=4, context_length=8)
    pool = task.pool(6, seed=0)
    batch = task.sample(pool, 7, seed=3)
    for strategy in S.for_task(task, pool, ("M", "G", "C")).values():
        probs = strategy(batch)
        expected = [-math.log(probs[b, batch["target"][b]]) for b in range(7)]
        np.testing.assert_allclose(S.per_position_loss(task, strategy, batch), expected, rtol=1e-12)


def test_any_callable_with_the_logged_layout_can_be_scored():
    task = bic.task("urns", num_dims=4, context_length=6)
    batch = task.sample(task.pool(8, seed=0), 3, seed=1)
    uniform = lambda b: np.full((len(b["tokens"]), 6, 4), 0.25)  # noqa: E731
    np.testing.assert_allclose(S.per_position_loss(task, uniform, batch),
                               S.per_position_loss(task, S.constant(task), batch), rtol=1e-12)


@pytest.mark.parametrize("family, kw", [
    ("urns", dict(num_dims=8, context_length=32)),
    ("regression", dict(num_dims=4, context_length=8)),
    ("classification", dict(num_dims=4, context_length=16)),
])
def test_loss_is_the_median_of_means_over_the_loss_sequences(family, kw):
    task = bic.task(family, **kw)
    pool = task.pool(16, seed=4)
    sequences = task.sample(pool, 2000, seed=5, purpose="loss_sequences")
    for strategy in S.for_task(task, pool, ("M", "G")).values():
        per_sequence = S.per_position_loss(task, strategy, sequences).reshape(2000, -1).mean(axis=1)
        expected = independent_median_of_means(per_sequence, seed=5)
        assert S.loss(task, strategy, pool, num_sequences=2000, seed=5) == pytest.approx(expected, rel=1e-9)


def test_constant_urns_loss_at_the_default_size_is_the_mean_kl_from_uniform():
    # 10 000 sequences (the default): L̄_C estimates the pool average of KL(θ_i ‖ uniform).
    task = bic.task("urns", num_dims=8, context_length=128)
    pool = task.pool(64, seed=6)
    expected = np.mean([sum(p * math.log(8 * p) for p in theta) for theta in pool])
    assert S.loss(task, S.constant(task), pool, seed=7) == pytest.approx(expected, abs=0.01)
    m, g = S.memorizing(task, pool), S.generalizing(task)
    assert 0 < S.loss(task, m, pool, seed=7) < S.loss(task, g, pool, seed=7) < expected


def test_median_of_means_ignores_a_minority_of_outliers():
    losses = np.ones(100)
    losses[:3] = 1e6
    assert S.median_of_means(losses, seed=0) == 1.0


def test_loss_errors_name_the_missing_piece():
    task = bic.task("urns", num_dims=4, context_length=6)
    batch = task.sample(task.pool(8, seed=0), 3, seed=1)
    del batch["theta"]
    with pytest.raises(ValueError, match="missing key 'theta'"):
        S.per_position_loss(task, S.constant(task), batch)
    with pytest.raises(ValueError, match="NaN"):
        S.median_of_means(np.array([1.0, np.nan]))


def test_outputs_of_the_wrong_shape_are_rejected():
    task = bic.task("urns", num_dims=4, context_length=6)
    batch = task.sample(task.pool(8, seed=0), 3, seed=1)
    with pytest.raises(ValueError, match=r"outputs have shape \(3, 5, 4\), expected \(3, 6, 4\)"):
        S.per_position_loss(task, lambda b: np.full((3, 5, 4), 0.25), batch)


# -- paired differences ΔL̄ = L̄_s − L̄_G and Monte-Carlo standard errors -------------------------

def independent_mom_se(values, seed):
    """√(π/2) · 1.4826 · MAD(block means) / √k, block means as in independent_median_of_means."""
    n = len(values)
    order = stream(seed, "median_of_means").permutation(n)
    num_blocks = math.ceil(math.sqrt(n))
    means, start = [], 0
    for b in range(num_blocks):
        size = n // num_blocks + (1 if b < n % num_blocks else 0)
        means.append(sum(values[i] for i in order[start:start + size]) / size)
        start += size
    means = np.array(means)
    mad = np.median(np.abs(means - np.median(means)))
    return math.sqrt(math.pi / 2) * 1.4826 * mad / math.sqrt(num_blocks)


@pytest.mark.parametrize("family, kw", [
    ("urns", dict(num_dims=8, context_length=32)),
    ("classification", dict(num_dims=4, context_length=16)),
])
def test_paired_difference_is_one_median_of_means_of_the_per_sequence_differences(family, kw):
    task = bic.task(family, **kw)
    pool = task.pool(32, seed=4)
    strategies = S.for_task(task, pool, ("memorizing", "generalizing", "constant"))
    paired = S.paired_losses(task, strategies, pool, num_sequences=900, seed=6)
    sequences = task.sample(pool, 900, seed=6, purpose="loss_sequences")
    per_sequence = {name: S.per_position_loss(task, s, sequences).reshape(900, -1).mean(axis=1)
                    for name, s in strategies.items()}
    for name in strategies:
        delta = per_sequence[name] - per_sequence["generalizing"]
        assert paired.difference[name] == pytest.approx(independent_median_of_means(delta, 6), rel=1e-9, abs=1e-12)
        assert paired.difference_se[name] == pytest.approx(independent_mom_se(delta, 6), rel=1e-9, abs=1e-12)
        assert paired.loss_se[name] == pytest.approx(independent_mom_se(per_sequence[name], 6), rel=1e-9)
        # L̄ itself is unchanged: the same sequences and blocks as `loss`.
        assert paired.loss[name] == S.loss(task, strategies[name], pool, num_sequences=900, seed=6)
    assert paired.difference["generalizing"] == paired.difference_se["generalizing"] == 0.0


def test_pairing_shrinks_the_standard_error_on_correlated_sequences():
    # Two "strategies" whose per-sequence losses share most of their variation: the paired SE
    # follows only the independent parts, the unpaired one both strategies' full spread.
    rng = np.random.default_rng(0)
    shared = rng.standard_normal(4000) ** 2                 # hard and easy sequences, for both
    a = shared + 0.1 * rng.standard_normal(4000)
    b = shared + 0.05 + 0.1 * rng.standard_normal(4000)
    paired = S.median_of_means_se(a - b, seed=1)
    unpaired = math.hypot(S.median_of_means_se(a, seed=1), S.median_of_means_se(b, seed=1))
    assert paired < 0.5 * unpaired
    # The same on a real task, where M and G find the same urns hard (long contexts).
    task = bic.task("urns", num_dims=8, context_length=64)
    pool = task.pool(64, seed=0)
    real = S.paired_losses(task, S.for_task(task, pool), pool, num_sequences=1600, seed=2)
    assert real.difference_se["memorizing"] < 0.8 * math.hypot(real.loss_se["memorizing"],
                                                                 real.loss_se["generalizing"])


def test_standard_error_matches_the_spread_of_the_paired_estimate_over_loss_seeds():
    task = bic.task("urns", num_dims=4, context_length=16)
    pool = task.pool(16, seed=0)
    strategies = S.for_task(task, pool)
    draws = [S.paired_losses(task, strategies, pool, num_sequences=400, seed=seed) for seed in range(40)]
    spread = np.std([p.difference["memorizing"] for p in draws], ddof=1)
    reported = np.mean([p.difference_se["memorizing"] for p in draws])
    assert 0.6 < reported / spread < 1.6


def test_unresolved_signs_are_those_within_two_standard_errors():
    from bayesicl.evidence import loss_sign_warning, terms_table, unresolved_loss_signs

    task = bic.task("urns", num_dims=8, context_length=16)
    pools = {4: task.pool(4, seed=0), 512: task.pool(512, seed=0)}
    terms = terms_table(task, ("memorizing", "generalizing"), pools, num_sequences=100, cache=False)
    expected = [d for d in pools if abs(terms.loss_difference.loc[d, "memorizing"])
                < 2 * terms.loss_difference_se.loc[d, "memorizing"]]
    assert unresolved_loss_signs(terms)["diversity"].tolist() == expected
    assert 4 not in expected                      # four urns are told apart at once: resolved
    assert unresolved_loss_signs(terms, z=1e9)["diversity"].tolist() == [4, 512]
    assert "D=4" in loss_sign_warning(terms, z=1e9)
    assert (loss_sign_warning(terms) is None) == (expected == [])


def test_paired_losses_refuse_an_unknown_reference():
    task = bic.task("urns", num_dims=4, context_length=6)
    pool = task.pool(4, seed=0)
    with pytest.raises(ValueError, match="reference strategy 'G'"):
        S.paired_losses(task, S.for_task(task, pool), pool, num_sequences=10, reference="G")
