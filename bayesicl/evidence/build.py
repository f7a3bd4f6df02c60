"""Evidence from logged runs: run the strategies on each run's own evaluation inputs.

Every run × checkpoint is one condition; several seeds at one diversity are several runs
(each with its own pool, inputs and strategy outputs), never averaged before the fit.
Strategy probabilities become log-probabilities floored at 1e-30 (`observe.log_probs`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import observe
from ..errors import BayesiclError
from . import cache as store
from .table import Evidence, check_cutoff, evidence_from_arrays
from .terms import make_strategy, paper_compatible, terms_table


def build_evidence(runs_dir_or_list, strategies: Sequence[str] | None = None,
                   cutoff: str | int = "paper", loss_sequences: int | None = None,
                   cache: bool = True, progress: bool = False,
                   complexity_convention: str = "bayesicl") -> Evidence:
    """The evidence of a set of logged runs of one setting (docs/model.md#observed-weights).

    `runs_dir_or_list` is a directory holding runs (searched recursively) or a list of
    `bayesicl.runs.Run`. The strategies (None: the family's default, M and G, or M2, G2, M1,
    G1 for markov) run on each run's evaluation inputs; L̄_s(D) uses
    `loss_sequences` sequences (None: the default of docs/model.md#strategy-loss). With `cache`, the result is stored
    in the user cache (never in the runs' folder) under the runs' content hashes, the
    strategies, the cutoff and the package version; a changed run is recomputed. `progress`
    shows a progress bar over the runs (tqdm, on stderr). `complexity_convention` chooses
    K: "bayesicl" (docs/model.md#complexity) or "paper" (the paper's compressors, dtypes and
    K_code, `bayesicl.strategies.complexity`); α, β, γ are comparable only under one.
    The evidence also carries the paired ΔL̄ = L̄_s − L̄_G with its standard error.

    >>> import tempfile, numpy as np, bayesicl as bic
    >>> from bayesicl.runs import RunWriter
    >>> task = bic.task("regression", num_dims=2, context_length=4)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for D in (2, 8):
    ...         pool = task.pool(D, seed=0)
    ...         evals = task.eval_sets(pool, seed=0, num_sequences=8)
    ...         writer = RunWriter(f"{tmp}/D{D}", task, pool, evals)
    ...         for step in (20, 80):
    ...             writer.log(step, {s: bic.strategies.memorizing(task, pool)(b) for s, b in evals.items()})
    ...     ev = build_evidence(tmp, loss_sequences=16, cache=False)
    >>> ev.conditions["observed_weight_id"].round(3).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    from ..runs import Run, open_runs

    check_cutoff(cutoff)
    if isinstance(runs_dir_or_list, (str, os.PathLike)):
        runs = open_runs(runs_dir_or_list)
        where = str(runs_dir_or_list)
    else:
        runs = list(runs_dir_or_list)
        where = "the runs given"
        if not all(isinstance(r, Run) for r in runs):
            raise BayesiclError("build_evidence takes a runs directory or a list of bayesicl.runs.Run")
    if not runs:
        raise BayesiclError(f"{where}: no runs to build evidence from")
    runs = sorted(runs, key=lambda r: (r.diversity, _seed(r.seed), str(r.path)))
    _check_runs(runs, where)
    from ..strategies import default_strategies
    from ..strategies.base import code_fingerprint

    strategies = tuple(strategies) if strategies else default_strategies(runs[0].task)
    runs_hash = store.key("runs", sorted(r.content_hash for r in runs))

    paper_compatible(complexity_convention)                  # refuses an unknown convention
    # One entry for every K convention: K is cheap, the strategies' outputs are not, so a
    # stored entry of the other convention only gets its terms recomputed (L̄ from its cache).
    entry = store.key("evidence", runs_hash, strategies, cutoff, loss_sequences,
                      code_fingerprint(runs[0].task.family, strategies))
    task = runs[0].task
    zipf = runs[0].meta.get("zipf")
    pools = {(r.diversity, r.seed if isinstance(r.seed, int) else tuple(r.seed)): r.pool for r in runs}
    if cache:
        found = store.load_evidence(entry)
        if found is not None:
            if found.complexity_convention == complexity_convention and found.loss_difference is not None:
                return found
            terms = terms_table(task, strategies, pools, num_sequences=loss_sequences, zipf=zipf,
                                complexity_convention=complexity_convention)
            return dataclasses.replace(found, complexity=terms.complexity, loss_difference=terms.loss_difference,
                                       loss_difference_se=terms.loss_difference_se,
                                       complexity_convention=complexity_convention)
    kind = "predictions" if task.family == "regression" else "log_probs"
    splits = [str(s) for s in runs[0].outputs.coords["split"].values]
    transformer, strategy_outputs, targets, diversity, step, seed, run_index = [], [], [], [], [], [], []
    for index, run in enumerate(_progress(runs, progress, "strategies on the runs' inputs")):
        transformer.append(_outputs(run, task, splits))
        strategy_outputs.append(np.stack([
            np.stack([_strategy_output(make_strategy(task, k, run.pool, zipf), run.inputs[s], task, kind)
                      for s in splits]) for k in strategies]))
        if task.family == "regression":
            targets.append(np.stack([np.asarray(run.inputs[s]["y"])[..., None] for s in splits]))
        steps = np.asarray(run.steps, dtype=np.int64)
        diversity += [run.diversity] * len(steps)
        seed += [_seed(run.seed)[0]] * len(steps)
        step += steps.tolist()
        run_index += [index] * len(steps)
    terms = terms_table(task, strategies, pools, num_sequences=loss_sequences, zipf=zipf, cache=cache,
                        progress=progress, complexity_convention=complexity_convention)
    evidence = evidence_from_arrays(
        task, strategies, np.concatenate(transformer), np.stack(strategy_outputs),
        diversity=diversity, step=step, seed=seed, run=run_index, loss=terms.loss,
        complexity=terms.complexity, cutoff=cutoff, settings=runs[0].settings,
        target=np.stack(targets) if targets else None, splits=splits, runs_hash=runs_hash,
        loss_difference=terms.loss_difference, loss_difference_se=terms.loss_difference_se,
        complexity_convention=complexity_convention)
    if cache:
        store.store_evidence(entry, evidence)
    return evidence


def _progress(items: list, enabled: bool, what: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="run")


def _check_runs(runs: list, where: str) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.task.family != first.task.family:
            raise BayesiclError(f"{run.path}: task family {run.task.family!r} differs from "
                                f"{first.task.family!r} ({first.path}); fit one family at a time")
        if run.settings != first.settings:
            keys = sorted(k for k in set(run.settings) | set(first.settings)
                          if run.settings.get(k) != first.settings.get(k))
            raise BayesiclError(f"{run.path}: its setting differs from {first.path} in {keys}; "
                                "runs fitted together must share one setting")
    seen: dict[Any, Path] = {}
    for run in runs:
        pair = (run.diversity, _seed(run.seed))
        if pair in seen:
            raise BayesiclError(f"{run.path}: same diversity and seed as {seen[pair]}")
        seen[pair] = run.path
        if len(run.steps) < 2:
            raise BayesiclError(f"{run.path}: diversity {run.diversity} has a single checkpoint; "
                                "the cutoff needs a trajectory of at least two")
        if np.isnan(np.asarray(run.outputs.values, dtype=np.float32)).any():
            raise BayesiclError(f"{run.path}: logged outputs contain NaN")
        splits = [str(s) for s in run.outputs.coords["split"].values]
        if "id" not in splits or "ood" not in splits:
            raise BayesiclError(f"{run.path}: outputs lack the 'id' or 'ood' split (have {splits})")
        if splits != [str(s) for s in first.outputs.coords["split"].values]:
            raise BayesiclError(f"{run.path}: splits {splits} differ from {first.path}")


def _seed(seed) -> tuple[int, ...]:
    return (int(seed),) if isinstance(seed, (int, np.integer)) else tuple(int(s) for s in seed)


def _outputs(run, task, splits: list[str]) -> np.ndarray:
    """The run's outputs as (step, split, sequence, position, output), float32."""
    outputs = run.outputs.transpose("step", "split", "sequence", ...).sel(split=splits)
    values = np.asarray(outputs.values, dtype=np.float32)
    if task.family == "regression":
        return values[..., None]                       # output axis of length 1
    if values.ndim == 4:
        return values[:, :, :, None, :]                # classification: the query position
    return values


def _strategy_output(strategy, batch, task, kind: str) -> np.ndarray:
    """One strategy on one split as (sequence, position, output): floored log-probs or predictions."""
    values = np.asarray(strategy(batch), dtype=np.float64)
    if kind == "predictions":
        return values[..., None]
    if values.ndim == 2:                               # classification: (B, L) at the query
        values = values[:, None, :]
    return observe.log_probs(values).astype(np.float32)
