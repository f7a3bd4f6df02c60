"""Canonical markov unigram generalizing predictor G1 (docs/model.md#markov-strategies), frozen:
it defines K_code(markov, G1).

Dirichlet(a) posterior mean of the state frequencies, ignoring their order: row t is
(c(t) + a) / (t + Σ_v a_v), where c(t) counts the states x_1..x_t. Data (K_data): the V
concentrations (ones).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(concentrations, states):
    """Predictive distributions (T, V) for one sequence of states x_1..x_T (T,).

    >>> predict(np.ones(3), [0, 0, 1])[2].round(3).tolist()
    [0.6, 0.2, 0.2]
    """
    counts = np.zeros(len(concentrations))
    rows = []
    for state in states:
        rows.append((counts + concentrations) / (counts.sum() + concentrations.sum()))
        counts[state] += 1
    return np.array(rows)
