"""Running independent MCMC chains on every CPU core.

JAX on a CPU runs one small sampler on one core. With XLA asked for several host devices
(``--xla_force_host_platform_device_count``; `bayesicl` sets it on import when
``BAYESICL_CHAIN_DEVICES`` is set, `bayesicl._host`, docs/decisions.md "Chains on every core,
opt-in"), `map_chains` splits the chains over the devices with `jax.shard_map` and runs each
device's share one after the other (`jax.lax.map`); with one device, the default, it is
`jax.lax.map` over all chains. Each chain keeps its key, so a fit draws the same numbers on
the same machine every time; between machines with different numbers of cores the draws
can differ in the last bits (XLA splits a device's threads differently), as they can between
CPUs, and the fitted numbers agree to their Monte Carlo error (docs/decisions.md).

>>> import jax, jax.numpy as jnp
>>> keys = jnp.arange(4.0)
>>> out = jax.jit(lambda k, c: map_chains(lambda x, shift: x + shift, k, c))(place_chains(keys), 10.0)
>>> out.tolist()
[10.0, 11.0, 12.0, 13.0]
"""

from __future__ import annotations

import math

import jax
from jax.sharding import NamedSharding, PartitionSpec

#: The mesh axis the chains are split over.
AXIS = "chain"


def chain_devices(num_chains: int) -> int:
    """How many devices `num_chains` chains are split over: the largest count dividing both
    the chains and the local devices (1: no splitting)."""
    return math.gcd(int(num_chains), jax.local_device_count())


def _mesh(devices: int):
    # Auto axes: the chain split stays out of the array types, so code after `map_chains`
    # (indexing, reshapes) needs no sharding annotations.
    return jax.make_mesh((devices,), (AXIS,), devices=jax.local_devices()[:devices],
                         axis_types=(jax.sharding.AxisType.Auto,))


def place_chains(per_chain):
    """Put arrays whose leading axis is the chain on the devices `map_chains` will use (a
    no-op with one device). Call it on the per-chain arguments before the jitted program."""
    leaves = jax.tree.leaves(per_chain)
    devices = chain_devices(leaves[0].shape[0]) if leaves else 1
    if devices == 1:
        return per_chain
    return jax.device_put(per_chain, NamedSharding(_mesh(devices), PartitionSpec(AXIS)))


def map_chains(chain, per_chain, *shared):
    """``stack([chain(*per_chain[i], *shared) for each chain i])`` with the chains split over
    the devices. `per_chain` is a tuple of pytrees with a leading chain axis (or one pytree,
    passed as the first argument), `shared` the same for every chain. Call inside `jax.jit`."""
    many = isinstance(per_chain, tuple)
    call = (lambda a, s: chain(*a, *s)) if many else (lambda a, s: chain(a, *s))
    devices = chain_devices(jax.tree.leaves(per_chain)[0].shape[0])
    if devices == 1:
        return jax.lax.map(lambda a: call(a, shared), per_chain)
    block = jax.shard_map(lambda a, s: jax.lax.map(lambda x: call(x, s), a), mesh=_mesh(devices),
                          in_specs=(PartitionSpec(AXIS), PartitionSpec()), out_specs=PartitionSpec(AXIS),
                          check_vma=False)   # numpyro's NUTS mixes per-chain and shared values in lax.cond
    return block(per_chain, shared)
