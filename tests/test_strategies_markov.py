"""Markov strategies (docs/model.md#markov-strategies) agree with brute-force float64 Bayes rules.

The references recompute every posterior from scratch at each row with Python loops over
sequences and rows (and NumPy over the pool), from the definitions: counts of the transitions
and states seen, products of the chains' probabilities. They share no code with the package.
"""

import bz2
import lzma
import zlib

import numpy as np
import pytest
import zstandard

import bayesicl as bic
from bayesicl.strategies.complexity import code_length, data_length, prior_parameters
from bayesicl.strategies.markov import stationary_distributions


def brute_bigram_memorizing(tokens, pool, prior=None):
    """Σ_i π_i P_i[x_t] with log π_i = log p_i + Σ_{k<t} log P_i[x_k, x_{k+1}]; row 0 = 1/V."""
    x = np.asarray(tokens)[:, 1:]
    pool = np.asarray(pool, dtype=np.float64)
    D, V = pool.shape[:2]
    log_prior = np.log(np.full(D, 1.0 / D) if prior is None else np.asarray(prior))
    out = np.empty((x.shape[0], x.shape[1], V))
    for b in range(x.shape[0]):
        out[b, 0] = 1.0 / V
        for t in range(1, x.shape[1]):           # row t: x_t = x[b, t − 1]
            log_post = log_prior.copy()
            for k in range(1, t):                 # transitions x_k → x_{k+1}, k < t
                log_post += np.log(pool[:, x[b, k - 1], x[b, k]])
            post = np.exp(log_post - log_post.max())
            out[b, t] = (post / post.sum()) @ pool[:, x[b, t - 1]]
    return out


def brute_bigram_generalizing(tokens, V):
    x = np.asarray(tokens)[:, 1:]
    out = np.empty((x.shape[0], x.shape[1], V))
    for b in range(x.shape[0]):
        out[b, 0] = 1.0 / V
        for t in range(1, x.shape[1]):
            u = x[b, t - 1]
            n = np.array([sum(1 for k in range(1, t) if x[b, k - 1] == u and x[b, k] == v)
                          for v in range(V)], dtype=np.float64)
            out[b, t] = (n + 1) / (n.sum() + V)
    return out


def brute_stationary(pool):
    """The left eigenvector of eigenvalue 1 of each P_i, normalized (not a linear solve)."""
    out = []
    for P in np.asarray(pool, dtype=np.float64):
        values, vectors = np.linalg.eig(P.T)
        s = np.real(vectors[:, np.argmin(np.abs(values - 1))])
        out.append(s / s.sum())
    return np.array(out)


def brute_unigram_memorizing(tokens, stationary, prior=None):
    """Σ_i ρ_i s_i with log ρ_i = log p_i + Σ_{k≤t} log s_i[x_k]; row 0 is the prior mean."""
    x = np.asarray(tokens)[:, 1:]
    D, V = stationary.shape
    log_prior = np.log(np.full(D, 1.0 / D) if prior is None else np.asarray(prior))
    out = np.empty((x.shape[0], x.shape[1], V))
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            log_post = log_prior + sum((np.log(stationary[:, x[b, k - 1]]) for k in range(1, t + 1)),
                                       np.zeros(D))
            post = np.exp(log_post - log_post.max())
            out[b, t] = (post / post.sum()) @ stationary
    return out


def brute_unigram_generalizing(tokens, V):
    x = np.asarray(tokens)[:, 1:]
    out = np.empty((x.shape[0], x.shape[1], V))
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            c = np.bincount(x[b, :t], minlength=V).astype(np.float64)
            out[b, t] = (c + 1) / (t + V)
    return out


def strategies(task, pool, **kwargs):
    return {"M2": bic.strategies.memorizing(task, pool, order=2, **kwargs),
            "G2": bic.strategies.generalizing(task, order=2),
            "M1": bic.strategies.memorizing(task, pool, order=1, **kwargs),
            "G1": bic.strategies.generalizing(task, order=1)}


@pytest.mark.parametrize("V, T, D", [(2, 6, 3), (4, 20, 16), (8, 24, 64)])
def test_each_strategy_is_its_bayes_rule_on_sampled_sequences(V, T, D):
    task = bic.task("markov", num_states=V, context_length=T)
    pool = task.pool(D, seed=5)
    batch = task.sample(pool, 4, seed=6)
    s = strategies(task, pool)
    expected = {"M2": brute_bigram_memorizing(batch["tokens"], pool),
                "G2": brute_bigram_generalizing(batch["tokens"], V),
                "M1": brute_unigram_memorizing(batch["tokens"], brute_stationary(pool)),
                "G1": brute_unigram_generalizing(batch["tokens"], V)}
    for name, strategy in s.items():
        got = strategy(batch)
        assert got.shape == (4, T, V), name
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-5, err_msg=name)


