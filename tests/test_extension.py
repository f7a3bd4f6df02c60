"""Plugging a user-registered task family into the strategies, L̄, K and the evidence.

The family here is "coins": urns with two colours under another name, whose strategies are
written by the "user" in this file: M the posterior over the pool's coins, G Laplace's rule
of succession. Every expected value is computed independently inside the tests: outputs by
calling the user's builders directly, K by compressing hand-normalized sources and hand-made
bytes with the compressors themselves, L̄ by averaging a hand-written KL.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import zlib

import numpy as np
import pytest
import zstandard

import bayesicl as bic
from bayesicl.errors import BayesiclError
from bayesicl.evidence import evidence_from_arrays
from bayesicl.families import FAMILIES, register_family, unregister_family

FAMILY = "coins_test_extension"

# The canonical sources as the user writes them, and their normalized text written by hand:
# no docstring, no comment, no layout, no whitespace (docs/model.md#complexity).
MEMORIZING_SOURCE = '''def predict(pool, tokens):
    """Posterior over the pool's coins; mix their next-flip distributions."""
    weights = [1.0] * len(pool)
    rows = []
    for x in tokens[1:]:
        total = sum(weights)
        rows.append([sum(w * p[v] for w, p in zip(weights, pool)) / total for v in (0, 1)])
        weights = [w * p[x] for w, p in zip(weights, pool)]   # Bayes' rule, one flip
    return rows
