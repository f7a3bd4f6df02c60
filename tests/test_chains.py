"""Chains split over CPU devices (bayesicl.inference.chains, docs/decisions.md "Chains on every core")."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesicl._host import FLAG, SWITCH, request_host_devices
from bayesicl.inference.chains import (chain_devices, constrained_draws, curvature_scales, map_chain_blocks,
                                      map_chains, nuts_chain, place_chains)


def _chain(key, start, shared):
    """A chain with a loop and a key: a random walk of 50 steps from `start`."""
    def step(x, k):
        return x + shared * jax.random.normal(k, x.shape), x.sum()
    _, path = jax.lax.scan(step, start, jax.random.split(key, 50))
    return path


def test_map_chains_equals_running_each_chain_alone():
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    starts = jnp.arange(12.0).reshape(4, 3)
    together = jax.jit(lambda k, s, c: map_chains(_chain, (k, s), c))(*place_chains((keys, starts)), 0.5)
    alone = np.stack([np.asarray(jax.jit(_chain)(keys[i], starts[i], 0.5)) for i in range(4)])
    np.testing.assert_allclose(np.asarray(together), alone, rtol=1e-12)


def _scale_model(center):
    """log σ ~ Normal(center, 0.5), so σ is log-normal: NUTS samples log σ (unconstrained)."""
    sigma = numpyro.sample("sigma", dist.LogNormal(center, 0.5))
    numpyro.deterministic("twice", 2.0 * sigma)


def test_a_nuts_chain_draws_a_log_normal_and_constrains_its_draws():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    starts = {"sigma": jnp.zeros(2)}
    chain = nuts_chain(_scale_model, num_warmup=200, num_samples=400, dense_mass=False, target_accept=0.8)

    def run(keys, starts, center):
        trace = map_chains(chain, (keys, starts), center)
        return trace, constrained_draws(_scale_model, (center,), trace["z"])

    trace, sites = jax.jit(run)(keys, starts, 1.0)
    assert trace["z"]["sigma"].shape == trace["diverging"].shape == trace["num_steps"].shape == (2, 400)
    log_sigma = np.asarray(trace["z"]["sigma"])
    assert abs(log_sigma.mean() - 1.0) < 0.1 and abs(log_sigma.std() - 0.5) < 0.1   # the Normal(1, 0.5) of log σ
    np.testing.assert_allclose(np.asarray(sites["sigma"]), np.exp(log_sigma), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sites["twice"]), 2.0 * np.exp(log_sigma), rtol=1e-12)

def _narrow_and_wide(center):
    """Two independent normals 10⁴ apart in scale: x ~ Normal(center, 1e-3), y ~ Normal(0, 10)."""
    numpyro.sample("x", dist.Normal(center, 1e-3))
    numpyro.sample("y", dist.Normal(0.0, 10.0))


def test_curvature_scales_are_the_variances_of_a_normal_potential():
    potential = lambda z: 0.5 * (z["x"] - 1.0) ** 2 / 1e-6 + 0.5 * z["y"] ** 2 / 100.0  # noqa: E731
    scales = curvature_scales(potential, {"x": jnp.array(0.999), "y": jnp.array(3.0)})
    np.testing.assert_allclose(np.asarray(scales), [1e-6, 1.0], rtol=1e-6)   # y's 100 is capped at the identity's 1


def test_a_chain_started_from_the_curvature_samples_a_badly_scaled_normal():
    chain = nuts_chain(_narrow_and_wide, num_warmup=300, num_samples=600, dense_mass=True, target_accept=0.9,
                       curvature_start=True)
    trace = jax.jit(chain)(jax.random.PRNGKey(4), {"x": jnp.array(2.0005), "y": jnp.array(0.0)}, 2.0)
    x, y = np.asarray(trace["z"]["x"]), np.asarray(trace["z"]["y"])
    assert abs(x.mean() - 2.0) < 3e-4 and abs(x.std() / 1e-3 - 1.0) < 0.2
    assert abs(y.mean()) < 3.0 and abs(y.std() / 10.0 - 1.0) < 0.25
    assert not np.asarray(trace["diverging"]).any()


def test_a_relayed_chain_starts_where_the_last_ended_and_samples_its_own_target():
    """The OOD stage's relay (docs/decisions.md "The OOD stage relays its adaptation"): a chain
    that takes the previous chain's position, step size and mass matrix and re-adapts the step
    size only still samples its own, shifted target."""
    settings = dict(dense_mass=False, target_accept=0.8, with_state=True)
    first = nuts_chain(_scale_model, num_warmup=200, num_samples=100, **settings)
    relay = nuts_chain(_scale_model, num_warmup=75, num_samples=800, adapt_mass_matrix=False, **settings)

    def run(key):
        keys = jax.random.split(key)
        _, (z, step_size, inverse_mass) = first(keys[0], {"sigma": jnp.array(0.0)}, 1.0)
        kept, _ = relay(keys[1], z, 1.5, step_size=step_size, inverse_mass_matrix=inverse_mass)
        return z, step_size, kept

    z, step_size, kept = jax.jit(run)(jax.random.PRNGKey(5))
    assert abs(float(z["sigma"]) - 1.0) < 1.5 and float(step_size) > 0.1       # ended in the first target
    log_sigma = np.asarray(kept["z"]["sigma"])
    assert abs(log_sigma.mean() - 1.5) < 0.1 and abs(log_sigma.std() - 0.5) < 0.1   # samples Normal(1.5, 0.5)


def test_each_device_gets_a_contiguous_block_of_chains():
    cumulative = jax.jit(lambda a, c: map_chain_blocks(lambda share, shift: jnp.cumsum(share) + shift, a, c))
    if chain_devices(4) == 1:
        assert np.asarray(cumulative(jnp.arange(4.0), 10.0)).tolist() == [10.0, 11.0, 13.0, 16.0]
    code = """
