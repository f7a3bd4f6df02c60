"""Host devices for JAX: one CPU device per core, so that MCMC chains run in parallel
(`bayesicl.fit.chains`). This module must not import JAX: `bayesicl/__init__.py` calls
`request_host_devices` before JAX starts (docs/decisions.md "Chains on every core").
"""

from __future__ import annotations

import os
import re

#: Host devices asked of XLA on import: one per core, at most this many (4 chains by default).
MAX_HOST_DEVICES = 4
FLAG = "--xla_force_host_platform_device_count"


def request_host_devices(environ=os.environ, cores: int | None = None) -> None:
    """Ask XLA for one CPU device per core (≤ `MAX_HOST_DEVICES`) through ``XLA_FLAGS``,
    unless the flags already name a count. Takes effect only before JAX starts its CPU backend.

    >>> env = {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}
    >>> request_host_devices(env, cores=2)
    >>> env["XLA_FLAGS"]
    '--xla_cpu_use_thunk_runtime=false --xla_force_host_platform_device_count=2'
    >>> request_host_devices(env, cores=8)        # already set: left alone
    >>> env["XLA_FLAGS"].count(FLAG)
    1
    """
    flags = environ.get("XLA_FLAGS", "")
    if re.search(re.escape(FLAG) + r"\b", flags):
        return
    count = max(1, min(MAX_HOST_DEVICES, cores if cores is not None else (os.cpu_count() or 1)))
    if count > 1:
        environ["XLA_FLAGS"] = (flags + " " if flags else "") + f"{FLAG}={count}"
