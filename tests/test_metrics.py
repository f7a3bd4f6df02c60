"""Metrics of docs/model.md#metrics against direct NumPy/SciPy computations, one (sequence, position) at a time."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import bayesicl as bic
from bayesicl import metrics
from bayesicl.errors import BayesiclError
from bayesicl.evidence import evidence_from_arrays
from bayesicl.seeds import stream

STRATEGIES = ("memorizing", "generalizing")
SEQUENCES, POSITIONS = 6, 4


def urns_evidence(rng, num_strategies=2, steps=(10, 20, 30, 40), diversities=(4, 8)):
    """Two runs (D = 4, 8) × four checkpoints of noisy strategy mixtures, 5 colours."""
    task = bic.task("urns", num_dims=5, context_length=POSITIONS)
    kinds = ("memorizing", "generalizing", "constant")[:num_strategies]
    probs = rng.dirichlet(np.ones(5), size=(len(diversities), num_strategies, 2, SEQUENCES, POSITIONS))
    transformer, diversity, step = [], [], []
    for r, D in enumerate(diversities):
        for n, N in enumerate(steps):
            w = rng.dirichlet(np.ones(num_strategies))
            mix = np.einsum("s,s...->...", w, probs[r]) * np.exp(0.2 * rng.standard_normal(probs.shape[2:]))
            transformer.append(np.log(mix / mix.sum(-1, keepdims=True)))
            diversity.append(D)
            step.append(N)
    ones = np.ones((len(diversities), num_strategies))
    return evidence_from_arrays(task, kinds, np.stack(transformer), np.log(probs), diversity=diversity, step=step,
                                loss=ones, complexity=ones, cutoff="all")


@pytest.mark.parametrize("read", ["tokens", "tables at nodes"])
def test_tvd_and_spearman_match_direct_computations(read):
    rng = np.random.default_rng(0)
    ev = urns_evidence(rng)
    weights = rng.dirichlet(np.ones(2), size=ev.num_conditions)
    if read == "tables at nodes":            # exact there (bayesicl.evidence.metric_tables)
        nodes = ev.statistics["metric_node_value"].values
        weights[:, 0] = nodes[np.searchsorted(nodes, weights[:, 0])]
        weights[:, 1] = 1 - weights[:, 0]
    table = metrics.condition_metrics(ev, weights, from_tokens=read == "tokens")
    assert len(table) == 2 * ev.num_conditions
    strategy = np.exp(ev.arrays["strategy"].values.astype(np.float64))
    transformer = np.exp(ev.arrays["transformer"].values.astype(np.float64))
    for c, run in enumerate(ev.conditions["run"]):
        for k, split in enumerate(("id", "ood")):
            h = weights[c, 0] * strategy[run, 0, k] + weights[c, 1] * strategy[run, 1, k]
            t = transformer[c, k] / transformer[c, k].sum(-1, keepdims=True)
            tvd = np.mean([0.5 * np.abs(h[b, p] - t[b, p]).sum()
                           for b in range(SEQUENCES) for p in range(POSITIONS)])
            rho = np.mean([scipy.stats.spearmanr(h[b, p], t[b, p]).statistic
                           for b in range(SEQUENCES) for p in range(POSITIONS)])
            row = table[(table["condition"] == c) & (table["split"] == split)].iloc[0]
            assert row["tvd"] == pytest.approx(tvd, rel=1e-5)
            assert row["spearman"] == pytest.approx(rho, rel=1e-6)


def test_average_ranks_match_scipy_with_ties():
    rng = np.random.default_rng(9)
    values = rng.integers(0, 4, size=(50, 7)).astype(float)          # many ties
    values[0] = 0.25                                                   # a constant row
    np.testing.assert_array_equal(metrics.average_ranks(values), scipy.stats.rankdata(values, axis=-1))
    continuous = rng.random((20, 7))
    np.testing.assert_array_equal(metrics.average_ranks(continuous), scipy.stats.rankdata(continuous, axis=-1))
    assert np.isnan(metrics.rank_correlation(values[0], values[1]))


def test_r2_matches_a_direct_computation_for_regression():
    rng = np.random.default_rng(1)
    task = bic.task("regression", num_dims=2, context_length=POSITIONS)
    strategies = rng.standard_normal((1, 2, 2, SEQUENCES, POSITIONS, 1))
    transformer = 0.6 * strategies[:, 0] + 0.4 * strategies[:, 1] + 0.3 * rng.standard_normal((3, 2, SEQUENCES, POSITIONS, 1))
    ev = evidence_from_arrays(task, STRATEGIES, transformer, strategies, diversity=[4, 4, 4], step=[1, 2, 3],
                              loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    weights = np.array([[0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
    table = metrics.condition_metrics(ev, weights)
    for c in range(3):
        for k, split in enumerate(("id", "ood")):
            truth = ev.arrays["transformer"].values[c, k].astype(np.float64).ravel()
            h = (weights[c, 0] * ev.arrays["strategy"].values[0, 0, k]
                 + weights[c, 1] * ev.arrays["strategy"].values[0, 1, k]).astype(np.float64).ravel()
            r2 = 1 - ((truth - h) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
            row = table[(table["condition"] == c) & (table["split"] == split)].iloc[0]
            assert row["r2"] == pytest.approx(r2, rel=1e-6)
            assert row["mse"] == pytest.approx(((truth - h) ** 2).mean(), rel=1e-5)


def test_agreement_is_the_fraction_of_queries_with_the_same_argmax_label():
    rng = np.random.default_rng(2)
    task = bic.task("classification", num_dims=2, context_length=3)
    strategies = np.log(rng.dirichlet(np.ones(2), size=(1, 2, 3, 40, 1)))      # splits id, ood, iwl
    transformer = np.log(rng.dirichlet(np.ones(2), size=(2, 3, 40, 1)))
    ev = evidence_from_arrays(task, STRATEGIES, transformer, strategies, diversity=[4, 4], step=[1, 2],
                              loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    nodes = ev.statistics["metric_node_value"].values
    weights = np.array([[0.3, 0.7], [0.9, 0.1], [nodes[40], 1 - nodes[40]], [nodes[420], 1 - nodes[420]]])
    tokens = metrics.condition_metrics(ev, weights[:2], from_tokens=True)
    tables = metrics.condition_metrics(ev, weights[2:])                 # exact at the nodes
    for c in range(4):
        table = tokens if c < 2 else tables
        c, w = c % 2, weights[c]
        for k, split in enumerate(("id", "ood")):
            h = w[0] * np.exp(strategies[0, 0, k]) + w[1] * np.exp(strategies[0, 1, k])
            agree = np.mean([np.argmax(h[b, 0]) == np.argmax(transformer[c, k, b, 0]) for b in range(40)])
            row = table[(table["condition"] == c) & (table["split"] == split)].iloc[0]
            assert row["agreement"] == pytest.approx(agree)
    assert set(tables["split"]) == {"id", "ood"}                # the IWL probe is never scored


def test_summary_splits_fit_heldout_all_and_correlation_is_pearson_of_weights():
    rng = np.random.default_rng(3)
    ev = urns_evidence(rng)
    weights = rng.dirichlet(np.ones(2), size=ev.num_conditions)
    in_fit = np.array([True, True, False, False] * 2)
    summary = metrics.summarize_metrics(ev, weights, in_fit)
    assert set(summary) == {"fit", "heldout", "all"}
    table = metrics.condition_metrics(ev, weights)
    for subset, mask in (("fit", in_fit), ("heldout", ~in_fit), ("all", np.ones(8, bool))):
        for split in ("id", "ood"):
            leaf = summary[subset][split]
            observed = ev.sel(split=split)["observed_weight"].to_numpy()[mask]
            assert leaf["n_conditions"] == mask.sum()
            assert leaf["correlation"] == pytest.approx(np.corrcoef(weights[mask, 0], observed)[0, 1])
            tvd = table[table["split"] == split]["tvd"].to_numpy()[mask].mean()
            assert leaf["tvd"] == pytest.approx(tvd)


def test_correlation_is_none_with_a_reason_for_fewer_than_three_conditions():
    rng = np.random.default_rng(4)
    ev = urns_evidence(rng)
    in_fit = np.zeros(ev.num_conditions, dtype=bool)
    in_fit[:2] = True
    summary = metrics.summarize_metrics(ev, rng.dirichlet(np.ones(2), size=ev.num_conditions), in_fit)
    assert summary["fit"]["id"]["correlation"] is None
    assert "need 3" in summary["fit"]["id"]["correlation_reason"]
    assert summary["heldout"]["id"]["correlation"] is not None


def test_with_three_strategies_correlation_uses_the_convex_observed_weight():
    rng = np.random.default_rng(5)
    ev = urns_evidence(rng, num_strategies=3)
    weights = rng.dirichlet(np.ones(3), size=ev.num_conditions)
    summary = metrics.summarize_metrics(ev, weights, np.ones(ev.num_conditions, bool))
    observed = ev.sel(split="id", strategy="memorizing")["convex_weight"].to_numpy()
    assert summary["all"]["id"]["observed_weight"] == "convex"
    assert summary["all"]["id"]["correlation"] == pytest.approx(np.corrcoef(weights[:, 0], observed)[0, 1])


def test_baselines_constant_strategy_and_seeded_random_weights():
    rng = np.random.default_rng(6)
    ev = urns_evidence(rng)
    in_fit = np.array([True, True, True, False] * 2)
    result = metrics.baselines(ev, in_fit, seed=7)
    # Constant strategy: uniform over the 5 colours.
    transformer = np.exp(ev.arrays["transformer"].values.astype(np.float64))
    transformer /= transformer.sum(-1, keepdims=True)
    tvd = 0.5 * np.abs(transformer[:, 0] - 0.2).sum(-1).mean(axis=(1, 2))   # (C,) on ID
    assert result["constant"]["all"]["id"]["tvd"] == pytest.approx(tvd.mean(), rel=1e-5)
    assert result["constant"]["all"]["id"]["correlation"] is None            # w_M ≡ 0
    assert result["constant"]["all"]["id"]["spearman"] is None               # uniform h has no ranks
    # Random convex weights: Dirichlet(1) from the "random_weights" stream of the seed.
    weights = stream(7, "random_weights").dirichlet(np.ones(2), size=ev.num_conditions)
    assert result["random"] == metrics.summarize_metrics(ev, weights, in_fit)
    assert metrics.baselines(ev, in_fit, seed=7) == result


def test_bad_weights_are_refused():
    rng = np.random.default_rng(8)
    ev = urns_evidence(rng)
    with pytest.raises(BayesiclError, match="shape"):
        metrics.condition_metrics(ev, np.ones((3, 2)) / 2)
    with pytest.raises(BayesiclError, match="sum to 1"):
        metrics.condition_metrics(ev, np.ones((ev.num_conditions, 2)))
