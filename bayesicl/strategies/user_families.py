"""Plug a user's strategies and loss into the spec of a family registered with `bayesicl.tasks.register`.

Both functions are shorthands of `bayesicl.families.register_family`: they replace the
registered spec by one with the strategy (or the loss) added, the path the built-in families
take when they register their specs. A family can also write its whole `FamilySpec` at once
(examples/add_a_task_family.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import BayesiclError
from ..families import FAMILIES, KINDS, FamilySpec, StrategyBuilder, register_family
from ..tasks import Task
from .complexity import normalized_source

def register(family: str, kind: str, build: Callable[[Task, Any], Callable[[Mapping[str, Any]], Any]], *,
             source: str | Callable | None = None,
             parameters: Callable[[Task, Any], Any] | None = None) -> StrategyBuilder:
    """Plug a strategy of a task family registered with `bayesicl.tasks.register` in.

    `kind` is "memorizing", "generalizing" or "constant". `build(task, pool)` is called once
    per `Strategy` (pool: the D training tasks for M, None for G and C) and returns a
    callable batch → probabilities in the layout the family's transformer logs (the evidence
    and the fit treat every family but regression as distributions). For the complexity K_s
    (docs/model.md#complexity), `source` is the strategy's short canonical reference implementation, a string
    or a function/class whose source is read with `inspect` (K_code: normalized and
    compressed as the built-in canonical sources are), and `parameters(task, pool)` returns
    the prior parameters serialized for K_data (float64, C order); for M it defaults to the
    pool. Registering (family, kind) again replaces it. The family's loss for L̄ is
    registered with `bayesicl.strategies.register_loss`. See examples/add_a_task_family.py.

    >>> import dataclasses, numpy as np, bayesicl as bic
    >>> @bic.tasks.register
    ... @dataclasses.dataclass(frozen=True)
    ... class Dice(bic.tasks.Urns):          # urns under another family name
    ...     family = "dice"
    >>> uniform = "def predict(d, tokens):\\n    return [[1 / d] * d for _ in tokens[1:]]"
    >>> _ = register("dice", "constant",
    ...              lambda task, pool: lambda batch: np.full((len(batch["tokens"]),
    ...                  task.context_length, task.num_dims), 1 / task.num_dims),
    ...              source=uniform, parameters=lambda task, pool: np.full(task.num_dims, 1 / task.num_dims))
    >>> task = bic.task("dice", num_dims=2, context_length=3)
    >>> c = bic.strategies.constant(task)
    >>> c, c({"tokens": [[2, 0, 1, 1]]})[0, 0].tolist()
    (Strategy(C: constant, dice), [0.5, 0.5])
    >>> bic.strategies.complexity(c) > 0
    True
    """
    spec = _user_family(family, "strategies")
    if not spec.task.input_keys:
        raise BayesiclError(f"task family {family!r} names no input_keys (the batch keys its "
                            "strategies and transformers read)")
    if kind not in KINDS:
        raise BayesiclError(f"unknown strategy kind {kind!r}; known: {', '.join(KINDS)}")
    if not callable(build) or (parameters is not None and not callable(parameters)):
        raise BayesiclError("register() takes callables: build(task, pool) and parameters(task, pool)")
    entry = StrategyBuilder(family, kind, build, source, parameters)
    if entry.source is not None:
        normalized_source(entry.source)         # refuse a source that does not parse, now
    register_family(dataclasses.replace(spec, strategies={**spec.strategies, kind: entry}))
    return entry


def register_loss(family: str, per_position: Callable[[Task, np.ndarray, Mapping[str, Any]], Any]) -> None:
    """Register the per-position loss of L̄ (docs/model.md#strategy-loss) for a family added by `tasks.register`.

    `per_position(task, log_probs, batch)` gets a strategy's (or any predictor's) natural-log
    probabilities on `batch` as float64, floored so that they are finite, in the layout the
    strategy returns, and the batch itself, with the generating parameters the family's
    sampler stores in it (the θ of each sequence, say). It returns the loss at every scored
    position, (n, P) or (n,), typically KL(true next-token distribution ‖ prediction).
    Registering a family again replaces its loss.

    >>> import dataclasses, numpy as np, bayesicl as bic
    >>> @bic.tasks.register
    ... @dataclasses.dataclass(frozen=True)
    ... class Dice(bic.tasks.Urns):          # urns under another family name
    ...     family = "dice"
    >>> def kl(task, log_probs, batch):       # KL(θ ‖ p̂_t) at every row t
    ...     theta = np.asarray(batch["theta"])[:, None, :]
    ...     return (theta * (np.log(theta) - log_probs)).sum(-1)
    >>> register_loss("dice", kl)
    >>> task = bic.task("dice", num_dims=2, context_length=3)
    >>> fair = lambda batch: np.full((len(batch["tokens"]), 3, 2), 0.5)
    >>> bic.strategies.per_position_loss(task, fair, {"tokens": [[2, 0, 0, 1]], "theta": [[0.5, 0.5]]}).tolist()
    [[0.0, 0.0, 0.0]]
    """
    spec = _user_family(family, "loss")
    if not callable(per_position):
        raise BayesiclError("register_loss() takes a callable per_position(task, log_probs, batch)")
    register_family(dataclasses.replace(spec, loss=per_position))


def _user_family(family: str, what: str) -> FamilySpec:
    spec = FAMILIES.get(family)
    if spec is None:
        raise BayesiclError(f"unknown task family {family!r}: register it first with bayesicl.tasks.register")
    if spec.kernels is not None:
        built_in = "built-in strategies" if what == "strategies" else "a built-in loss"
        raise BayesiclError(f"task family {family!r} has {built_in}; register a new family")
    return spec