import jax, jax.numpy as jnp
from bayesicl.inference.chains import map_chain_blocks, place_chains
run = jax.jit(lambda a, c: map_chain_blocks(lambda share, shift: jnp.cumsum(share) + shift, a, c))
print(jax.local_device_count(), run(place_chains(jnp.arange(4.0)), 10.0).tolist())
"""
    assert _devices_in_fresh_process(code, f"{FLAG}=2").strip() == "2 [10.0, 11.0, 12.0, 15.0]"


def test_chains_are_split_over_the_devices_they_divide():
    devices = jax.local_device_count()
    assert chain_devices(4) == np.gcd(4, devices)
    assert chain_devices(3) == np.gcd(3, devices)
    assert chain_devices(1) == 1


def test_parallel_chains_are_asked_for_only_when_the_user_switches_them_on():
    env = {}
    request_host_devices(env, cores=16)
    assert "XLA_FLAGS" not in env                               # off by default
    env = {SWITCH: "auto"}
    request_host_devices(env, cores=16)
    assert env["XLA_FLAGS"] == f"{FLAG}=4"                      # one per core, at most 4
    env = {SWITCH: "auto"}
    request_host_devices(env, cores=1)
    assert "XLA_FLAGS" not in env
    env = {SWITCH: "3"}
    request_host_devices(env, cores=2)
    assert env["XLA_FLAGS"] == f"{FLAG}=3"
    env = {SWITCH: "auto", "XLA_FLAGS": f"{FLAG}=3"}            # the user's own flag wins
    request_host_devices(env, cores=2)
    assert env["XLA_FLAGS"] == f"{FLAG}=3"


def _devices_in_fresh_process(code: str, flags: str | None, switch: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", SWITCH)}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    if switch is not None:
        env[SWITCH] = switch
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_bayesicl_import_sets_the_devices_only_when_asked_and_before_jax():
    count = "import bayesicl, jax; print(jax.local_device_count())"
    assert _devices_in_fresh_process(count, None) == "1"
    assert _devices_in_fresh_process(count, None, switch="2") == "2"
    assert _devices_in_fresh_process("import jax, bayesicl; print(jax.local_device_count())", None, switch="2") == "1"


def test_a_nuts_sampler_draws_the_same_numbers_with_two_devices_and_four():
    # The sampler alone (bayesicl.inference.nuts.fit_nuts, as bayesicl.inference.fit calls it), so that the
    # two fresh processes compile one program each.
    code = """
import jax, bayesicl as bic
from bayesicl.inference.data import fit_data
from bayesicl.inference.map import fit_map
from bayesicl.inference.model import resolve_priors
from bayesicl.inference.nuts import fit_nuts
from bayesicl.inference.split import fit_split
from bayesicl.inference.synthetic import synthetic_evidence
task = bic.task("urns", num_dims=4, context_length=8)
ev = synthetic_evidence(task, [2, 4, 8], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
                        num_sequences=8, loss_sequences=64)
data = fit_data(ev, fit_split(ev.conditions, 0.0))
start = fit_map(data, "urns", seed=0, random_starts=1)
nuts = fit_nuts(data, resolve_priors("urns", reference_step=data.reference_step), start, num_samples=60,
                num_warmup=60, effects="none")
print(jax.local_device_count(), repr(float(nuts.draws["alpha"].sum())))
"""
    two = _devices_in_fresh_process(code, f"{FLAG}=2").split()
    four = _devices_in_fresh_process(code, f"{FLAG}=4").split()
    assert (two[0], four[0]) == ("2", "4")
    assert two[1] == four[1]
