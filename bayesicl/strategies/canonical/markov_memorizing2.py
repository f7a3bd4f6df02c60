"""Canonical markov bigram memorizing predictor M2 (docs/model.md#markov-strategies), frozen: it
defines K_code(markov, M2).

Posterior over the D pool chains from the transitions seen, π_i(t) ∝ Π_{k<t} P_i[x_k, x_{k+1}]
(uniform prior); row t predicts Σ_i π_i(t) P_i[x_t]. Row 0 has no state: 1/V. Data (K_data):
the pool, (D, V, V).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(pool, states):
    """Predictive distributions (T, V) for one sequence of states x_1..x_T (T,), pool (D, V, V).

    >>> pool = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.1, 0.9], [0.9, 0.1]]])
    >>> predict(pool, [0, 0, 0])[2].round(3).tolist()
    [0.82, 0.18]
    """
    log_posterior = np.zeros(len(pool))
    rows = [np.full(pool.shape[1], 1 / pool.shape[1])]
    for t in range(1, len(states)):
        if t > 1:
            log_posterior = log_posterior + np.log(pool[:, states[t - 2], states[t - 1]])
        posterior = np.exp(log_posterior - log_posterior.max())
        rows.append(posterior / posterior.sum() @ pool[:, states[t - 1]])
    return np.array(rows)