def test_memorizing_with_a_zipf_prior_weights_the_pool_by_the_sampling_law():
    task = bic.task("markov", num_states=3, context_length=10)
    pool = task.pool(12, seed=2)
    batch = task.sample(pool, 3, seed=1, zipf=1.2)
    p = np.arange(1, 13, dtype=np.float64) ** -1.2
    p /= p.sum()
    s = strategies(task, pool, zipf=1.2)
    np.testing.assert_allclose(s["M2"](batch), brute_bigram_memorizing(batch["tokens"], pool, p), atol=1e-5)
    np.testing.assert_allclose(s["M1"](batch), brute_unigram_memorizing(batch["tokens"], brute_stationary(pool), p),
                               atol=1e-5)
    np.testing.assert_allclose(s["M1"](batch)[:, 0], np.broadcast_to(p @ brute_stationary(pool), (3, 3)), atol=1e-6)


def test_row_zero_is_uniform_except_for_unigram_memorizing_which_is_the_prior_mean():
    task = bic.task("markov", num_states=5, context_length=4)
    pool = task.pool(7, seed=0)
    batch = task.sample(pool, 3, seed=0)
    s = strategies(task, pool)
    for name in ("M2", "G2", "G1"):
        np.testing.assert_allclose(s[name](batch)[:, 0], 0.2, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(s["M1"](batch)[:, 0], np.broadcast_to(brute_stationary(pool).mean(0), (3, 5)),
                               atol=1e-6)


def test_stationary_distributions_are_invariant_under_their_chain():
    pool = bic.task("markov", num_states=6, context_length=4).pool(50, seed=3)
    s = stationary_distributions(pool)
    np.testing.assert_allclose(np.einsum("du,duv->dv", s, pool), s, atol=1e-12)
    np.testing.assert_allclose(s, brute_stationary(pool), atol=1e-10)


def test_bigram_generalizing_is_the_posterior_predictive_under_the_dirichlet_prior():
    """G2 against a Monte Carlo integral over the prior: E[P[x_t, v] Π P[x_k, x_{k+1}]] / E[Π …]."""
    V = 2
    rng = np.random.default_rng(0)
    chains = rng.dirichlet(np.ones(V), size=(400_000, V))                    # prior draws
    tokens = np.array([[V, 0, 0, 1, 0, 0, 0, 1, 1]])
    x = tokens[0, 1:]
    likelihood = np.ones(len(chains))
    expected = []
    for t in range(1, len(x)):
        if t > 1:
            likelihood = likelihood * chains[:, x[t - 2], x[t - 1]]
        expected.append((likelihood[:, None] * chains[:, x[t - 1]]).sum(0) / likelihood.sum())
    task = bic.task("markov", num_states=V, context_length=len(x))
    got = bic.strategies.generalizing(task)({"tokens": tokens})[0, 1:]
    np.testing.assert_allclose(got, np.array(expected), atol=5e-3)


def test_bigram_memorizing_identifies_the_chain_that_generated_a_long_sequence():
    task = bic.task("markov", num_states=4, context_length=200)
    pool = task.pool(32, seed=1)
    batch = task.sample(pool, 6, seed=2)
    last = bic.strategies.memorizing(task, pool)(batch)[:, -1]
    truth = batch["transitions"][np.arange(6), batch["tokens"][:, -2]]
    np.testing.assert_allclose(last, truth, atol=1e-3)


@pytest.mark.parametrize("T", [384])
def test_strategies_are_finite_and_exact_at_the_largest_pool_and_context(T):
    task = bic.task("markov", num_states=8, context_length=T)
    pool = task.pool(4096, seed=0)
    batch = task.sample(pool, 2, seed=1)
    s = strategies(task, pool)
    outputs = {name: strategy(batch) for name, strategy in s.items()}
    for name, probs in outputs.items():
        assert np.all(np.isfinite(probs)) and np.all(probs >= 0), name
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5, err_msg=name)
    # Exactness at this size, against vectorized float64 posteriors (the loops above are slow).
    x = batch["tokens"][:, 1:]
    log_step = np.log(pool)[:, x[:, :-1], x[:, 1:]]                        # (D, B, T − 1)
    log_post = np.concatenate([np.zeros((4096, 2, 1)), np.cumsum(log_step, axis=-1)], axis=-1)[..., :-1]
    post = np.exp(log_post - log_post.max(0))
    post /= post.sum(0)                                                     # (D, B, T − 1): rows 1..T−1
    rows = pool[:, x[:, :-1]]                                               # (D, B, T − 1, V)
    np.testing.assert_allclose(outputs["M2"][:, 1:], np.einsum("dbt,dbtv->btv", post, rows), atol=1e-5)
    stationary = brute_stationary(pool)
    log_state = np.log(stationary)[:, x]                                    # (D, B, T)
    log_rho = np.concatenate([np.zeros((4096, 2, 1)), np.cumsum(log_state, axis=-1)], axis=-1)[..., :-1]
    rho = np.exp(log_rho - log_rho.max(0))
    rho /= rho.sum(0)
    np.testing.assert_allclose(outputs["M1"], np.einsum("dbt,dv->btv", rho, stationary), atol=1e-5)


