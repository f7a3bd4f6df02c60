"""Closed-form Bayesian strategies (SPEC §3), their losses (§4) and complexities (§5).

A strategy is called exactly like a logged transformer: a batch (SPEC §15 keys) in, the
outputs in the same layout out, so the rational model never asks "network or baseline?".

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=8, context_length=16)
>>> pool = task.pool(diversity=64, seed=1)
>>> batch = task.sample(pool, num_sequences=5, seed=2)
>>> m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
>>> m(batch).shape, g(batch).shape
((5, 16, 8), (5, 16, 8))

A task family added with `bayesicl.tasks.register` plugs its own strategies in with
`register(family, kind, build, source=..., parameters=...)` and its loss with
`register_loss(family, per_position)`; `memorizing`, `loss`, `complexity` and the evidence
then treat it like a built-in family (examples/add_a_task_family.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import BayesiclError
from ..tasks import Task, sampling_probabilities
from ..tasks import task as _task
from . import classification, regression, urns
from .base import KINDS, Strategy, register
from .loss import loss, median_of_means, per_position_loss, register_loss


def memorizing(task: Task | str, pool: Any, *, zipf: float | None = None,
               probabilities: Any | None = None) -> Strategy:
    """M: the Bayes predictor whose prior is the training pool (uniform, or the Zipf law).

    Give either the `zipf` exponent the sequences were sampled with (its prior is then
    p_i ∝ (i+1)^(−z)) or explicit pool `probabilities`; neither means uniform.

    >>> import bayesicl as bic
    >>> task = bic.task("regression", num_dims=8, context_length=16)
    >>> memorizing(task, task.pool(64, seed=1), zipf=1.0)
    Strategy(M: memorizing, regression, D=64, weighted prior)
    """
    task = _task(task)
    if zipf is not None and probabilities is not None:
        raise BayesiclError("memorizing(): give the Zipf exponent or the pool probabilities, not both")
    if zipf is not None:
        probabilities = sampling_probabilities(task.pool_size(task.validate_pool(pool)), zipf)
    return Strategy("memorizing", task, pool, probabilities)


def generalizing(task: Task | str) -> Strategy:
    """G: the Bayes predictor under the task's true prior (Dirichlet mean, ridge, copying).

    >>> import bayesicl as bic
    >>> generalizing(bic.task("classification", num_dims=8, context_length=16)).name
    'G'
    """
    return Strategy("generalizing", _task(task))


def constant(task: Task | str) -> Strategy:
    """C: the prior predictive, which ignores every input (uniform, ŷ = 0, uniform labels).

    >>> import bayesicl as bic
    >>> constant(bic.task("urns", num_dims=4, context_length=2))({"tokens": [[4, 0, 1]]})[0, 1].tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    return Strategy("constant", _task(task))


def for_task(task: Task | str, pool: Any, names: Iterable[str] = ("memorizing", "generalizing"),
             *, zipf: float | None = None) -> dict[str, Strategy]:
    """The named strategies for one (task, pool), keyed by the names given.

    A name is a kind ("memorizing", "generalizing", "constant") or its short form (M, G, C).

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=16)
    >>> sorted(for_task(task, task.pool(8, seed=0), names=("M", "G", "C")))
    ['C', 'G', 'M']
    """
    task = _task(task)
    by_short_name = {short: kind for kind, short in KINDS.items()}
    out = {}
    for name in names:
        kind = by_short_name.get(name, name)
        if kind == "memorizing":
            out[name] = memorizing(task, pool, zipf=zipf)
        elif kind in KINDS:
            out[name] = Strategy(kind, task)
        else:
            raise BayesiclError(f"unknown strategy {name!r}; known: {', '.join([*KINDS, *by_short_name])}")
    return out


try:  # K_s lives beside the canonical sources (written separately); import it when present.
    from .complexity import complexity
except ModuleNotFoundError as error:
    if error.name != f"{__name__}.complexity":
        raise

    def complexity(strategy: Strategy, *args: Any, **kwargs: Any) -> float:
        """K_s in bits (SPEC §5); unavailable until bayesicl/strategies/complexity.py exists."""
        raise BayesiclError("strategy complexity is not available: bayesicl/strategies/complexity.py is missing")


__all__ = ["Strategy", "KINDS", "memorizing", "generalizing", "constant", "for_task", "loss",
           "per_position_loss", "median_of_means", "complexity", "urns", "regression",
           "classification", "register", "register_loss"]
