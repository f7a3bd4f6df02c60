"""Canonical markov constant predictor C (docs/model.md#markov-strategies), frozen: it defines
K_code(markov, C).

The prior predictive of the next state, the same distribution at every row. Data (K_data):
those V probabilities (1/V each).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(probabilities, states):
    """The distribution `probabilities` (V,) repeated for each of the T states: (T, V).

    >>> predict(np.full(2, 0.5), [0, 1, 1]).tolist()
    [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
    """
    return np.tile(probabilities, (len(states), 1))
