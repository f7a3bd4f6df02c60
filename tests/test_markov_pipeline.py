"""Markov runs through the pipeline: run format → four-strategy evidence → fit → report, figure.

The "transformer" here is an exact convex mixture of the four strategies with known weights,
so the observed convex weights, the summed weights w_mem = w_M1 + w_M2 and w_bigram =
w_M2 + w_G2, and the recovered (α, β, γ) can be checked against the numbers put in.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import bayesicl as bic
from bayesicl import demo, observe, rational
from bayesicl.evidence import build_evidence
from bayesicl.inference.synthetic import synthetic_evidence
from bayesicl.runs import RunWriter

STRATEGIES = ("M2", "G2", "M1", "G1")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESICL_CACHE_DIR", str(tmp_path / "cache"))


def mixture_log_probs(made, batch, weights):
    probs = sum(w * made[s](batch) for s, w in zip(STRATEGIES, weights))
    return np.log(probs)


def test_logged_markov_runs_give_four_strategy_evidence_with_the_mixture_weights(tmp_path):
    task = bic.task("markov", num_states=3, context_length=12)
    weights = {4: [0.1, 0.2, 0.3, 0.4], 16: [0.6, 0.1, 0.3, 0.0]}
    for D, w in weights.items():
        pool = task.pool(D, seed=0)
        evals = task.eval_sets(pool, seed=0, num_sequences=24)
        made = bic.strategies.for_task(task, pool, STRATEGIES)
        writer = RunWriter(tmp_path / f"D{D}", task, pool, evals, diversity=D, seed=0)
        for step in (20, 80):
            writer.log(step, {s: mixture_log_probs(made, b, w) for s, b in evals.items()})
        writer.finish()
    evidence = build_evidence(tmp_path, loss_sequences=200, cache=False)
    assert evidence.strategies == STRATEGIES                      # the family's default set
    assert evidence.arrays["scored"].values.tolist() == [False] + [True] * 11
    for D, w in weights.items():
        convex = evidence.sel(diversity=D, split="id")["convex_weight"]
        for s, expected in zip(STRATEGIES, w):
            np.testing.assert_allclose(convex.sel(strategy=s), expected, atol=0.02, err_msg=f"D={D} {s}")


def test_summed_weights_and_the_dominant_strategy():
    w = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.1, 0.3]])
    sums = observe.summed_weights(w, STRATEGIES, bic.strategies.weight_groups("markov"))
    np.testing.assert_allclose(sums["w_mem"], [0.4, 0.6])           # M1 + M2
    np.testing.assert_allclose(sums["w_bigram"], [0.3, 0.6])        # M2 + G2
    assert observe.dominant_strategy(w, STRATEGIES).tolist() == ["G1", "M2"]
    with pytest.raises(bic.BayesiclError, match="not among"):
        observe.summed_weights(w, ("M", "G", "C", "X"), {"w_mem": ("M1", "M2")})


@pytest.fixture(scope="module")
def four_strategy_fit(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BAYESICL_CACHE_DIR", str(cache))
        task = bic.task("markov", num_states=3, context_length=16)
        evidence = synthetic_evidence(task, [2, 4, 8, 16, 64], np.geomspace(10, 1e6, 9).round().astype(int),
                                      params=(0.5, 0.3, 1.0), strategies=STRATEGIES, num_sequences=12,
                                      loss_sequences=400)
        return bic.fit(evidence, method="map", holdout=0.2, random_starts=2)


def test_a_four_strategy_fit_recovers_the_parameters_and_reports_the_summed_weights(four_strategy_fit):
    fit = four_strategy_fit
    for name, true in zip(rational.PARAMETERS, (0.5, 0.3, 1.0)):
        assert fit.params[name] == pytest.approx(true, rel=0.05), name
    lines = demo.strategies_report(fit)
    text = "\n".join(lines)
    assert "w_mem" in text and "w_bigram" in text
    # The observed weights are the model's own: the summed weights correlate almost perfectly.
    rows = fit.conditions[(fit.conditions["split"] == "id") & fit.conditions["modeled"]]
    for name, members in bic.strategies.weight_groups("markov").items():
        observed = rows[[f"observed_{m}" for m in members]].sum(axis=1)
        predicted = rows[[f"predicted_{m}" for m in members]].sum(axis=1)
        if observed.std() > 0.01:
            assert np.corrcoef(observed, predicted)[0, 1] > 0.98, name
    # Every exchange of dominance happens where the two weights are equal.
    for diversity, a, b, step in demo.dominance_exchanges(fit):
        loss = fit.loss.loc[diversity, [a, b]].to_numpy()
        bits = fit.complexity.loc[diversity, [a, b]].to_numpy()
        eta, _ = rational.log_weights(tuple(fit.params[k] for k in rational.PARAMETERS), loss, bits, step)
        assert float(eta[0]) == pytest.approx(float(eta[1]), abs=1e-6)


def test_the_strategy_phase_figure_draws_dominance_and_summed_weights(four_strategy_fit, tmp_path):
    assert "strategy_phases" in bic.plot.figures_for(four_strategy_fit)
    fig = bic.plot.strategy_phases(four_strategy_fit)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any("dominant" in t for t in titles) and any("w_mem" in t for t in titles) \
        and any("w_bigram" in t for t in titles)
    fig.savefig(tmp_path / "phases.png")
    plt.close(fig)
    assert (tmp_path / "phases.png").read_bytes()[:4] == b"\x89PNG"
