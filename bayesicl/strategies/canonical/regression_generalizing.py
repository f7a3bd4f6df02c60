"""Canonical regression generalizing predictor G (docs/model.md#regression-strategies), frozen: it defines K_code(regression, G).

Posterior mean of w under the prior N(m·1, τ² I) and Gaussian noise σ²: with the prior
(m, τ², σ²) = (0, 1, σ²) this is ridge, ŵ_t = (X_{<t}ᵀX_{<t} + σ² I)⁻¹ X_{<t}ᵀ y_{<t}, and
ŷ_t = ŵ_t·x_t. Data (K_data): (m, τ², σ²).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(prior_mean, prior_variance, noise_variance, x, y):
    """Predictions ŷ (T,) for one sequence of inputs x (T, d) and targets y (T,).

    >>> predict(0.0, 1.0, 1.0, np.ones((2, 1)), np.ones(2)).tolist()
    [0.0, 0.5]
    """
    precision = np.eye(x.shape[1]) / prior_variance
    shift = np.full(x.shape[1], prior_mean / prior_variance)
    predictions = []
    for x_t, y_t in zip(x, y):
        predictions.append(np.linalg.solve(precision, shift) @ x_t)
        precision = precision + np.outer(x_t, x_t) / noise_variance
        shift = shift + y_t * x_t / noise_variance
    return np.array(predictions)
