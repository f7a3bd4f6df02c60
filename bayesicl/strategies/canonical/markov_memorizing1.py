"""Canonical markov unigram memorizing predictor M1 (docs/model.md#markov-strategies), frozen: it
defines K_code(markov, M1).

Posterior over the pool chains' stationary distributions s_i from the states seen, ignoring
their order: ρ_i(t) ∝ Π_{k≤t} s_i[x_k] (uniform prior); row t predicts Σ_i ρ_i(t) s_i; row 0
is their mean. Data (K_data): the stationary distributions, (D, V).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(stationary, states):
    """Predictive distributions (T, V) for one sequence of states x_1..x_T (T,), s (D, V).

    >>> predict(np.array([[0.5, 0.5], [0.9, 0.1]]), [0, 1])[1].round(3).tolist()
    [0.757, 0.243]
    """
    log_posterior = np.zeros(len(stationary))
    rows = []
    for state in states:
        posterior = np.exp(log_posterior - log_posterior.max())
        rows.append(posterior / posterior.sum() @ stationary)
        log_posterior = log_posterior + np.log(stationary[:, state])
    return np.array(rows)
