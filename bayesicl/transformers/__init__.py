"""Reference transformers (docs/model.md#reference-transformers): the only corner of bayesicl that imports torch.

`model` holds the small GPT with a read-in/read-out per task family, `train` the logged
training loop, `ensemble` the same loop for several diversities stacked into one process
(`stacked`: the model's forward on stacked parameters), `batches` the training batches
(made ahead by worker processes on a GPU),
`presets` the YAML recipes of `models/`, `sweep` grids of runs, `cli` the `train`/`sweep` verbs.
Names are loaded on first use, so that `bayesicl.transformers.cli` (which the command line
imports to build its parser) does not import torch.

>>> from bayesicl.transformers import load_recipe
>>> load_recipe("urns").model.mlp_width
256
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "config", "Transformer": "model", "init_parameters": "model",
    "inputs_from_batch": "model", "targets_from_batch": "model",
    "Recipe": "presets", "load_recipe": "presets",
    "checkpoint_steps": "train", "load_model": "train", "train_run": "train", "train_runs": "train",
    "train_ensemble": "ensemble", "sweep_jobs": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
