"""Canonical urns memorizing predictor M (docs/model.md#urns-strategies), frozen: it defines K_code(urns, M).

Posterior over the D pool urns under a uniform prior, π_i(t) ∝ Π_{k≤t} θ_i[x_k]; row t
predicts Σ_i π_i(t) θ_i. Data (K_data): the pool θ, (D, d).

Edit only together with `python -m bayesicl.strategies.canonical` (regenerates kcode.json).
"""
import numpy as np


def predict(pool, colours):
    """Predictive distributions (T, d) for one sequence of colours x_1..x_T (T,), pool (D, d).

    Row t predicts x_{t+1} from x_1..x_t; row 0 is the pool mean.

    >>> predict(np.array([[0.5, 0.5], [0.9, 0.1]]), [0, 1])[1].round(3).tolist()
    [0.757, 0.243]
    """
    log_posterior = np.zeros(len(pool))
    rows = []
    for colour in colours:
        posterior = np.exp(log_posterior - log_posterior.max())
        rows.append(posterior / posterior.sum() @ pool)
        log_posterior = log_posterior + np.log(pool[:, colour])
    return np.array(rows)
