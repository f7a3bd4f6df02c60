"""What the fit tests share: the synthetic urns grid and the rational model's log-odds and
transition steps written independently in NumPy (docs/model.md#rational-model), not with bayesicl.rational.

Imported by tests/test_fit_map.py, tests/test_fit_nuts.py and tests/test_fit_io.py (`pythonpath = tests` in
setup.cfg); the `grid` fixture is in tests/conftest.py.
"""

from __future__ import annotations

import math

import numpy as np

import bayesicl as bic
from bayesicl.inference.synthetic import strategy_outputs, synthetic_terms

MG = ("memorizing", "generalizing")
DIVERSITIES = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEPS = np.unique(np.geomspace(20, 100_000, 20).astype(np.int64))


def urns_grid():
    """The real urns strategies' outputs (d = 8, T = 32, 32 sequences), L̄ and K on the grid."""
    task = bic.task("urns", num_dims=8, context_length=32)
    outputs = strategy_outputs(task, MG, DIVERSITIES, num_sequences=32, seed=0)
    terms = synthetic_terms(task, MG, outputs[1], loss_sequences=512)
    return task, outputs, terms


def log_odds(params, loss, complexity, diversity, step):
    """η_M − η_G = −γ N^(1−α) (L̄_M − L̄_G) − ln 2 (K_M^β − K_G^β), in NumPy."""
    alpha, beta, gamma = params
    lm, lg = loss.loc[diversity, MG[0]].to_numpy(), loss.loc[diversity, MG[1]].to_numpy()
    km, kg = complexity.loc[diversity, MG[0]].to_numpy(), complexity.loc[diversity, MG[1]].to_numpy()
    return -gamma * step.astype(float) ** (1 - alpha) * (lm - lg) - math.log(2) * (km ** beta - kg ** beta)


def transition_steps_numpy(params, loss, complexity):
    """N*(D), where the log-odds cross zero, per diversity."""
    alpha, beta, gamma = params
    a = math.log(2) * (complexity[MG[0]] ** beta - complexity[MG[1]] ** beta)
    b = gamma * (loss[MG[1]] - loss[MG[0]])
    return (a / b) ** (1 / (1 - alpha))


def random_truths(grid, count, seed):
    """Truths whose N*(D) lies inside the step grid for at least half the diversities."""
    _, _, (loss, complexity) = grid
    rng = np.random.default_rng(seed)
    truths = []
    while len(truths) < count:
        alpha, beta = rng.uniform(0.4, 0.8), rng.uniform(0.1, 0.35)
        # Place N*(D=16) at a random step inside the grid, which fixes γ.
        target = math.exp(rng.uniform(math.log(100), math.log(5000)))
        a = math.log(2) * (complexity.loc[16, MG[0]] ** beta - complexity.loc[16, MG[1]] ** beta)
        gamma = a / ((loss.loc[16, MG[1]] - loss.loc[16, MG[0]]) * target ** (1 - alpha))
        n_star = transition_steps_numpy((alpha, beta, gamma), loss, complexity)
        if ((n_star >= STEPS[0]) & (n_star <= STEPS[-1])).sum() >= math.ceil(len(DIVERSITIES) / 2):
            truths.append((alpha, beta, gamma))
    return truths
