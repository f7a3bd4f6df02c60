"""Canonical classification memorizing predictor M (docs/model.md#classification-strategies), frozen: K_code(classification, M).

Label memorizing, ignoring the context: p(i | x_q) ∝ exp(−d/(2ε) ‖√(1+ε)·x_q − μ_i‖²) over the
pool; predict Σ_i p(i | x_q) onehot(ℓ_i), clamped to [1e-5, 1 − 1e-5]. Data (K_data): the
pool as one (D, d + 1) array, the means μ with the labels ℓ as the last column; ε is the
task's within-class variance.

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(pool, within_class_variance, num_labels, x):
    """Label probabilities (L,) for the query x[-1] of one sequence x (T, d).

    >>> pool = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.0]])
    >>> predict(pool, 0.5, 2, np.array([[0.0, 0.0], [0.8, 0.1]])).round(5).tolist()
    [0.99961, 0.00039]
    """
    means, labels = pool[:, :-1], pool[:, -1].astype(int)
    eps = within_class_variance
    distances = ((np.sqrt(1 + eps) * x[-1] - means) ** 2).sum(axis=1)
    log_weights = -means.shape[1] / (2 * eps) * distances
    weights = np.exp(log_weights - log_weights.max())
    probabilities = weights @ np.eye(num_labels)[labels] / weights.sum()
    return np.clip(probabilities, 1e-5, 1 - 1e-5)
