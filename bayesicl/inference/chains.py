"""Running independent MCMC chains on every CPU core, and the NUTS chain they run.

JAX on a CPU runs one small sampler on one core. With XLA asked for several host devices
(``--xla_force_host_platform_device_count``; `bayesicl` sets it on import when
``BAYESICL_CHAIN_DEVICES`` is set, `bayesicl._host`, docs/decisions.md "Chains on every core,
opt-in"), `map_chains` splits the chains over the devices with `jax.shard_map` and runs each
device's share one after the other (`jax.lax.map`); with one device, the default, it is
`jax.lax.map` over all chains. Each chain keeps its key, so a fit draws the same numbers on
the same machine every time; between machines with different numbers of cores the draws
can differ in the last bits (XLA splits a device's threads differently), as they can between
CPUs, and the fitted numbers agree to their Monte Carlo error (docs/decisions.md).

`nuts_chain` is the one NUTS chain every sampler of `bayesicl.inference` runs (the
single-configuration fit, the population fit and the OOD stage): NumPyro's NUTS kernel
(`numpyro.infer.hmc.hmc`) on a model's potential energy, warm-up then sampling in one
`jax.lax.scan`; `constrained_draws` maps its unconstrained draws to the model's sites.

>>> import jax, jax.numpy as jnp
>>> keys = jnp.arange(4.0)
>>> out = jax.jit(lambda k, c: map_chains(lambda x, shift: x + shift, k, c))(place_chains(keys), 10.0)
>>> out.tolist()
[10.0, 11.0, 12.0, 13.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding, PartitionSpec
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy

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
    return map_chain_blocks(lambda a, *s: jax.lax.map(lambda x: call(x, s), a), per_chain, *shared)


def map_chain_blocks(block, per_chain, *shared):
    """``block(share, *shared)`` on each device's share of the chains (a contiguous block of
    the leading axis of `per_chain`; all of it with one device), the outputs concatenated
    along that axis: for chains that hand something on to the next one on the same device
    (`bayesicl.inference.cut`). Call inside `jax.jit`."""
    devices = chain_devices(jax.tree.leaves(per_chain)[0].shape[0])
    if devices == 1:
        return block(per_chain, *shared)
    split = jax.shard_map(lambda a, s: block(a, *s), mesh=_mesh(devices),
                          in_specs=(PartitionSpec(AXIS), PartitionSpec()), out_specs=PartitionSpec(AXIS),
                          check_vma=False)   # numpyro's NUTS mixes per-chain and shared values in lax.cond
    return split(per_chain, shared)


def nuts_chain(model: Callable, num_warmup: int, num_samples: int, dense_mass: bool, target_accept: float,
               trace: tuple[str, ...] = ("z", "diverging", "num_steps"),
               on_step: Callable[[jax.Array], None] | None = None, curvature_start: bool = False,
               adapt_mass_matrix: bool = True, with_state: bool = False) -> Callable:
    """One NUTS chain on the potential energy of `model` (a NumPyro model, called as
    ``model(*model_args)``): the function ``(key, z0, *model_args) → {field: (num_samples, …)}``
    that starts at the unconstrained values `z0`, adapts the step size and (with
    `adapt_mass_matrix`) the mass matrix (dense or diagonal, `dense_mass`, towards acceptance
    `target_accept`) over `num_warmup` iterations, then keeps the sampler state's `trace`
    fields (`numpyro.infer.hmc.HMCState` names) of the next `num_samples`. `on_step(i)`,
    when given, runs inside the loop at iteration i (a progress callback). Run it over
    chains with `map_chains`, inside `jax.jit`.

    Warm-up starts from the keywords ``step_size`` (default 1) and ``inverse_mass_matrix`` of
    the call, else, with `curvature_start`, from the inverse mass matrix of `curvature_scales`
    at `z0`, else from the identity. With `with_state` the chain returns (kept, final) with
    final = (z, step size, inverse mass matrix) of its last state: where a next chain can
    start (`bayesicl.inference.cut`).
    """
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda *args: (lambda z: potential_energy(model, args, {}, z)), algo="NUTS")

    def chain(key, z0, *model_args, step_size=1.0, inverse_mass_matrix=None):
        if inverse_mass_matrix is None and curvature_start:
            scales = curvature_scales(lambda z: potential_energy(model, model_args, {}, z), z0)
            inverse_mass_matrix = jnp.diag(scales) if dense_mass else scales
        state = init_kernel(z0, num_warmup, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix,
                            adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass,
                            target_accept_prob=target_accept, model_args=model_args, rng_key=key)

        def step(state, i):
            state = sample_kernel(state, model_args=model_args)
            if on_step is not None:
                on_step(i)
            return state, {name: getattr(state, name) for name in trace}

        last, kept = jax.lax.scan(step, state, jnp.arange(num_warmup + num_samples))
        kept = jax.tree.map(lambda x: x[num_warmup:], kept)
        if with_state:
            return kept, (last.z, last.adapt_state.step_size, last.adapt_state.inverse_mass_matrix)
        return kept

    return chain


#: Step of the central differences in `curvature_scales` (unconstrained units) and the bounds
#: of the variances it gives: at most 1, the identity's scale, which weakly curved coordinates keep.
CURVATURE_STEP = 1e-4
SCALE_BOUNDS = (1e-10, 1.0)


def curvature_scales(potential: Callable, z0) -> jax.Array:
    """The diagonal of a first inverse mass matrix: 1 / ∂²U/∂z_i² at `z0` (flattened in
    `ravel_pytree` order, the sampler's), from central differences of the gradient of the
    potential U, clipped to `SCALE_BOUNDS`; 1 where the curvature is not positive or not
    finite. Warm-up then adapts it as before. From the identity instead, the first adaptation
    window spends its trajectories on the narrowest coordinate: on the paper-size urns
    benchmark 74 000 of a chain's 119 000 gradients went to its first 100 iterations, with
    a step size of 1e-3 (docs/decisions.md "Warm-up from the curvature").

    >>> [round(float(v), 6) for v in curvature_scales(lambda z: 50.0 * z["a"] ** 2 - z["b"] ** 2,
    ...                                                  {"a": jnp.array(0.3), "b": jnp.array(0.0)})]
    [0.01, 1.0]
    """
    flat, unravel = ravel_pytree(z0)
    gradient = jax.grad(lambda x: potential(unravel(x)))
    step = jnp.asarray(CURVATURE_STEP, dtype=flat.dtype)

    def curvature(i):
        shift = jnp.zeros_like(flat).at[i].set(step)
        return (gradient(flat + shift)[i] - gradient(flat - shift)[i]) / (2.0 * step)

    second = jax.lax.map(curvature, jnp.arange(flat.size))
    usable = jnp.isfinite(second) & (second > 0)
    return jnp.where(usable, jnp.clip(1.0 / jnp.where(usable, second, 1.0), *SCALE_BOUNDS), 1.0)


def constrained_draws(model: Callable, model_args: tuple, z, batch_ndims: int = 2) -> dict:
    """Every site of `model` (deterministic ones included) at the unconstrained draws `z`, whose
    leaves carry `batch_ndims` leading axes ((chain, draw) by default): {site: (chain, draw, …)}."""
    lead = jax.tree.leaves(z)[0].shape[:batch_ndims]
    flat = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[batch_ndims:]), z)
    sites = constrain_fn(model, model_args, {}, flat, return_deterministic=True, batch_ndims=1)
    return jax.tree.map(lambda v: v.reshape(lead + v.shape[1:]), sites)
