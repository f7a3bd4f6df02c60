"""The within-run likelihood of the run+trend effects (`bayesicl.inference.model.run_log_densities`):
exact against a brute-force float64 multivariate normal, and free of LAPACK calls.

Each run's observations r = mean + σ_logit s x + e, x a unit-variance AR(1) over the run's
checkpoint positions (lag-1 correlation φ), e independent with variance ε² + σ_obs², are
jointly normal with Σ_ij = (ε² + σ_obs²) δ_ij + σ_logit² s_i s_j φ^|p_i − p_j|.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayesicl.inference import model

#: Three runs of 6, 5 and 3 conditions (padded to 6), with gaps in their checkpoint positions.
POSITIONS = [np.array([0, 1, 2, 4, 7, 8]), np.array([1, 2, 3, 5, 6]), np.array([0, 3, 9])]


@pytest.fixture(scope="module")
def runs():
    rng = np.random.default_rng(11)
    width, total = max(p.size for p in POSITIONS), sum(p.size for p in POSITIONS)
    rows = np.zeros((len(POSITIONS), width), dtype=np.int64)
    mask = np.zeros(rows.shape, dtype=bool)
    position = np.zeros(rows.shape)
    members, start = [], 0
    for k, p in enumerate(POSITIONS):
        m = np.arange(start, start + p.size)
        rows[k, :p.size], mask[k, :p.size], position[k, :p.size] = m, True, p
        members.append(m)
        start += p.size
    data = SimpleNamespace(observed=jnp.asarray(rng.normal(size=total)), run_rows=jnp.asarray(rows),
                           run_mask=jnp.asarray(mask), run_position=jnp.asarray(position))
    mean, sensitivity = rng.normal(size=total) * 0.3, rng.uniform(0.1, 1.5, size=total)
    return data, members, mean, sensitivity


@pytest.mark.parametrize("sigma_obs, sigma_logit, corr", [(0.1, 0.7, 0.6), (0.05, 1.3, 0.95), (0.3, 0.2, 0.0)])
def test_each_runs_density_is_the_multivariate_normal_of_its_observations(runs, sigma_obs, sigma_logit, corr):
    data, members, mean, sensitivity = runs
    got = np.asarray(model.run_log_densities(data, jnp.asarray(mean), jnp.asarray(sensitivity),
                                             sigma_obs, sigma_logit, corr))
    observed = np.asarray(data.observed)
    for k, (m, p) in enumerate(zip(members, POSITIONS)):
        lag = np.abs(p[:, None] - p[None, :])
        covariance = (sigma_logit ** 2 * np.outer(sensitivity[m], sensitivity[m]) * np.where(lag == 0, 1.0, corr ** lag)
                      + np.eye(m.size) * (model.RESOLUTION ** 2 + sigma_obs ** 2))
        assert got[k] == pytest.approx(multivariate_normal(mean[m], covariance).logpdf(observed[m]), abs=1e-10)


def zero_start_covariance(p, corr):
    """Cov(x_p, x_q) of x_{-1} = 0, x_t = φ x_{t-1} + √(1 − φ²) ε_t, by propagating the state
    covariance one checkpoint at a time (independent of the closed form in the code)."""
    last = int(p.max())
    cov = np.zeros((last + 2, last + 2))          # index t + 1 for t = −1 … last
    for t in range(last + 1):
        cov[t + 1, :t + 1] = corr * cov[t, :t + 1]
        cov[:t + 1, t + 1] = cov[t + 1, :t + 1]
        cov[t + 1, t + 1] = corr ** 2 * cov[t, t] + 1.0 - corr ** 2
    return cov[np.ix_(p + 1, p + 1)]


@pytest.mark.parametrize("sigma_obs, sigma_logit, corr", [(0.1, 0.7, 0.6), (0.05, 1.3, 0.95), (0.3, 0.2, 0.0)])
def test_a_trend_that_starts_at_zero_is_the_multivariate_normal_of_that_process(runs, sigma_obs, sigma_logit, corr):
    """The population model's trend (docs/model.md#population-model): the deviation is zero one
    checkpoint before the run's first, so the run's level belongs to its run effect alone."""
    data, members, mean, sensitivity = runs
    got = np.asarray(model.run_log_densities(data, jnp.asarray(mean), jnp.asarray(sensitivity),
                                             sigma_obs, sigma_logit, corr, trend_start="zero"))
    observed = np.asarray(data.observed)
    for k, (m, p) in enumerate(zip(members, POSITIONS)):
        covariance = (sigma_logit ** 2 * np.outer(sensitivity[m], sensitivity[m]) * zero_start_covariance(p, corr)
                      + np.eye(m.size) * (model.RESOLUTION ** 2 + sigma_obs ** 2))
        assert got[k] == pytest.approx(multivariate_normal(mean[m], covariance).logpdf(observed[m]), abs=1e-10)


def test_the_forecast_of_a_trend_that_starts_at_zero_is_the_conditional_normal(runs):
    from bayesicl.inference.predict import condition_on_runs, start_trend
    data, members, mean, sensitivity = runs
    m, p = members[0], POSITIONS[0]
    sigma_obs, sigma_logit, corr = 0.1, 0.7, 0.8
    observed = np.asarray(data.observed)[m]
    given = np.array([True, True, True, False, True, False])
    scale = np.sqrt(model.RESOLUTION ** 2 + sigma_obs ** 2 + (sigma_logit * sensitivity[m]) ** 2)[None]
    scale = start_trend(scale, sensitivity[m][None], np.array([sigma_logit]), np.array([corr]), p, "zero")
    got_mean, got_scale = condition_on_runs(mean[m][None], scale, sensitivity[m][None], np.array([sigma_obs]),
                                            np.array([sigma_logit]), np.array([corr]), observed, given,
                                            np.zeros(m.size, dtype=int), p, trend_start="zero")
    cov = (sigma_logit ** 2 * np.outer(sensitivity[m], sensitivity[m]) * zero_start_covariance(p, corr)
           + np.eye(m.size) * (model.RESOLUTION ** 2 + sigma_obs ** 2))
    g, h = np.flatnonzero(given), np.flatnonzero(~given)
    gain = np.linalg.solve(cov[np.ix_(g, g)], cov[np.ix_(g, h)])
    want_mean = mean[m][h] + gain.T @ (observed[g] - mean[m][g])
    want_var = np.diag(cov[np.ix_(h, h)] - cov[np.ix_(h, g)] @ gain)
    np.testing.assert_allclose(got_mean[0, h], want_mean, atol=1e-10)
    np.testing.assert_allclose(got_scale[0, h] ** 2, want_var, atol=1e-10)
    np.testing.assert_allclose(got_scale[0, g] ** 2, np.diag(cov)[g], atol=1e-10)


def test_the_likelihood_and_its_gradient_call_no_lapack_kernel(runs):
    """Batched LAPACK kernels on the CPU fan out into XLA's own thread pool and wait there; two
    at once on a 2-core machine deadlocked the sampler (docs/decisions.md)."""
    data, _, mean, sensitivity = runs

    def density(params):
        sigma_obs, sigma_logit, corr = params
        return model.run_log_density(data, jnp.asarray(mean), jnp.asarray(sensitivity), sigma_obs, sigma_logit, corr)

    text = str(jax.make_jaxpr(jax.value_and_grad(density))(jnp.array([0.1, 0.7, 0.6])))
    for primitive in ("cholesky", "triangular_solve", "eigh", "lu", "qr", "svd"):
        assert f"{primitive}[" not in text and f" {primitive} " not in text, primitive
