"""Canonical markov bigram generalizing predictor G2 (docs/model.md#markov-strategies), frozen: it
defines K_code(markov, G2).

Posterior mean of the current state's row under Dirichlet(a_u) rows: row t is
(n(x_t→·) + a_{x_t}) / (Σ_v n(x_t→v) + Σ_v a_{x_t, v}), where n counts the transitions seen
before row t. Row 0 has no state: 1/V. Data (K_data): the concentrations, (V, V) ones.

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(concentrations, states):
    """Predictive distributions (T, V) for one sequence of states x_1..x_T (T,).

    >>> predict(np.ones((2, 2)), [0, 0, 0])[2].round(3).tolist()
    [0.667, 0.333]
    """
    counts = np.zeros(concentrations.shape)
    rows = [np.full(len(concentrations), 1 / len(concentrations))]
    for t in range(1, len(states)):
        if t > 1:
            counts[states[t - 2], states[t - 1]] += 1
        row = counts[states[t - 1]] + concentrations[states[t - 1]]
        rows.append(row / row.sum())
    return np.array(rows)
