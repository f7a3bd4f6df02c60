"""Where bayesicl keeps what it can recompute: the evidence cache and compiled samplers.

``$BAYESICL_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("bayesicl")``. A leaf
module, so that the evidence cache and the NUTS fit (its JAX compilation cache) both ask it
without importing each other.

>>> import os
>>> from unittest import mock
>>> with mock.patch.dict(os.environ, {ENV_VAR: "/tmp/bayesicl-cache"}):
...     str(cache_dir())
'/tmp/bayesicl-cache'
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_VAR = "BAYESICL_CACHE_DIR"


def cache_dir() -> Path:
    """The cache root: $BAYESICL_CACHE_DIR, or the user cache directory for bayesicl."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("bayesicl"))
