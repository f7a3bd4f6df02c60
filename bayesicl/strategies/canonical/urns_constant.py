"""Canonical urns constant predictor C (docs/model.md#urns-strategies), frozen: it defines K_code(urns, C).

The prior predictive, the same distribution at every position. Data (K_data): those d
probabilities (1/d each under the symmetric Dirichlet prior).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(probabilities, colours):
    """The distribution `probabilities` (d,) repeated for each of the T colours: (T, d).

    >>> predict(np.full(2, 0.5), [0, 1, 1]).tolist()
    [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
    """
    return np.tile(probabilities, (len(colours), 1))