def test_order_is_checked_and_named():
    task = bic.task("markov", num_states=3, context_length=5)
    pool = task.pool(4, seed=0)
    assert bic.strategies.memorizing(task, pool).name == "M2"         # the default is bigram
    assert sorted(bic.strategies.for_task(task, pool, names=("M1", "G2"))) == ["G2", "M1"]
    with pytest.raises(bic.BayesiclError, match="order 1 or 2"):
        bic.strategies.memorizing(task, pool, order=3)
    with pytest.raises(bic.BayesiclError, match="takes no order"):
        bic.strategies.generalizing(bic.task("urns", num_dims=3, context_length=5), order=2)


# -- L̄ and K --------------------------------------------------------------------------------------

def test_loss_is_the_transition_kl_on_rows_one_to_t_minus_one():
    task = bic.task("markov", num_states=3, context_length=6)
    pool = task.pool(5, seed=0)
    batch = task.sample(pool, 4, seed=3)
    g2 = bic.strategies.generalizing(task)
    probs = g2(batch)
    expected = np.empty((4, 5))
    for b in range(4):
        for t in range(1, 6):
            truth = batch["transitions"][b, batch["tokens"][b, t]]          # P[x_t]
            expected[b, t - 1] = np.sum(truth * np.log(truth / probs[b, t]))
    np.testing.assert_allclose(bic.strategies.per_position_loss(task, g2, batch), expected, atol=1e-12)


def test_losses_order_as_the_bayes_rules_imply():
    """On the training pool M2 is Bayes-optimal: no other strategy beats it; counting
    transitions (G2) beats counting states (G1) once the context holds enough of them."""
    task = bic.task("markov", num_states=4, context_length=32)
    pool = task.pool(8, seed=1)
    losses = {name: bic.strategies.loss(task, s, pool, num_sequences=600, seed=0)
              for name, s in strategies(task, pool).items()}
    assert losses["M2"] < min(losses["G2"], losses["M1"], losses["G1"])
    assert losses["G2"] < losses["G1"]


def independent_bits(data: bytes) -> float:
    sizes = [len(data), len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
             len(bz2.compress(data, 9)), len(zlib.compress(data, 9)),
             len(zstandard.ZstdCompressor(level=22).compress(data))]
    return 8.0 * min(sizes)


def test_complexity_is_code_plus_the_compressed_prior_parameters():
    task = bic.task("markov", num_states=4, context_length=8)
    pool = task.pool(16, seed=0)
    s = strategies(task, pool)
    expected_data = {"M2": pool.reshape(16, 16), "M1": brute_stationary(pool),
                     "G2": np.ones((4, 4)), "G1": np.ones(4)}
    for name, strategy in s.items():
        np.testing.assert_allclose(prior_parameters(strategy), expected_data[name], atol=1e-12)
        bits = independent_bits(np.ascontiguousarray(prior_parameters(strategy), "<f8").tobytes())
        assert data_length(strategy) == bits
        assert bic.strategies.complexity(strategy) == code_length("markov", strategy.rule) + bits
    # Memorizing costs more bits the more chains it holds, and M2 holds V× more numbers than M1.
    bits = {D: [bic.strategies.complexity(bic.strategies.memorizing(task, task.pool(D, seed=0), order=o))
                for o in (1, 2)] for D in (4, 64, 1024)}
    assert bits[4][0] < bits[64][0] < bits[1024][0] and bits[4][1] < bits[64][1] < bits[1024][1]
    assert all(m1 < m2 for m1, m2 in bits.values())


def test_canonical_sources_fed_the_measured_prior_parameters_reproduce_the_strategies():
    """K_code + K_data describe the predictor: each canonical rule on the bytes K_data
    compresses gives the library's outputs."""
    import importlib

    task = bic.task("markov", num_states=4, context_length=12)
    pool = task.pool(16, seed=2)
    batch = task.sample(pool, 3, seed=3)
    shapes = {"M2": (16, 4, 4), "M1": (16, 4), "G2": (4, 4), "G1": (4,)}
    s = dict(strategies(task, pool), C=bic.strategies.constant(task))
    shapes["C"] = (4,)
    for name, strategy in s.items():
        rule = importlib.import_module(f"bayesicl.strategies.canonical.markov_{strategy.rule}").predict
        parameters = np.frombuffer(prior_parameters(strategy).tobytes(), dtype=np.float64).reshape(shapes[name])
        library = strategy(batch)
        for b in range(3):
            np.testing.assert_allclose(rule(parameters, list(batch["tokens"][b, 1:])), library[b],
                                       atol=1e-5, err_msg=name)
