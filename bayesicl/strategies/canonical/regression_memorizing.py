"""Canonical regression memorizing predictor M (docs/model.md#regression-strategies), frozen: it defines K_code(regression, M).

Discrete MMSE over the D pool weight vectors: π_i(t) ∝ exp(−Σ_{k<t} (y_k − w_i·x_k)² / (2σ²)),
ŷ_t = Σ_i π_i(t) w_i·x_t. Data (K_data): the pool w, (D, d); σ² is the task's noise variance.

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(pool, noise_variance, x, y):
    """Predictions ŷ (T,) for one sequence of inputs x (T, d) and targets y (T,), pool (D, d).

    Entry t uses x_t and the pairs before it; entry 0 is (pool mean)·x_0.

    >>> predict(np.array([[1.0], [-1.0]]), 0.5, np.ones((2, 1)), np.ones(2)).round(3).tolist()
    [0.0, 0.964]
    """
    log_posterior = np.zeros(len(pool))
    predictions = []
    for x_t, y_t in zip(x, y):
        posterior = np.exp(log_posterior - log_posterior.max())
        predictions.append(posterior / posterior.sum() @ pool @ x_t)
        log_posterior = log_posterior - (y_t - pool @ x_t) ** 2 / (2 * noise_variance)
    return np.array(predictions)
