"""Task families: priors, pools, sequences and evaluation sets (docs/model.md#task-families).

>>> import bayesicl as bic
>>> bic.task("urns", num_dims=8, context_length=128).settings
{'task': 'urns', 'num_dims': 8, 'context_length': 128, 'concentration': 1.0}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import BayesiclError
from ..families import FAMILIES, FamilySpec, family_spec, register_family
from .base import EVAL_SEQUENCES, OOD_POOL_SIZE, POOL_DRAW, Batch, Task, sampling_probabilities
from .classification import Classification, LabelledPool
from .markov import Markov
from .regression import Regression
from .urns import Urns


def register(cls: type[Task]) -> type[Task]:
    """Register the task class of a family: a shorthand of `bayesicl.families.register_family`
    that keeps the rest of an already registered spec (its strategies, its loss)."""
    if not (isinstance(cls, type) and issubclass(cls, Task) and cls.family):
        raise BayesiclError("register() takes a Task subclass with a non-empty `family` name")
    old = FAMILIES.get(cls.family)
    register_family(FamilySpec(cls.family, cls) if old is None else dataclasses.replace(old, task=cls))
    return cls


def task(name: str, **params: Any) -> Task:
    """Construct a task family by name with its parameters (defaults are the paper's).

    >>> import bayesicl as bic
    >>> bic.task("regression", num_dims=8, context_length=16).noise_variance
    0.03125
    """
    if isinstance(name, Task):
        return name
    if name not in FAMILIES:
        raise BayesiclError(f"unknown task {name!r}; known tasks: {', '.join(sorted(FAMILIES))}")
    cls = family_spec(name).task
    # A family may name a parameter in its own words (markov: num_states for num_dims).
    for alias, field in getattr(cls, "parameter_aliases", {}).items():
        if alias in params:
            if field in params:
                raise BayesiclError(f"task {name!r}: give {alias} or {field}, not both")
            params[field] = params.pop(alias)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BayesiclError(f"task {name!r} has no parameter(s) {unknown}; known: {sorted(known)}")
    return cls(**params)


def from_settings(settings: dict[str, Any]) -> Task:
    """Rebuild a task from its `settings` dict (as stored in run and fit files)."""
    params = dict(settings)
    name = params.pop("task", None)
    if name is None:
        raise BayesiclError("task settings lack the 'task' field")
    return task(name, **params)


__all__ = ["Task", "Urns", "Regression", "Classification", "Markov", "LabelledPool", "Batch", "task",
           "from_settings", "register", "POOL_DRAW", "EVAL_SEQUENCES",
           "OOD_POOL_SIZE", "sampling_probabilities"]
