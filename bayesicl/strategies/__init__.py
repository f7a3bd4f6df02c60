"""Closed-form Bayesian strategies (docs/model.md#strategies), their losses (docs/model.md#strategy-loss) and complexities (docs/model.md#complexity).

A strategy is called exactly like a logged transformer: a batch (docs/model.md#batches) in, the
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
from ..families import family_spec
from ..tasks import Task, sampling_probabilities
from ..tasks import task as _task
# Each family module registers its spec (bayesicl.families) on import, in the order listed.
from . import urns, regression, classification, markov  # noqa: F401, I001
from .base import KINDS, Strategy
from .complexity import complexity
from .loss import (PairedLosses, loss, median_of_means, median_of_means_se, paired_losses,
                   per_position_loss, sequence_losses)
from .user_families import register, register_loss


def memorizing(task: Task | str, pool: Any, *, zipf: float | None = None,
               probabilities: Any | None = None, order: int | None = None) -> Strategy:
    """M: the Bayes predictor whose prior is the training pool (uniform, or the Zipf law).

    Give either the `zipf` exponent the sequences were sampled with (its prior is then
    p_i ∝ (i+1)^(−z)) or explicit pool `probabilities`; neither means uniform. `order` picks
    the markov rule: 2 (M2, bigram, the default) or 1 (M1, unigram); other families have none.

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
    return Strategy("memorizing", task, pool, probabilities, order=order)


def generalizing(task: Task | str, *, order: int | None = None) -> Strategy:
    """G: the Bayes predictor under the task's true prior (Dirichlet mean, ridge, copying);
    for markov `order` 2 (G2, transition counts, the default) or 1 (G1, state counts).

    >>> import bayesicl as bic
    >>> generalizing(bic.task("classification", num_dims=8, context_length=16)).name
    'G'
    >>> generalizing(bic.task("markov", num_states=4, context_length=16), order=1).name
    'G1'
    """
    return Strategy("generalizing", _task(task), order=order)


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

    A name is a kind ("memorizing", "generalizing", "constant") or its short form (M, G, C);
    for a family with several orders (markov) the short form carries the order: M1, M2, G1,
    G2 (a bare kind is the family's default order).

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=16)
    >>> sorted(for_task(task, task.pool(8, seed=0), names=("M", "G", "C")))
    ['C', 'G', 'M']
    """
    task = _task(task)
    by_short_name = {short: kind for kind, short in KINDS.items()}
    out = {}
    for name in names:
        kind, order = by_short_name.get(name, name), None
        if kind not in KINDS and name[:1] in by_short_name and name[1:].isdigit():
            kind, order = by_short_name[name[:1]], int(name[1:])
        if kind == "memorizing":
            out[name] = memorizing(task, pool, zipf=zipf, order=order)
        elif kind in KINDS:
            out[name] = Strategy(kind, task, order=order)
        else:
            raise BayesiclError(f"unknown strategy {name!r}; known: {', '.join([*KINDS, *by_short_name])}"
                                " (and M1, M2, G1, G2 for markov)")
    return out


def default_strategies(task: Task | str) -> tuple[str, ...]:
    """The strategies a fit uses unless told otherwise: M and G, or the family's own set
    (markov: M2, G2, M1, G1).

    >>> import bayesicl as bic
    >>> default_strategies(bic.task("markov", num_states=4, context_length=8))
    ('M2', 'G2', 'M1', 'G1')
    """
    return tuple(family_spec(_task(task)).default_strategies)


def weight_groups(task: Task | str) -> dict[str, tuple[str, ...]]:
    """Named sums of strategy weights the family reports (markov: w_mem = w_M1 + w_M2,
    w_bigram = w_M2 + w_G2; none for the other families).

    >>> import bayesicl as bic
    >>> weight_groups(bic.task("markov", num_states=4, context_length=8))["w_bigram"]
    ('M2', 'G2')
    """
    return dict(family_spec(_task(task)).weight_groups)


__all__ = ["Strategy", "KINDS", "memorizing", "generalizing", "constant", "for_task",
           "default_strategies", "weight_groups", "loss",
           "per_position_loss", "median_of_means", "median_of_means_se", "paired_losses",
           "PairedLosses", "sequence_losses", "complexity", "register", "register_loss"]
