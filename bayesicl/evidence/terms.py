"""The strategies' terms of the rational model per diversity: L̄_s(D) (SPEC §4), K_s(D) (§5).

L̄ is the slow part of building evidence (≥ 10 000 loss sequences per strategy and pool), so
each (task, pool, strategy, sample size, seed) value is cached on its own: a run that gains
checkpoints reuses it. With several seeds at one diversity (different pools), L̄ and K are
averaged over the pools.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BayesiclError
from ..tasks import Task
from . import cache as store


def make_strategy(task: Task, kind: str, pool: Any, zipf: float | None = None):
    """The strategy `kind` for `task` (M gets the pool, and the Zipf prior when sampled so).

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=3, context_length=4)
    >>> g = make_strategy(task, "generalizing", task.pool(2, seed=0))
    >>> g(task.sample(task.pool(2, seed=0), 1, seed=0)).shape
    (1, 4, 3)
    """
    from .. import strategies as library

    return library.for_task(task, pool, names=(kind,), zipf=zipf)[kind]


def strategy_terms(task: Task, strategies: Sequence[str], pools: Mapping[Any, Any], *,
                   num_sequences: int | None = None, zipf: float | None = None,
                   cache: bool = True, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """L̄_s(D) and K_s(D) for every strategy, from the pools.

    `pools` maps a diversity D, or a (D, seed) pair, to the pool of that run; the loss
    sequences are drawn with that seed (0 when only D is given). `num_sequences` is the
    number of loss sequences (None: the strategies' default, SPEC §4); `zipf` the exponent
    the runs sampled their tasks with (None: uniform). Returns two
    DataFrames indexed by diversity with one column per strategy. `progress` shows a bar.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=3, context_length=4)
    >>> loss, bits = strategy_terms(task, ("memorizing", "generalizing"),
    ...                             {2: task.pool(2, seed=0)}, num_sequences=16, cache=False)
    >>> loss.shape, bits.index.tolist()
    ((1, 2), [2])
    """
    if not pools:
        raise BayesiclError("no pools given to compute the strategies' loss and complexity")
    losses: dict[int, list[list[float]]] = {}
    complexities: dict[int, list[list[float]]] = {}
    items = list(pools.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="strategy losses L̄ and complexities K", unit="pool")
    for key, pool in items:
        diversity, seed = (key if isinstance(key, tuple) else (key, 0))
        diversity = int(diversity)
        loss_row, complexity_row = [], []
        for kind in strategies:
            value = _cached_terms(task, kind, pool, num_sequences, seed, zipf, cache)
            loss_row.append(value["loss"])
            complexity_row.append(value["complexity"])
        losses.setdefault(diversity, []).append(loss_row)
        complexities.setdefault(diversity, []).append(complexity_row)
    return _average(losses, strategies), _average(complexities, strategies)


def _cached_terms(task: Task, kind: str, pool: Any, num_sequences: int | None, seed: Any,
                  zipf: float | None, cache: bool) -> dict[str, float]:
    from .. import strategies as library
    from ..strategies.base import code_fingerprint

    entry = store.key("terms", task.settings, kind, _pool_digest(pool), num_sequences, seed, zipf,
                      code_fingerprint(task.family, [kind]))
    if cache:
        found = store.load_json("terms", entry)
        if isinstance(found, dict) and {"loss", "complexity"} <= set(found):
            return found
    strategy = make_strategy(task, kind, pool, zipf)
    value = {"loss": float(library.loss(task, strategy, pool, num_sequences, seed, zipf=zipf)),
             "complexity": float(library.complexity(strategy))}
    if not all(np.isfinite(list(value.values()))):
        raise BayesiclError(f"strategy {kind!r}: loss or complexity is not finite ({value})")
    if cache:
        store.store_json("terms", entry, value)
    return value


def _pool_digest(pool: Any) -> str:
    digest = hashlib.sha256()
    for field in (pool if isinstance(pool, tuple) else (pool,)):
        array = np.ascontiguousarray(np.asarray(field))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _average(values: dict[int, list[list[float]]], strategies: Sequence[str]) -> pd.DataFrame:
    diversities = sorted(values)
    frame = pd.DataFrame([np.mean(values[d], axis=0) for d in diversities],
                         index=pd.Index(diversities, name="diversity"), columns=list(strategies))
    frame.columns.name = "strategy"
    return frame
