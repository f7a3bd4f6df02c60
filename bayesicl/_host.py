"""Host devices for JAX, so that MCMC chains can run in parallel (`bayesicl.inference.chains`).

Opt-in: with ``BAYESICL_CHAIN_DEVICES`` set (a count, or "auto": one per core, at most
`MAX_HOST_DEVICES`), `bayesicl/__init__.py` asks XLA for that many CPU devices before JAX
starts. Off by default: at the paper's urns size (1 100 conditions, 2 chains on 2 devices) the
NUTS program hung with every thread idle; the cause found since (batched LAPACK kernels of
the likelihood deadlocking XLA's thread pool) is removed, but that size has not been re-run on
several devices (docs/decisions.md "Chains on every core, opt-in"). This module must not import JAX.
"""

from __future__ import annotations

import os
import re

#: Host devices asked of XLA with "auto": one per core, at most this many (4 chains by default).
MAX_HOST_DEVICES = 4
FLAG = "--xla_force_host_platform_device_count"
#: The environment variable that turns parallel chains on.
SWITCH = "BAYESICL_CHAIN_DEVICES"


def request_host_devices(environ=os.environ, cores: int | None = None) -> None:
    """With ``BAYESICL_CHAIN_DEVICES`` in `environ`, ask XLA for that many CPU devices ("auto":
    one per core, ≤ `MAX_HOST_DEVICES`) through ``XLA_FLAGS``, unless the flags already name a
    count. Takes effect only before JAX starts its CPU backend.

    >>> env = {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}
    >>> request_host_devices(env, cores=2)        # not asked for: nothing changes
    >>> env["XLA_FLAGS"]
    '--xla_cpu_use_thunk_runtime=false'
    >>> env[SWITCH] = "auto"
    >>> request_host_devices(env, cores=2)
    >>> env["XLA_FLAGS"]
    '--xla_cpu_use_thunk_runtime=false --xla_force_host_platform_device_count=2'
    >>> request_host_devices(env, cores=8)        # already set: left alone
    >>> env["XLA_FLAGS"].count(FLAG)
    1
    """
    wanted = environ.get(SWITCH, "").strip().lower()
    flags = environ.get("XLA_FLAGS", "")
    if not wanted or re.search(re.escape(FLAG) + r"\b", flags):
        return
    if wanted == "auto":
        count = min(MAX_HOST_DEVICES, cores if cores is not None else (os.cpu_count() or 1))
    elif wanted.isdigit():
        count = int(wanted)
    else:
        return
    if count > 1:
        environ["XLA_FLAGS"] = (flags + " " if flags else "") + f"{FLAG}={count}"
