"""Observed behaviour (docs/model.md#observed-weights): distances, relative distance, observed and convex weights,
interpolation distance and the cutoff rule, each checked against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesicl import observe
from bayesicl.errors import BayesiclError

SEQUENCES, POSITIONS, COLOURS = 12, 6, 5
ALL = np.ones(POSITIONS, dtype=bool)


def random_probs(rng, concentration=1.0, shape=(SEQUENCES, POSITIONS)):
    return rng.dirichlet(np.full(COLOURS, concentration), size=shape)


def near(rng, probs, scale):
    """A distribution close to `probs`: multiplicative noise of size `scale`, renormalized."""
    out = probs * np.exp(scale * rng.standard_normal(probs.shape))
    return out / out.sum(axis=-1, keepdims=True)


def direct_kl(p, q):
    """KL(p‖q) by the textbook formula, in float64, one (sequence, position) at a time."""
    out = np.empty(p.shape[:-1])
    for index in np.ndindex(*p.shape[:-1]):
        out[index] = sum(float(pv) * np.log(float(pv) / float(qv)) for pv, qv in zip(p[index], q[index]))
    return out


def test_kl_and_skl_match_the_direct_float64_formula():
    rng = np.random.default_rng(0)
    p, q = random_probs(rng), random_probs(rng)
    expected_kl = direct_kl(p, q)
    np.testing.assert_allclose(observe.kl(np.log(p), np.log(q)), expected_kl, rtol=1e-12)
    expected_skl = 0.5 * (direct_kl(p, q) + direct_kl(q, p))
    np.testing.assert_allclose(observe.skl(np.log(p), np.log(q)), expected_skl, rtol=1e-12)


def test_skl_from_float16_log_probs_in_float32_is_close_to_float64():
    rng = np.random.default_rng(1)
    p, q = random_probs(rng, 3.0), random_probs(rng, 3.0)
    stored_p = np.log(p).astype(np.float16)              # float16 storage, as runs may log
    exact = observe.pointwise_distance(stored_p, np.log(q), "log_probs", np.float64)
    single = observe.pointwise_distance(stored_p, np.log(q), "log_probs", np.float32)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=1e-4, atol=1e-6)


def test_zero_probabilities_and_minus_infinity_are_floored_not_nan():
    p = np.array([[[0.5, 0.5, 0.0, 0.0, 0.0]]])
    q = np.array([[[0.2, 0.2, 0.2, 0.2, 0.2]]])
    log_p = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf)
    d = observe.mean_distance(log_p, observe.log_probs(q), "log_probs", np.ones(1, bool))
    # KL(p‖q) = log(2.5); KL(q‖p) with p floored at 1e-30: 0.6·log(0.2/1e-30) + 0.4·log(0.4).
    expected = 0.5 * (np.log(2.5) + 0.6 * np.log(0.2 / 1e-30) + 0.4 * np.log(0.4))
    assert np.isfinite(d) and d == pytest.approx(expected, rel=1e-9)


def test_mean_distance_averages_over_sequences_and_scored_positions_only():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, SEQUENCES, POSITIONS, 1))
    scored = np.array([False, True, True, False, True, True])
    expected = ((a - b) ** 2)[:, scored, 0].mean()
    assert observe.mean_distance(a, b, "predictions", scored) == pytest.approx(expected, rel=1e-12)


def test_distances_returns_transformer_to_strategy_and_pairwise_strategy_distances():
    rng = np.random.default_rng(3)
    strategies = np.log(np.stack([random_probs(rng) for _ in range(3)]))
    transformer = np.log(random_probs(rng))
    d_t, d_pair = observe.distances(transformer, strategies, "log_probs", ALL)
    assert d_t.shape == (3,) and d_pair.shape == (3, 3)
    for s in range(3):
        p, q = np.exp(transformer), np.exp(strategies[s])
        assert d_t[s] == pytest.approx((0.5 * (direct_kl(p, q) + direct_kl(q, p))).mean(), rel=1e-10)
    np.testing.assert_allclose(d_pair, d_pair.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(d_pair), 0.0, atol=1e-12)


def observed_weight_of(transformer, memorizing, generalizing, kind="log_probs"):
    d_t, d_pair = observe.distances(transformer, np.stack([memorizing, generalizing]), kind, ALL)
    r = observe.relative_distance(d_t[0], d_t[1], d_pair[0, 1])
    return float(r), float(observe.observed_weight(r))


def test_observed_weight_is_one_at_m_zero_at_g_and_about_half_for_an_even_mixture():
    rng = np.random.default_rng(4)
    g = random_probs(rng, 5.0)
    m = near(rng, g, 0.3)
    assert observed_weight_of(np.log(m), np.log(m), np.log(g))[1] == pytest.approx(1.0, abs=1e-12)
    assert observed_weight_of(np.log(g), np.log(m), np.log(g))[1] == pytest.approx(0.0, abs=1e-12)
    # SKL is not linear in the mixture weight; for strategies this close it is nearly so.
    half = observed_weight_of(np.log(0.5 * m + 0.5 * g), np.log(m), np.log(g))[1]
    assert half == pytest.approx(0.5, abs=0.02)


def test_relative_distance_is_unclipped_beyond_m_and_the_weight_is_clipped():
    rng = np.random.default_rng(5)
    m, g = rng.standard_normal((2, SEQUENCES, POSITIONS, 1))
    beyond = m + (m - g)                       # d(T,M) = |M−G|², d(T,G) = 4|M−G|² → r = 3
    r, w = observed_weight_of(beyond, m, g, "predictions")
    assert r == pytest.approx(3.0, rel=1e-10)
    assert w == 1.0


def test_observed_weight_is_nan_when_m_and_g_coincide():
    rng = np.random.default_rng(6)
    m = random_probs(rng)
    r, w = observed_weight_of(np.log(random_probs(rng)), np.log(m), np.log(m))
    assert np.isnan(r) and np.isnan(w)
    # Just below the 1e-8 threshold on d(M, G) is still undefined; above it is defined.
    assert np.isnan(observe.relative_distance(0.0, 0.9e-8, 0.9e-8))
    assert observe.relative_distance(0.0, 2e-8, 2e-8) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["log_probs", "predictions"])
def test_convex_weights_recover_known_mixture_weights_of_three_strategies(kind):
    rng = np.random.default_rng(7)
    truth = np.array([[0.2, 0.5, 0.3], [0.0, 0.35, 0.65], [1.0, 0.0, 0.0]])
    if kind == "log_probs":
        probs = np.stack([random_probs(rng) for _ in range(3)])                   # (S, B, P, O)
        strategies = np.log(probs)
        transformer = np.log(np.einsum("cs,sbpo->cbpo", truth, probs))
    else:
        strategies = rng.standard_normal((3, SEQUENCES, POSITIONS, 1))
        transformer = np.einsum("cs,sbpo->cbpo", truth, strategies)
    weights = observe.convex_weights(transformer, strategies[None], kind, ALL)
    assert weights.shape == (3, 3)
    np.testing.assert_allclose(weights, truth, atol=1e-6)


def test_convex_weights_minimize_the_distance_when_no_mixture_fits_exactly():
    rng = np.random.default_rng(8)
    strategies = np.log(np.stack([random_probs(rng) for _ in range(3)]))
    transformer = np.log(random_probs(rng))
    weights = observe.convex_weights(transformer, strategies, "log_probs", ALL)
    best = observe.mean_distance(transformer, observe.mixture(strategies, weights, "log_probs"),
                                 "log_probs", ALL)
    # No point of a fine grid over the simplex does better.
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 41) for b in np.linspace(0, 1, 41) if a + b <= 1]
    values = [observe.mean_distance(transformer, observe.mixture(strategies, np.array(w), "log_probs"),
                                    "log_probs", ALL) for w in grid]
    assert best <= min(values) + 1e-12
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)


def test_two_strategy_convex_weight_is_within_0_01_of_the_relative_distance_weight():
    rng = np.random.default_rng(9)
    g = random_probs(rng, 5.0)
    m = near(rng, g, 0.3)
    for w in np.linspace(0.0, 1.0, 11):
        transformer = np.log(w * m + (1 - w) * g)
        convex = observe.convex_weights(transformer, np.log(np.stack([m, g])), "log_probs", ALL)
        assert convex[0] == pytest.approx(w, abs=1e-6)
        assert abs(convex[0] - observed_weight_of(transformer, np.log(m), np.log(g))[1]) <= 0.01


def test_interpolation_distance_is_the_distance_to_the_observed_mixture():
    rng = np.random.default_rng(10)
    m, g, t = (random_probs(rng) for _ in range(3))
    w = 0.3
    expected = (0.5 * (direct_kl(t, w * m + (1 - w) * g) + direct_kl(w * m + (1 - w) * g, t))).mean()
    got = observe.interpolation_distance(np.log(t), np.log(m), np.log(g), w, "log_probs", ALL)
    assert got == pytest.approx(expected, rel=1e-10)
    on_span = observe.interpolation_distance(np.log(w * m + (1 - w) * g), np.log(m), np.log(g), w,
                                             "log_probs", ALL)
    assert on_span == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(observe.interpolation_distance(np.log(t), np.log(m), np.log(g), np.nan,
                                                   "log_probs", ALL))


def test_cutoff_step_on_a_hand_made_trajectory():
    # Run (D=4): min 0, max 10, threshold 0 + 0.2·10 = 2 → first step with distance ≤ 2 is 300.
    # Run (D=8, seed 0): min 1, max 9, threshold 2.6 → step 200. Run (D=8, seed 1): all NaN,
    # ignored. N_0 is the largest: 300. With q = 0.5: thresholds 5 and 5 → steps 200 and 100.
    conditions = {"diversity": [4] * 4 + [8] * 4 + [8] * 4, "seed": [0] * 8 + [1] * 4,
                  "step": [100, 200, 300, 400] * 3}
    on_id = [10.0, 5.0, 1.0, 0.0, 9.0, 2.0, 1.0, 1.5] + [np.nan] * 4
    distance = xr.DataArray(np.stack([on_id, np.zeros(12)], axis=1), dims=("condition", "split"),
                            coords={"split": ["id", "ood"], **{k: ("condition", v) for k, v in conditions.items()}})
    assert observe.cutoff_step(distance, q=0.2) == 300
    assert observe.cutoff_step(distance, q=0.5) == 200
    shuffled = np.random.default_rng(0).permutation(12)
    assert observe.cutoff_step(distance.isel(condition=shuffled), q=0.2) == 300      # order-free
    assert observe.cutoff_step(distance.where(False)) == 100                         # all NaN
    assert observe.cutoff_step(distance, split="ood") == 100                         # flat: its first step


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(BayesiclError, match="unknown output kind"):
        observe.mean_distance(np.zeros((2, 2, 1)), np.zeros((2, 2, 1)), "logits", np.ones(2, bool))
    with pytest.raises(BayesiclError, match="scored mask"):
        observe.mean_distance(np.zeros((2, 2, 1)), np.zeros((2, 2, 1)), "predictions", np.ones(3, bool))
    with pytest.raises(BayesiclError, match="lack coordinate"):
        observe.cutoff_step(xr.DataArray([[1.0]], dims=("condition", "split"),
                                         coords={"split": ["id"], "step": ("condition", [1])}))
