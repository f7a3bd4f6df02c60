"""The metric tables (bayesicl.evidence.metric_tables) against direct float64 computations.

At every node of w_M the tables hold the metrics exactly, ties included; between nodes a fit
reads them linearly (Hermite for kl), and never reads a token again.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import bayesicl as bic
from bayesicl import metrics
from bayesicl.evidence import evidence_from_arrays
from bayesicl.evidence.metric_tables import RankCrossings, average_ranks, standardized_ranks, tvd_sums

NODES = np.linspace(0.0, 1.0, 9)            # crossings and kinks can sit exactly on these


def direct_spearman(h, t):
    """Mean over rows of scipy's rank correlation, undefined rows left out; and their count."""
    rhos = []
    for a, b in zip(h, t):
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            rhos.append(scipy.stats.spearmanr(a, b).statistic)
    return float(np.sum(rhos)), len(rhos)


def test_tvd_sums_are_exact_at_every_node_with_flat_entries_and_kinks_on_nodes():
    rng = np.random.default_rng(0)
    m, g = rng.dirichlet(np.ones(6), size=40).ravel(), rng.dirichlet(np.ones(6), size=40).ravel()
    g[:12] = m[:12]                                                    # δ = 0: no kink
    t = rng.dirichlet(np.ones(6), size=(3, 40)).reshape(3, -1)
    t[0, 20] = g[20] + 0.5 * (m[20] - g[20])                           # a kink exactly on w = 0.5
    got = tvd_sums(t, m, g, NODES)
    for k, w in enumerate(NODES):
        direct = np.abs(g + w * (m - g) - t).sum(axis=1)
        np.testing.assert_allclose(got[:, k], direct, rtol=1e-12, atol=1e-12)


def test_rank_correlation_is_exact_at_every_node_with_ties():
    rng = np.random.default_rng(1)
    rows, d = 300, 5
    m = rng.dirichlet(np.ones(d), size=rows)
    g = rng.dirichlet(np.ones(d), size=rows)
    g[:40, 1] = g[:40, 0]                                              # G ties: w = 0
    m[40:70, 3] = m[40:70, 2]                                          # M ties: w = 1
    g[70:80] = 1.0 / d                                                 # G constant
    m[80:90, 4], g[80:90, 4] = m[80:90, 3], g[80:90, 3]                # tied for every w
    # two colours whose lines cross exactly on the node w = 0.5
    g[90:95, 0], g[90:95, 1], m[90:95, 0], m[90:95, 1] = 0.3, 0.1, 0.1, 0.3
    t = rng.dirichlet(np.ones(d), size=(4, rows))
    t[0, :30] = np.round(t[0, :30], 1)                                 # T ties
    t[1, 5] = 1.0 / d                                                  # T constant
    crossings = RankCrossings(m, g, NODES)
    assert crossings.special.size >= 5                                 # the exact crossings
    ranks, defined = standardized_ranks(average_ranks(t))
    total, count = crossings.sums(ranks, defined)
    for k, w in enumerate(NODES):
        h = (1 - w) * g + w * m
        for c in range(len(t)):
            direct, number = direct_spearman(h, t[c])
            assert total[c, k] == pytest.approx(direct, abs=1e-9)
            assert count[c, k] == number


@pytest.mark.parametrize("d", [7, 40])
def test_average_ranks_match_scipy_with_ties_in_both_ways_of_ranking(d):
    values = np.random.default_rng(2).integers(0, 5, size=(60, d)).astype(float)
    np.testing.assert_array_equal(average_ranks(values), scipy.stats.rankdata(values, axis=-1))


