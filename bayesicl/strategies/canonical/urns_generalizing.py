"""Canonical urns generalizing predictor G (docs/model.md#urns-strategies), frozen: it defines K_code(urns, G).

Posterior mean under the Dirichlet(a) prior: row t is (c(t) + a) / (t + Σ_v a_v), where c(t)
counts the colours x_1..x_t. Data (K_data): the d concentrations a.

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(concentrations, colours):
    """Predictive distributions (T, d) for one sequence of colours x_1..x_T (T,).

    >>> predict(np.ones(3), [0, 0, 1])[2].round(3).tolist()
    [0.6, 0.2, 0.2]
    """
    counts = np.zeros(len(concentrations))
    rows = []
    for colour in colours:
        rows.append((counts + concentrations) / (counts.sum() + concentrations.sum()))
        counts[colour] += 1
    return np.array(rows)
