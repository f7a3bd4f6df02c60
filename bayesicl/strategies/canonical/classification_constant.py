"""Canonical classification constant predictor C (docs/model.md#classification-strategies), frozen: K_code(classification, C).

The prior predictive over labels, whatever the inputs. Data (K_data): the L label
probabilities (1/L each).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(probabilities, x, labels):
    """The label distribution `probabilities` (L,) for the query of x (T, d).

    >>> predict(np.full(2, 0.5), np.zeros((3, 2)), np.array([0, 1, -1])).tolist()
    [0.5, 0.5]
    """
    return np.asarray(probabilities)
