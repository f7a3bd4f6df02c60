"""bayesicl: predict when a transformer memorizes or generalizes in context, from a rational
Bayesian account (Wurgaft et al., 2025, "In-Context Learning Strategies Emerge Rationally").

The package follows the data flow: `tasks` → logged `runs` → `strategies` (outputs, losses,
complexities) → `rational` strategy model → `inference` (`bic.fit`) → `plot`. Importing
bayesicl never imports torch; the reference transformers live in `bayesicl.transformers`.

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=8, context_length=16)
>>> task.pool(diversity=4, seed=1).shape
(4, 8)
"""

from __future__ import annotations

import importlib
import sys

if "jax" not in sys.modules:           # BAYESICL_CHAIN_DEVICES: chains in parallel (bayesicl._host)
    from ._host import request_host_devices

    request_host_devices()

import jax  # noqa: E402

# Fits and ridge run in float64; strategies state their own dtype. x64 must be enabled before
# any JAX array is created, so it is set on import (see docs/decisions.md).
jax.config.update("jax_enable_x64", True)

from . import families, strategies, tasks  # noqa: E402
from ._version import __version__  # noqa: E402
from .errors import BayesiclError  # noqa: E402
from .tasks import task  # noqa: E402

#: Stages loaded on first use, so that `import bayesicl` stays light and never imports torch.
_LAZY = {"inference": ".inference", "plot": ".plot", "evidence": ".evidence", "runs": ".runs",
         "observe": ".observe", "metrics": ".metrics", "rational": ".rational"}
#: Names of `bayesicl.inference` exported here, loaded on first use: `bic.fit(runs)` is the
#: fit itself (`bayesicl.inference.pipeline.fit`), with its own signature and docstring, and
#: `bic.FitOptions` the options it takes.
_LAZY_FUNCTIONS = ("fit", "FitOptions", "load_fit", "fit_population", "cross_validate", "compare_variants")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name], __name__)
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(".inference", __name__), name)
    raise AttributeError(f"module 'bayesicl' has no attribute {name!r}")


__all__ = [*_LAZY, *_LAZY_FUNCTIONS, "__version__", "BayesiclError", "families", "strategies", "task", "tasks"]
