"""Canonical regression constant predictor C (docs/model.md#regression-strategies), frozen: it defines K_code(regression, C).

The prior predictive mean, the same prediction everywhere. Data (K_data): that one number
(0 under the prior N(0, I)).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(prediction, x, y):
    """The prediction repeated for each of the T positions of x (T, d): (T,).

    >>> predict(0.0, np.ones((3, 2)), np.ones(3)).tolist()
    [0.0, 0.0, 0.0]
    """
    return np.full(len(x), prediction)