'''
MEMORIZING_NORMALIZED = ("defpredict(pool,tokens):weights=[1.0]*len(pool)rows=[]forxintokens[1:]:"
                         "total=sum(weights)rows.append([sum((w*p[v]forw,pinzip(weights,pool)))/total"
                         "forvin(0,1)])weights=[w*p[x]forw,pinzip(weights,pool)]returnrows")


def generalizing_reference(concentrations, tokens):
    """Laplace's rule: (count + a) / (t + 2a)."""
    counts = [0, 0]
    rows = []
    for x in tokens[1:]:
        rows.append([(counts[v] + concentrations[v]) / (sum(counts) + sum(concentrations)) for v in (0, 1)])
        counts[x] += 1
    return rows


GENERALIZING_NORMALIZED = ("defgeneralizing_reference(concentrations,tokens):counts=[0,0]rows=[]"
                           "forxintokens[1:]:rows.append([(counts[v]+concentrations[v])/(sum(counts)"
                           "+sum(concentrations))forvin(0,1)])counts[x]+=1returnrows")


def memorizing_build(task, pool):
    log_pool = np.log(pool)                                   # (D, 2)

    def predict(batch):
        x = np.asarray(batch["tokens"])[:, 1:]                # (B, T)
        seen = log_pool.T[x]                                  # (B, T, D): log θ_i[x_k]
        log_post = np.concatenate([np.zeros_like(seen[:, :1]), np.cumsum(seen, 1)[:, :-1]], 1)
        w = np.exp(log_post - log_post.max(-1, keepdims=True))
        return (w / w.sum(-1, keepdims=True)) @ pool          # (B, T, 2)

    return predict


def generalizing_build(task, pool):
    def predict(batch):
        x = np.asarray(batch["tokens"])[:, 1:]
        ones = np.cumsum(x, 1) - x                            # heads before row t
        t = np.arange(x.shape[1])
        p1 = (ones + 1) / (t + 2)
        return np.stack([1 - p1, p1], -1)

    return predict


def kl_loss(task, log_probs, batch):
    theta = np.asarray(batch["theta"])[:, None, :]
    return (theta * (np.log(theta) - log_probs)).sum(-1)


def bits(data: bytes) -> float:
    """8 × min(raw, lzma 9|extreme, bz2 9, zlib 9, zstd 22): docs/model.md#complexity, computed here."""
    return 8.0 * min(len(data), len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
                     len(bz2.compress(data, 9)), len(zlib.compress(data, 9)),
                     len(zstandard.ZstdCompressor(level=22).compress(data)))


@pytest.fixture
def coins():
    """Register the coins family, its M and G and its loss; remove them afterwards."""

    @dataclasses.dataclass(frozen=True)
    class Coins(bic.tasks.Urns):
        family = FAMILY

    bic.tasks.register(Coins)
    bic.strategies.register(FAMILY, "memorizing", memorizing_build, source=MEMORIZING_SOURCE)
    bic.strategies.register(FAMILY, "generalizing", generalizing_build, source=generalizing_reference,
                            parameters=lambda task, pool: np.ones(2))
    bic.strategies.register_loss(FAMILY, kl_loss)
    yield bic.task(FAMILY, num_dims=2, context_length=12)
    unregister_family(FAMILY)


def test_registered_strategies_are_called_like_built_in_ones(coins):
    pool = coins.pool(6, seed=1)
    batch = coins.sample(pool, 5, seed=2)
    made = bic.strategies.for_task(coins, pool, names=("M", "G"))
    assert repr(made["M"]) == f"Strategy(M: memorizing, {FAMILY}, D=6)"
    for name, build, prior in (("M", memorizing_build, pool), ("G", generalizing_build, None)):
        out = made[name](batch)
        assert out.dtype == np.float64 and out.shape == (5, 12, 2)
        np.testing.assert_array_equal(out, build(coins, prior)(batch))
        np.testing.assert_allclose(made[name].log_probs(batch), np.log(out))


def test_registered_strategies_agree_with_their_canonical_rules(coins):
    # The user's fast code and the sources K_code measures state the same Bayes rules.
    pool = coins.pool(5, seed=0)
    batch = coins.sample(pool, 4, seed=3)
    namespace: dict = {}
    exec(MEMORIZING_SOURCE, namespace)
    for strategy, reference, prior in ((bic.strategies.memorizing(coins, pool), namespace["predict"], pool),
                                       (bic.strategies.generalizing(coins), generalizing_reference, [1, 1])):
        expected = [reference(prior, list(tokens)) for tokens in batch["tokens"]]
        np.testing.assert_allclose(strategy(batch), expected, atol=1e-12)


def test_complexity_compresses_the_registered_source_and_prior_parameters(coins):
    pool = coins.pool(16, seed=1)
    m, g = bic.strategies.memorizing(coins, pool), bic.strategies.generalizing(coins)
    k_m = bits(MEMORIZING_NORMALIZED.encode()) + bits(np.ascontiguousarray(pool, "<f8").tobytes())
    # The source of G was given as a function: K_code reads it with inspect.
    k_g = bits(GENERALIZING_NORMALIZED.encode()) + bits(np.ones(2, "<f8").tobytes())
    assert bic.strategies.complexity(m) == k_m
    assert bic.strategies.complexity(g) == k_g
    # More memorized coins cost more bits; G's cost does not depend on D.
    assert bic.strategies.complexity(bic.strategies.memorizing(coins, coins.pool(64, seed=1))) > k_m


def test_loss_uses_the_registered_per_position_loss(coins):
    pool = coins.pool(4, seed=0)
    g = bic.strategies.generalizing(coins)
    # With 4 sequences the median of means is over 2 blocks of 2: the plain mean.
    sequences = coins.sample(pool, 4, seed=7, purpose="loss_sequences")
    p = generalizing_build(coins, None)(sequences)
    theta = sequences["theta"][:, None, :]
    expected = float(np.mean((theta * (np.log(theta) - np.log(p))).sum(-1)))
    assert bic.strategies.loss(coins, g, pool, num_sequences=4, seed=7) == pytest.approx(expected, rel=1e-12)


def test_evidence_computes_the_terms_of_a_registered_family(coins):
    # evidence_from_arrays given pools computes L̄ and K through the registered strategies.
    diversities = [2, 8]
    outputs, pools = [], {}
    for D in diversities:
        pools[D] = coins.pool(D, seed=0)
        evals = coins.eval_sets(pools[D], seed=0, num_sequences=6)
        outputs.append([[np.log(s(evals[split])) for split in ("id", "ood")]
                        for s in bic.strategies.for_task(coins, pools[D]).values()])
    outputs = np.array(outputs)                                          # (R, S, split, B, T, 2)
    transformer = np.stack([0.5 * outputs[0, 0] + 0.5 * outputs[0, 1], outputs[1, 1]])
    evidence = evidence_from_arrays(coins, ("memorizing", "generalizing"), transformer, outputs,
                                    diversity=diversities, step=[10, 10], pools=pools,
                                    loss_sequences=16, cutoff="all", cache=False)
    for D in diversities:
        made = bic.strategies.for_task(coins, pools[D])
        for kind, strategy in made.items():
            assert evidence.complexity.loc[D, kind] == bic.strategies.complexity(strategy)
            assert evidence.loss.loc[D, kind] == pytest.approx(
                bic.strategies.loss(coins, strategy, pools[D], num_sequences=16, seed=0), rel=1e-12)
    assert evidence.sel(diversity=diversities[1], split="id")["observed_weight"].item() == pytest.approx(0.0, abs=1e-6)


def test_logged_runs_of_a_registered_family_become_evidence(coins, tmp_path):
    # A user's training loop logs runs of the new family; build_evidence reads them back.
    from bayesicl.evidence import build_evidence
    from bayesicl.runs import RunWriter

    for D in (2, 8):
        pool = coins.pool(D, seed=0)
        evals = coins.eval_sets(pool, seed=0, num_sequences=6)
        writer = RunWriter(tmp_path / f"D{D}", coins, pool, evals, diversity=D, seed=0)
        m, g = bic.strategies.memorizing(coins, pool), bic.strategies.generalizing(coins)
        for step, weight in ((20, 0.0), (80, 1.0)):       # G first, then M
            writer.log(step, {s: np.log(weight * m(b) + (1 - weight) * g(b)) for s, b in evals.items()})
        writer.finish()
    evidence = build_evidence(tmp_path, loss_sequences=16, cache=False)
    assert evidence.task.family == FAMILY
    np.testing.assert_allclose(evidence.sel(split="id")["observed_weight"], [0, 1, 0, 1], atol=1e-5)


def test_cached_terms_follow_edits_of_a_registered_strategy(coins, tmp_path, monkeypatch):
    # Re-registering M with other code under the same family name must not reuse cached L̄.
    from bayesicl.evidence.terms import strategy_terms

    monkeypatch.setenv("BAYESICL_CACHE_DIR", str(tmp_path))
    pools = {4: coins.pool(4, seed=0)}

    def terms():
        loss, _ = strategy_terms(coins, ("memorizing",), pools, num_sequences=16, cache=True)
        return float(loss.loc[4, "memorizing"])

    first = terms()
    assert terms() == first                                   # a cache hit gives the same value

    def uniform_build(task, pool):
        return lambda batch: np.full((len(batch["tokens"]), task.context_length, 2), 0.5)

    bic.strategies.register(FAMILY, "memorizing", uniform_build, source=MEMORIZING_SOURCE)
    uniform = bic.strategies.memorizing(coins, pools[4])
    assert terms() == pytest.approx(bic.strategies.loss(coins, uniform, pools[4], num_sequences=16, seed=0),
                                    rel=1e-12) != first


def test_registration_refuses_bad_input(coins):
    with pytest.raises(BayesiclError, match="register it first"):
        bic.strategies.register("no_such_family", "memorizing", memorizing_build)
    with pytest.raises(BayesiclError, match="built-in strategies"):
        bic.strategies.register("urns", "memorizing", memorizing_build)
    with pytest.raises(BayesiclError, match="built-in loss"):
        bic.strategies.register_loss("urns", kl_loss)
    with pytest.raises(BayesiclError, match="unknown strategy kind"):
        bic.strategies.register(FAMILY, "bigram", memorizing_build)
    with pytest.raises(BayesiclError, match="does not parse"):
        bic.strategies.register(FAMILY, "constant", generalizing_build, source="def f(:")
    with pytest.raises(BayesiclError, match="callables"):
        bic.strategies.register(FAMILY, "constant", "not a function")


def test_registered_families_refuse_what_they_cannot_do(coins):
    pool = coins.pool(4, seed=0)
    batch = coins.sample(pool, 3, seed=0)
    with pytest.raises(BayesiclError, match="registered: memorizing, generalizing"):
        bic.strategies.constant(coins)
    with pytest.raises(BayesiclError, match="uniform prior"):
        bic.strategies.memorizing(coins, pool, zipf=1.0)
    # K needs the source and, for G and C, the prior parameters.
    bic.strategies.register(FAMILY, "constant", lambda task, pool: lambda b: np.full((len(b["tokens"]), 12, 2), 0.5))
    constant = bic.strategies.constant(coins)
    assert constant(batch).shape == (3, 12, 2)
    with pytest.raises(BayesiclError, match="without a canonical source"):
        bic.strategies.complexity(constant)
    bic.strategies.register(FAMILY, "constant", lambda task, pool: lambda b: np.full((len(b["tokens"]), 12, 2), 0.5),
                            source="def predict(d):\n    return [1 / d] * d\n")
    with pytest.raises(BayesiclError, match="without parameters"):
        bic.strategies.complexity(bic.strategies.constant(coins))
    # A predictor returning the wrong number of sequences, or NaN, is caught at the call.
    bic.strategies.register(FAMILY, "constant", lambda task, pool: lambda b: np.zeros((1, 12, 2)))
    with pytest.raises(BayesiclError, match=r"expected \(3, \.\.\.\)"):
        bic.strategies.constant(coins)(batch)
    bic.strategies.register(FAMILY, "constant", lambda task, pool: lambda b: np.full((3, 12, 2), np.nan))
    with pytest.raises(BayesiclError, match="NaN"):
        bic.strategies.constant(coins)(batch)
    # Without a registered loss there is no L̄.
    register_family(dataclasses.replace(FAMILIES[FAMILY], loss=None))
    with pytest.raises(BayesiclError, match="register_loss"):
        bic.strategies.loss(coins, bic.strategies.generalizing(coins), pool, num_sequences=4)