def noisy_urns_evidence(seed, sequences=12, positions=6, colours=5):
    rng = np.random.default_rng(seed)
    task = bic.task("urns", num_dims=colours, context_length=positions)
    probs = rng.dirichlet(np.ones(colours), size=(2, 2, 2, sequences, positions))
    probs[:, 1, :, :, 0] = 1.0 / colours                               # G uniform before any context
    transformer, diversity, step = [], [], []
    for r, D in enumerate((4, 8)):
        for N in (10, 20, 30):
            w = rng.dirichlet(np.ones(2))
            mix = np.einsum("s,s...->...", w, probs[r]) * np.exp(0.2 * rng.standard_normal(probs.shape[2:]))
            transformer.append(np.log(mix / mix.sum(-1, keepdims=True)))
            diversity.append(D)
            step.append(N)
    ones = np.ones((2, 2))
    return evidence_from_arrays(task, ("memorizing", "generalizing"), np.stack(transformer), np.log(probs),
                                diversity=diversity, step=step, loss=ones, complexity=ones, cutoff="all")


def test_tabulated_metrics_equal_the_token_pass_at_the_nodes():
    ev = noisy_urns_evidence(3)
    nodes = ev.statistics["metric_node_value"].values
    for k in (0, 1, 17, 64, 127, 128, 256, 511, 512):
        weights = np.tile([nodes[k], 1 - nodes[k]], (ev.num_conditions, 1))
        tables = metrics.condition_metrics(ev, weights)
        tokens = metrics.condition_metrics(ev, weights, from_tokens=True)
        for name in ("tvd", "spearman"):
            np.testing.assert_allclose(tables[name], tokens[name], rtol=1e-9, atol=1e-12, err_msg=f"{name} node {k}")
    kl_nodes = ev.statistics["node_value"].values                      # kl: at the objective's nodes
    for k in (0, 1, 64, 128):
        weights = np.tile([kl_nodes[k], 1 - kl_nodes[k]], (ev.num_conditions, 1))
        np.testing.assert_allclose(metrics.condition_metrics(ev, weights)["kl"],
                                   metrics.condition_metrics(ev, weights, from_tokens=True)["kl"], rtol=1e-9)


def test_between_nodes_tvd_reads_from_above_and_kl_to_hermite_accuracy():
    ev = noisy_urns_evidence(4)
    weights = np.random.default_rng(5).dirichlet(np.ones(2), size=ev.num_conditions)
    tables = metrics.condition_metrics(ev, weights)
    tokens = metrics.condition_metrics(ev, weights, from_tokens=True)
    # TVD is convex in w and read linearly: from above, close (nodes ~0.003 apart mid-range).
    assert (tables["tvd"] >= tokens["tvd"] - 1e-12).all()
    np.testing.assert_allclose(tables["tvd"], tokens["tvd"], atol=5e-4)
    np.testing.assert_allclose(tables["kl"], tokens["kl"], rtol=1e-5)
    np.testing.assert_allclose(tables["spearman"], tokens["spearman"], atol=0.02)


def test_the_metrics_of_a_fit_read_no_token(monkeypatch):
    ev = noisy_urns_evidence(6)
    weights = np.random.default_rng(7).dirichlet(np.ones(2), size=ev.num_conditions)

    def refuse(*args, **kwargs):
        raise AssertionError("the metrics read the tokens")

    monkeypatch.setattr(ev.source, "blocks", refuse)
    table, summary, base = metrics.fit_metrics(ev, weights, np.ones(ev.num_conditions, bool), seed=0)
    assert np.isfinite(table["tvd"]).all() and summary["all"]["id"]["kl"] > 0
    assert base["constant"]["all"]["id"]["spearman"] is None           # uniform h has no ranks
    with pytest.raises(AssertionError, match="read the tokens"):
        metrics.condition_metrics(ev, weights, from_tokens=True)


def test_many_colours_keep_the_token_pass_for_spearman():
    """Spearman's crossings are per pair of colours: above `PAIRWISE_RANKS` colours nothing is
    tabulated, and the metrics are read from the tokens, exactly."""
    ev = noisy_urns_evidence(8, sequences=4, positions=2, colours=40)
    assert "metric_split" not in ev.statistics.dims
    weights = np.random.default_rng(9).dirichlet(np.ones(2), size=ev.num_conditions)
    np.testing.assert_allclose(metrics.condition_metrics(ev, weights)["tvd"],
                               metrics.condition_metrics(ev, weights, from_tokens=True)["tvd"])
