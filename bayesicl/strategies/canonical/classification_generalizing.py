"""Canonical classification generalizing predictor G (docs/model.md#classification-strategies), frozen: K_code(classification, G).

Copying from context. Items are noisy copies x = (μ + √ε·n)/√(1+ε) of exemplars μ ~ N(m·1, v I),
n ~ N(0, v I), so every item has mean c = m/√(1+ε) and two copies of one exemplar correlate
with ρ = 1/(1+ε): x_q | x_j ~ N(c + ρ(x_j − c), v(1 − ρ²) I). With the prior (m, v, ε) =
(0, 1/d, ε) this is p(j | x_q) ∝ exp(−d(1+ε)²/(2ε(2+ε)) ‖x_q − x_j/(1+ε)‖²); predict
Σ_j p(j | x_q) onehot(ℓ_j), clamped to [1e-5, 1 − 1e-5]. Data (K_data): (m, v, ε).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(prior_mean, prior_variance, within_class_variance, num_labels, x, labels):
    """Label probabilities (L,) for the query x[-1] given the context x[:-1] (T, d), labels[:-1].

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.7, 0.1]])
    >>> predict(0.0, 0.5, 0.5, 2, x, np.array([0, 1, -1])).round(5).tolist()
    [0.96643, 0.03357]
    """
    centre = prior_mean / np.sqrt(1 + within_class_variance)
    rho = 1 / (1 + within_class_variance)
    distances = ((x[-1] - centre - rho * (x[:-1] - centre)) ** 2).sum(axis=1)
    log_weights = -distances / (2 * prior_variance * (1 - rho ** 2))
    weights = np.exp(log_weights - log_weights.max())
    probabilities = weights @ np.eye(num_labels)[labels[:-1]] / weights.sum()
    return np.clip(probabilities, 1e-5, 1 - 1e-5)
