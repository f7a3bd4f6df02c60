"""Evidence from logged runs: run the strategies on each run's own evaluation inputs.

Every run × checkpoint is one condition; several seeds at one diversity are several runs
(each with its own pool, inputs and strategy outputs), never averaged before the fit.
Strategy probabilities become log-probabilities floored at 1e-30 (`observe.log_probs`).

The build streams: a runs folder is opened lazily (`bayesicl.evidence.stream`), the
strategies run once per run, and the checkpoints are read one block at a time while the
per-condition statistics are computed, so memory does not grow with the number of
checkpoints (only the strategies' outputs of every run, one checkpoint's worth per run, are
kept: the metrics of a fit with more than two strategies read them again).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .. import observe
from ..errors import BayesiclError
from ..families import family_spec
from ..runs import Run
from ..strategies import default_strategies
from ..strategies.base import code_fingerprint
from . import cache as store
from . import stored
from .stream import LazyRun, RunSource, open_lazy_runs, run_splits
from .table import Evidence, _condition_index, _scored_mask, _split_names, assemble, check_cutoff
from .terms import make_strategy, paper_compatible as _check_convention, terms_table


def build_evidence(runs_dir_or_list, strategies: Sequence[str] | None = None,
                   cutoff: str | int = "paper", loss_sequences: int | None = None,
                   cache: bool = True, progress: bool = False,
                   complexity_convention: str = "bayesicl", paper_compatible: bool | None = None) -> Evidence:
    """The evidence of a set of logged runs of one setting (docs/model.md#observed-weights).

    `runs_dir_or_list` is a directory holding runs (searched recursively) or a list of
    `bayesicl.runs.Run` (a folder is read checkpoint by checkpoint, never whole). The strategies (None: the family's default, M and G, or M2, G2, M1,
    G1 for markov) run on each run's evaluation inputs; L̄_s(D) uses
    `loss_sequences` sequences (None: the default of docs/model.md#strategy-loss). With `cache`, the result is stored
    in the user cache (never in the runs' folder) under the runs' content hashes, the
    strategies, the cutoff and the package version; a changed run is recomputed. `progress`
    shows a progress bar over the runs (tqdm, on stderr). `complexity_convention` chooses
    K: "bayesicl" (docs/model.md#complexity) or "paper" (the paper's compressors, dtypes and
    K_code, `bayesicl.strategies.complexity`); α, β, γ are comparable only under one.
    `paper_compatible=True` is the same as `complexity_convention="paper"` (False: "bayesicl").
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
    >>> ev.sel(split="id")["observed_weight"].round(3).values.tolist()
    [1.0, 1.0, 1.0, 1.0]
    >>> ev.sel(diversity=8, step=80)["observed_weight"].round(3).values.tolist()    # [[id, ood]]
    [[1.0, 1.0]]
    """
    check_cutoff(cutoff)
    if isinstance(runs_dir_or_list, (str, os.PathLike)):
        runs = open_lazy_runs(runs_dir_or_list)
        where = str(runs_dir_or_list)
    else:
        runs = list(runs_dir_or_list)
        where = "the runs given"
        if not all(isinstance(r, (Run, LazyRun)) for r in runs):
            raise BayesiclError("build_evidence takes a runs directory or a list of bayesicl.runs.Run")
    if not runs:
        raise BayesiclError(f"{where}: no runs to build evidence from")
    runs = sorted(runs, key=lambda r: (r.diversity, _seed(r.seed), str(r.path)))
    _check_runs(runs, where)
    strategies = tuple(strategies) if strategies else default_strategies(runs[0].task)
    runs_hash = store.key("runs", sorted(r.content_hash for r in runs))

    if paper_compatible is not None:
        complexity_convention = "paper" if paper_compatible else "bayesicl"
    _check_convention(complexity_convention)                  # refuses an unknown convention
    # One entry for every K convention: K is cheap, the strategies' outputs are not, so a
    # stored entry of the other convention only gets its terms recomputed (L̄ from its cache).
    entry = store.key("evidence", stored.EVIDENCE_FORMAT, runs_hash, strategies, cutoff, loss_sequences,
                      code_fingerprint(runs[0].task.family, strategies))
    task = runs[0].task
    zipf = runs[0].meta.get("zipf")
    pools = {(r.diversity, r.seed if isinstance(r.seed, int) else tuple(r.seed)): r.pool for r in runs}
    splits = run_splits(runs[0])
    if cache:
        found = stored.load_evidence(entry, runs, splits)
        if found is not None:
            if found.complexity_convention == complexity_convention and found.loss_difference is not None:
                return found
            terms = terms_table(task, strategies, pools, num_sequences=loss_sequences, zipf=zipf,
                                complexity_convention=complexity_convention)
            return dataclasses.replace(found, complexity=terms.complexity, loss_difference=terms.loss_difference,
                                       loss_difference_se=terms.loss_difference_se,
                                       complexity_convention=complexity_convention)
    spec = family_spec(task)
    kind = spec.output_kind
    strategy_outputs = [np.stack([
        np.stack([_strategy_output(make_strategy(task, k, run.pool, zipf), run.inputs[s], task, kind)
                  for s in splits]) for k in strategies])
        for run in _progress(runs, progress, "strategies on the runs' inputs")]
    targets = None
    if spec.target_key is not None:
        targets = [np.stack([np.asarray(run.inputs[s][spec.target_key], dtype=np.float32)[..., None]
                             for s in splits]) for run in runs]
    diversity, step, seed, run_index = [], [], [], []
    for index, run in enumerate(runs):
        steps = np.asarray(run.steps, dtype=np.int64)
        diversity += [run.diversity] * len(steps)
        seed += [_seed(run.seed)[0]] * len(steps)
        step += steps.tolist()
        run_index += [index] * len(steps)
    table = _condition_index(diversity, step, seed, run_index, len(step))
    num_positions = strategy_outputs[0].shape[3]
    scored = _scored_mask(task, None, num_positions)
    _split_names(task, splits, len(splits))
    source = RunSource(runs, splits, strategy_outputs, targets)
    terms = terms_table(task, strategies, pools, num_sequences=loss_sequences, zipf=zipf, cache=cache,
                        progress=progress, complexity_convention=complexity_convention)
    evidence = assemble(task, strategies, source, table, scored, loss=terms.loss, complexity=terms.complexity,
                        loss_difference=terms.loss_difference, loss_difference_se=terms.loss_difference_se,
                        cutoff=cutoff, settings=runs[0].settings, runs_hash=runs_hash,
                        complexity_convention=complexity_convention,
                        progress=(lambda items: _progress(list(items), progress, "checkpoints: distances and objective"))
                        if progress else None)
    if cache:
        entry_folder = stored.store_evidence(entry, evidence)
        if entry_folder is not None:      # the strategies' outputs are read back from the cache when needed
            reader = stored.strategy_reader(entry_folder)
            evidence = dataclasses.replace(evidence, source=RunSource(runs, splits, reader, targets))
    return evidence


def _progress(items: list, enabled: bool, what: str):
    if not enabled:
        return items
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
        # A lazily opened run's checkpoints are checked (finite, normalized) as they are read.
        if not isinstance(run, LazyRun) and np.isnan(np.asarray(run.outputs.values, dtype=np.float32)).any():
            raise BayesiclError(f"{run.path}: logged outputs contain NaN")
        splits = run_splits(run)
        if "id" not in splits or "ood" not in splits:
            raise BayesiclError(f"{run.path}: outputs lack the 'id' or 'ood' split (have {splits})")
        if splits != run_splits(first):
            raise BayesiclError(f"{run.path}: splits {splits} differ from {first.path}")


def _seed(seed) -> tuple[int, ...]:
    return (int(seed),) if isinstance(seed, (int, np.integer)) else tuple(int(s) for s in seed)


def _strategy_output(strategy, batch, task, kind: str) -> np.ndarray:
    """One strategy on one split as (sequence, position, output): floored log-probs or predictions."""
    values = np.asarray(strategy(batch), dtype=np.float64)
    if kind == "predictions":
        return values[..., None]
    if values.ndim == 2:                               # classification: (B, L) at the query
        values = values[:, None, :]
    return observe.log_probs(values).astype(np.float32)
