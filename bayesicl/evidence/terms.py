"""The strategies' terms of the rational model per diversity: L̄_s(D)
(docs/model.md#strategy-loss) and K_s(D) (docs/model.md#complexity).

L̄ is the slow part of building evidence (≥ 10 000 loss sequences per strategy and pool), so
each (task, pool, strategies, sample size, seed) value is cached on its own: a run that gains
checkpoints reuses it. The same sequences give the paired differences ΔL̄_s = L̄_s − L̄_G and
the Monte-Carlo standard errors (`terms_table`); `unresolved_loss_signs` lists the
diversities where the sign of ΔL̄ is not resolved. With several seeds at one diversity
(different pools), the terms are averaged over the pools.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import strategies as library
from ..errors import BayesiclError
from ..strategies.base import code_fingerprint
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
    return library.for_task(task, pool, names=(kind,), zipf=zipf)[kind]


#: Values of `complexity_convention`: bayesicl's K (docs/model.md#complexity) or the paper's.
COMPLEXITY_CONVENTIONS = ("bayesicl", "paper")


@dataclasses.dataclass(frozen=True)
class StrategyTerms:
    """The strategies' terms per diversity; every table is indexed by diversity, one column
    per strategy.

    ``loss`` L̄_s(D) and ``loss_se`` its Monte-Carlo standard error; ``loss_difference``
    ΔL̄_s(D) = L̄_s − L̄_reference, paired on common sequences (one median of means of the
    per-sequence difference, `bayesicl.strategies.paired_losses`), and
    ``loss_difference_se``; ``complexity`` K_s(D) in bits under ``complexity_convention``.
    ``reference`` is the strategy the differences are taken to (None with one strategy,
    and then the difference tables are None).
    """

    loss: pd.DataFrame
    loss_se: pd.DataFrame
    loss_difference: pd.DataFrame | None
    loss_difference_se: pd.DataFrame | None
    complexity: pd.DataFrame
    reference: str | None
    complexity_convention: str = "bayesicl"


def reference_strategy(strategies: Sequence[str]) -> str | None:
    """The strategy ΔL̄ is taken to: "generalizing" if present, else the second (the fit's G).

    >>> reference_strategy(("memorizing", "generalizing", "constant")), reference_strategy(("memorizing",))
    ('generalizing', None)
    """
    strategies = tuple(strategies)
    if "generalizing" in strategies:
        return "generalizing"
    return strategies[1] if len(strategies) > 1 else None


def paper_compatible(complexity_convention: str) -> bool:
    """Whether `complexity_convention` names the paper's K (refusing unknown names).

    >>> paper_compatible("paper"), paper_compatible("bayesicl")
    (True, False)
    """
    if complexity_convention not in COMPLEXITY_CONVENTIONS:
        raise BayesiclError(f"complexity_convention must be one of {COMPLEXITY_CONVENTIONS}, "
                            f"got {complexity_convention!r}")
    return complexity_convention == "paper"


def strategy_terms(task: Task, strategies: Sequence[str], pools: Mapping[Any, Any], *,
                   num_sequences: int | None = None, zipf: float | None = None,
                   cache: bool = True, progress: bool = False,
                   complexity_convention: str = "bayesicl") -> tuple[pd.DataFrame, pd.DataFrame]:
    """L̄_s(D) and K_s(D) for every strategy, from the pools: `terms_table` without the rest.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=3, context_length=4)
    >>> loss, bits = strategy_terms(task, ("memorizing", "generalizing"),
    ...                             {2: task.pool(2, seed=0)}, num_sequences=16, cache=False)
    >>> loss.shape, bits.index.tolist()
    ((1, 2), [2])
    """
    terms = terms_table(task, strategies, pools, num_sequences=num_sequences, zipf=zipf, cache=cache,
                        progress=progress, complexity_convention=complexity_convention)
    return terms.loss, terms.complexity


def terms_table(task: Task, strategies: Sequence[str], pools: Mapping[Any, Any], *,
                num_sequences: int | None = None, zipf: float | None = None, cache: bool = True,
                progress: bool = False, complexity_convention: str = "bayesicl") -> StrategyTerms:
    """L̄_s(D), ΔL̄_s(D) paired to the reference strategy, their standard errors, and K_s(D).

    `pools` maps a diversity D, or a (D, seed) pair, to the pool of that run; the loss
    sequences are drawn with that seed (0 when only D is given). `num_sequences` is the
    number of loss sequences (None: the strategies' default, docs/model.md#strategy-loss);
    `zipf` the exponent the runs sampled their tasks with (None: uniform).
    `complexity_convention` is "bayesicl" (docs/model.md#complexity) or "paper" (the
    paper's compressors, dtypes and K_code; `bayesicl.strategies.complexity`): α, β, γ
    fitted under one are not comparable with those fitted under the other. With several
    seeds at one diversity the values are averaged over the pools (standard errors combine
    as those of a mean). `progress` shows a bar.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=32)
    >>> terms = terms_table(task, ("memorizing", "generalizing"), {64: task.pool(64, seed=0)},
    ...                     num_sequences=400, cache=False)
    >>> terms.reference, terms.loss_difference.columns.tolist()
    ('generalizing', ['memorizing', 'generalizing'])
    >>> m_minus_g = terms.loss.loc[64, "memorizing"] - terms.loss.loc[64, "generalizing"]
    >>> bool(abs(terms.loss_difference.loc[64, "memorizing"] - m_minus_g) < 0.01)
    True
    """
    paper = paper_compatible(complexity_convention)
    strategies = tuple(strategies)
    if not pools:
        raise BayesiclError("no pools given to compute the strategies' loss and complexity")
    reference = reference_strategy(strategies)
    rows: dict[str, dict[int, list[list[float]]]] = {}
    items = list(pools.items())
    if progress:
        items = tqdm(items, desc="strategy losses L̄ and complexities K", unit="pool")
    for key, pool in items:
        diversity, seed = (key if isinstance(key, tuple) else (key, 0))
        diversity = int(diversity)
        paired = _cached_losses(task, strategies, reference, pool, num_sequences, seed, zipf, cache)
        bits = _cached_complexity(task, strategies, pool, zipf, paper, cache)
        for name, values in (*paired.items(), ("complexity", bits)):
            rows.setdefault(name, {}).setdefault(diversity, []).append([values[k] for k in strategies])
    differences = reference is not None
    return StrategyTerms(
        loss=_average(rows["loss"], strategies), loss_se=_average(rows["loss_se"], strategies, se=True),
        loss_difference=_average(rows["difference"], strategies) if differences else None,
        loss_difference_se=_average(rows["difference_se"], strategies, se=True) if differences else None,
        complexity=_average(rows["complexity"], strategies), reference=reference,
        complexity_convention=complexity_convention)


def unresolved_loss_signs(terms, z: float = 2.0) -> pd.DataFrame:
    """The (diversity, strategy) pairs whose paired ΔL̄ has no resolved sign: |ΔL̄| < z·SE.

    `terms` is an `Evidence` or a `StrategyTerms` (anything with ``loss_difference`` and
    ``loss_difference_se`` tables). Where the sign of ΔL̄_M = L̄_M − L̄_G is not resolved, so
    is the direction of the transition the model predicts at that D: N*(D) there rests on
    Monte-Carlo noise (more loss sequences resolve it). Returns a DataFrame with columns
    diversity, strategy, loss_difference, se, sorted by diversity; empty when every sign is
    resolved or when `terms` carries no paired differences (terms given by hand). The
    reference strategy itself is never listed.

    >>> import pandas as pd
    >>> index = pd.Index([64, 256], name="diversity")
    >>> delta = pd.DataFrame({"memorizing": [-0.05, 0.0079], "generalizing": [0.0, 0.0]}, index=index)
    >>> se = pd.DataFrame({"memorizing": [0.001, 0.0045], "generalizing": [0.0, 0.0]}, index=index)
    >>> terms = StrategyTerms(delta, se, delta, se, delta, "generalizing")
    >>> unresolved_loss_signs(terms).to_dict("records")
    [{'diversity': 256, 'strategy': 'memorizing', 'loss_difference': 0.0079, 'se': 0.0045}]
    """
    columns = ["diversity", "strategy", "loss_difference", "se"]
    delta, se = getattr(terms, "loss_difference", None), getattr(terms, "loss_difference_se", None)
    if delta is None or se is None:
        return pd.DataFrame(columns=columns)
    reference = getattr(terms, "reference", None) or reference_strategy(tuple(delta.columns))
    rows = [(int(d), str(s), float(delta.loc[d, s]), float(se.loc[d, s]))
            for d in delta.index for s in delta.columns
            if s != reference and abs(delta.loc[d, s]) < z * se.loc[d, s]]
    return pd.DataFrame(rows, columns=columns).sort_values("diversity", kind="stable").reset_index(drop=True)


def loss_sign_warning(terms, z: float = 2.0) -> str | None:
    """A one-line guard message naming the diversities of `unresolved_loss_signs`, or None.

    >>> import pandas as pd
    >>> delta = pd.DataFrame({"memorizing": [0.0079], "generalizing": [0.0]}, index=[256])
    >>> se = pd.DataFrame({"memorizing": [0.0045], "generalizing": [0.0]}, index=[256])
    >>> print(loss_sign_warning(StrategyTerms(delta, se, delta, se, delta, "generalizing")))
    the sign of the paired loss difference L̄_s − L̄_generalizing is not resolved (|ΔL̄| < 2 SE)
    at D=256 (memorizing 0.0079 ± 0.0045): N*(D) there rests on Monte-Carlo noise; use more
    loss sequences
    """
    unresolved = unresolved_loss_signs(terms, z)
    if unresolved.empty:
        return None
    reference = getattr(terms, "reference", None) or reference_strategy(tuple(terms.loss_difference.columns))
    cells = ", ".join(f"D={r.diversity} ({r.strategy} {r.loss_difference:.2g} ± {r.se:.2g})"
                      for r in unresolved.itertuples())
    return (f"the sign of the paired loss difference L̄_s − L̄_{reference} is not resolved "
            f"(|ΔL̄| < {z:g} SE) at {cells}: N*(D) there rests on Monte-Carlo noise; use more loss sequences")


def _cached_losses(task: Task, strategies: tuple[str, ...], reference: str | None, pool: Any,
                   num_sequences: int | None, seed: Any, zipf: float | None,
                   cache: bool) -> dict[str, dict[str, float]]:
    """{"loss", "loss_se", "difference", "difference_se"} → {strategy: value} for one pool."""
    entry = store.key("paired_losses", task.settings, strategies, reference, _pool_digest(pool),
                      num_sequences, seed, zipf, code_fingerprint(task.family, strategies))
    wanted = {"loss", "loss_se", "difference", "difference_se"}
    if cache:
        found = store.load_json("terms", entry)
        if isinstance(found, dict) and wanted <= set(found) \
                and all(set(found[name]) >= set(strategies) for name in wanted):
            return found
    built = {kind: make_strategy(task, kind, pool, zipf) for kind in strategies}
    # With no reference (one strategy) the differences are to the strategy itself, i.e. 0.
    paired = library.paired_losses(task, built, pool, num_sequences, seed, zipf=zipf,
                                   reference=reference or strategies[0])
    value = {"loss": paired.loss, "loss_se": paired.loss_se, "difference": paired.difference,
             "difference_se": paired.difference_se}
    for name, per_strategy in value.items():
        if not all(np.isfinite(list(per_strategy.values()))):
            raise BayesiclError(f"strategy losses: {name} is not finite ({per_strategy})")
    if cache:
        store.store_json("terms", entry, value)
    return value


def _cached_complexity(task: Task, strategies: tuple[str, ...], pool: Any, zipf: float | None,
                       paper: bool, cache: bool) -> dict[str, float]:
    entry = store.key("complexity", task.settings, strategies, _pool_digest(pool), zipf, paper,
                      code_fingerprint(task.family, strategies))
    if cache:
        found = store.load_json("terms", entry)
        if isinstance(found, dict) and set(found) >= set(strategies):
            return found
    value = {kind: float(library.complexity(make_strategy(task, kind, pool, zipf), paper_compatible=paper))
             for kind in strategies}
    if not all(np.isfinite(list(value.values()))):
        raise BayesiclError(f"strategy complexity is not finite ({value})")
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


def _average(values: dict[int, list[list[float]]], strategies: Sequence[str], se: bool = False) -> pd.DataFrame:
    """Mean over the pools at each diversity; for standard errors, that of the mean."""
    diversities = sorted(values)
    combine = (lambda v: np.sqrt(np.sum(np.square(v), axis=0)) / len(v)) if se else \
        (lambda v: np.mean(v, axis=0))
    frame = pd.DataFrame([combine(np.asarray(values[d], dtype=np.float64)) for d in diversities],
                         index=pd.Index(diversities, name="diversity"), columns=list(strategies))
    frame.columns.name = "strategy"
    return frame
