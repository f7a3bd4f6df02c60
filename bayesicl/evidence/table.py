"""The evidence: everything the fit needs, per condition (configuration × run × checkpoint).

`Evidence` is the boundary between observing the transformer (docs/model.md#observed-weights)
and fitting the rational model (docs/model.md#map, docs/model.md#nuts). Its ``dataset`` is
labelled: a condition is indexed by (configuration, diversity, seed, step), what is observed
on each split is a variable with a ``split`` dimension, so
``evidence.sel(diversity=64, step=5000)`` reads like the question it answers.
`evidence_from_arrays` builds one from NumPy arrays: the transformer's outputs per condition
and every strategy's outputs per run on the same inputs, plus L̄_s(D) and K_s(D). It
computes, in one pass over the outputs (`bayesicl.evidence.statistics`), the distances,
relative distances, observed weights, interpolation distances, convex weights (> 2
strategies), the tabulated objective and the modeled checkpoints; the token-level outputs
stay with their source (runs on disk, or the arrays given) and are read again only by the
metrics of a fit.

Distances use only the "id" and "ood" splits; classification's "iwl" split travels with the
outputs for figures and never enters a distance or the fit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import observe
from ..errors import BayesiclError
from ..families import family_spec
from ..tasks import Task
from ..tasks import task as make_task
from .metric_tables import DEFAULT_METRICS
from .statistics import DISTANCE_SPLITS, OBSERVATIONS, RunObserver, collect, statistics_dataset
from .stream import ArraySource
from .tabulation import chebyshev_nodes
from .terms import paper_compatible, reference_strategy, terms_table


#: The levels of the condition index: which configuration, which run (its diversity and
#: seed) and which checkpoint of it.
CONDITION_LEVELS = ("configuration", "diversity", "seed", "step")


@dataclasses.dataclass(frozen=True, eq=False)
class Evidence:
    """Observed behaviour of the transformer and the strategies' terms, for one configuration.

    ``dataset`` holds what is observed per condition c, labelled (`evidence_dataset`):
    dimension ``condition``, a MultiIndex (configuration, diversity, seed, step), with the
    coordinate ``run`` (the run index of c) and the variable ``modeled`` (bool); per split
    s ∈ {id, ood} (dimension ``split``): d_TM, d_TG, d_MG, r, observed_weight and
    interpolation_distance, and with more than two strategies convex_weight (condition,
    split, strategy). ``evidence.sel(diversity=64, step=5000)`` selects from it; ``conditions``
    is the same as one wide row per condition (`condition_table`).

    ``loss`` and ``complexity`` are indexed by diversity with one column per strategy kind.
    ``statistics`` holds what the fit reads besides the observations
    (`bayesicl.evidence.statistics`): the tabulated ID objective per condition
    (objective_value/slope/curvature (condition, node) for two distributions;
    quadratic_star, quadratic_center, quadratic_matrix for regression), the ρ curves per run
    (curve_value, curve_slope (run, curve_split, node)), the Chebyshev nodes (node_value) and
    scored (position,); its ``condition`` is the integer position of a condition. ``source``
    yields the token-level outputs again, one block of checkpoints at a time
    (`bayesicl.evidence.stream`); ``arrays`` loads all of them at once, labelled (float32):
    transformer (condition, split, sequence, position, output), strategy (run,
    strategy_kind, split, sequence, position, output), scored (position,) and, for
    regression, target (run, split, sequence, position, output), its conditions indexed as
    in ``dataset`` — convenient for small evidence and figures, the memory the streaming
    build avoids for large ones. (The strategy axis of ``arrays`` is named "strategy_kind"
    because xarray forbids a variable named like one of its dimensions.)

    ``loss_difference`` (same layout as ``loss``) is ΔL̄_s(D) = L̄_s − L̄_G paired on common
    loss sequences and ``loss_difference_se`` its Monte-Carlo standard error
    (`bayesicl.evidence.terms.terms_table`; None when L̄ was given by hand). The fit uses
    ``loss``; the paired difference says where the sign of L̄_M − L̄_G, hence the direction
    of the transition, is resolved (`bayesicl.evidence.unresolved_loss_signs`).
    ``complexity_convention`` names the K convention ("bayesicl" or "paper").
    """

    task: Task
    settings: dict
    strategies: tuple[str, ...]
    output_kind: str
    dataset: xr.Dataset
    loss: pd.DataFrame
    complexity: pd.DataFrame
    statistics: xr.Dataset
    cutoff_step: int
    runs_hash: str | None = None
    loss_difference: pd.DataFrame | None = None
    loss_difference_se: pd.DataFrame | None = None
    complexity_convention: str = "bayesicl"
    source: Any = dataclasses.field(default=None, repr=False)

    def sel(self, **labels) -> xr.Dataset:
        """The observations at the given labels, e.g. ``sel(diversity=64, step=5000)``
        (`xarray.Dataset.sel` on ``dataset``)."""
        return self.dataset.sel(**labels)

    @functools.cached_property
    def conditions(self) -> pd.DataFrame:
        """One wide row per condition (`condition_table`): the layout of a fit folder's
        evidence_conditions.csv."""
        return condition_table(self.dataset)

    @property
    def configuration(self) -> str:
        """The configuration label of the conditions (the family name unless relabelled)."""
        return str(self.dataset["configuration"].values[0])

    def with_configuration(self, name: str) -> "Evidence":
        """The same evidence with every condition labelled as configuration `name`."""
        relabelled = self.dataset.reset_index("condition").assign_coords(
            configuration=("condition", np.full(self.num_conditions, str(name), dtype=object)))
        return dataclasses.replace(self, dataset=relabelled.set_index(condition=list(CONDITION_LEVELS)))

    def observed_m_weight(self, split: str = "id") -> xr.DataArray:
        """The observed weight of M (the first strategy) of every condition on `split`
        (condition,): its convex weight with more than two strategies, else
        (clip(r, −1, 1) + 1)/2 (docs/model.md#observed-weights)."""
        observed = self.dataset.sel(split=split)
        if len(self.strategies) > 2:
            return observed["convex_weight"].sel(strategy=self.strategies[0], drop=True)
        return observed["observed_weight"]

    @property
    def splits(self) -> list[str]:
        """The split names of the outputs, in storage order ("id", "ood" first)."""
        return [str(s) for s in self.statistics["split"].values]

    @property
    def scored(self) -> np.ndarray:
        """The scored positions (position,) bool."""
        return np.asarray(self.statistics["scored"].values, dtype=bool)

    @functools.cached_property
    def arrays(self) -> xr.Dataset:
        """Every token-level output in memory, labelled (see the class docstring)."""
        if self.source is None:
            raise BayesiclError("this evidence carries no outputs (built without a source)")
        return outputs_dataset(self)

    @property
    def reference(self) -> str | None:
        """The strategy ``loss_difference`` is taken to ("generalizing", else the second)."""
        return reference_strategy(self.strategies) if self.loss_difference is not None else None

    @property
    def num_conditions(self) -> int:
        return int(self.dataset.sizes["condition"])

    @property
    def modeled(self) -> pd.DataFrame:
        """The rows of ``conditions`` the rational model is asked to explain."""
        return self.conditions[self.conditions["modeled"]]


def evidence_dataset(table: pd.DataFrame, observations: Mapping[str, np.ndarray],
                     strategies: Sequence[str], configuration: str) -> xr.Dataset:
    """The observations of the conditions `table` (run, diversity, seed, step[, modeled]), labelled.

    `observations` maps each name of `OBSERVATIONS` to a (C, 2) array over the splits
    (id, ood), and convex_weight, when present, to (C, 2, S). Every condition is labelled
    with `configuration`; ``modeled`` is a variable when the table has it.

    >>> table = pd.DataFrame({"run": [0, 0], "diversity": [4, 4], "seed": [0, 0],
    ...                       "step": [10, 20], "modeled": [False, True]})
    >>> r = np.array([[0.2, 0.4], [0.6, 0.8]])
    >>> ds = evidence_dataset(table, {"r": r}, ("memorizing", "generalizing"), "urns")
    >>> float(ds["r"].sel(step=20, split="ood").item())
    0.8
    """
    index = pd.MultiIndex.from_arrays(
        [np.full(len(table), str(configuration), dtype=object),
         *(table[level].to_numpy(dtype=np.int64) for level in CONDITION_LEVELS[1:])], names=CONDITION_LEVELS)
    data: dict[str, Any] = {}
    if "modeled" in table:
        data["modeled"] = ("condition", table["modeled"].to_numpy(dtype=bool))
    for name, values in observations.items():
        dims = ("condition", "split", "strategy") if name == "convex_weight" else ("condition", "split")
        data[name] = (dims, np.asarray(values, dtype=np.float64))
    coords = xr.Coordinates.from_pandas_multiindex(index, "condition")
    return xr.Dataset(data, coords=coords).assign_coords(
        run=("condition", table["run"].to_numpy(dtype=np.int64)), split=list(DISTANCE_SPLITS),
        strategy=list(strategies))


def condition_table(dataset: xr.Dataset) -> pd.DataFrame:
    """The evidence's observations as one wide row per condition: condition (its position),
    run, diversity, seed, step, then for each split s: d_TM_s, d_TG_s, d_MG_s, r_s,
    observed_weight_s, interpolation_distance_s (and observed_<strategy>_s, the convex
    weights, with more than two strategies), then modeled. The one place the split goes into
    column names, for tables written to disk and read by eye.

    >>> table = pd.DataFrame({"run": [0], "diversity": [4], "seed": [0], "step": [10], "modeled": [True]})
    >>> ds = evidence_dataset(table, {"r": np.array([[0.2, 0.4]])}, ("memorizing", "generalizing"), "urns")
    >>> list(condition_table(ds).columns)
    ['condition', 'run', 'diversity', 'seed', 'step', 'r_id', 'r_ood', 'modeled']
    """
    columns: dict[str, np.ndarray] = {
        "condition": np.arange(dataset.sizes["condition"], dtype=np.int64),
        "run": dataset["run"].to_numpy().astype(np.int64)}
    for level in CONDITION_LEVELS[1:]:
        columns[level] = dataset[level].to_numpy().astype(np.int64)
    for split in dataset["split"].values:
        observed = dataset.sel(split=split)
        for name in OBSERVATIONS:
            if name in dataset:
                columns[f"{name}_{split}"] = observed[name].to_numpy()
        if "convex_weight" in dataset:
            for kind in dataset["strategy"].values:
                columns[f"observed_{kind}_{split}"] = observed["convex_weight"].sel(strategy=kind).to_numpy()
    columns["modeled"] = dataset["modeled"].to_numpy().astype(bool)
    return pd.DataFrame(columns)


def labelled_table(table: pd.DataFrame) -> xr.Dataset:
    """A wide table of conditions (`condition_table`'s layout, or some of its columns) labelled
    again, the inverse of `condition_table`: each <name>_<split> column of `OBSERVATIONS`
    becomes the variable <name> (condition, split), the observed_<strategy>_<split> columns
    convex_weight (condition, split, strategy) (a split a column lacks is NaN); condition,
    run, diversity, seed, step become coordinates and every other column a variable over
    condition. For readers handed the wide table instead of `Evidence.dataset`.

    >>> table = pd.DataFrame({"run": [0], "diversity": [4], "seed": [0], "step": [10], "modeled": [True]})
    >>> ds = evidence_dataset(table, {"r": np.array([[0.2, 0.4]])}, ("memorizing", "generalizing"), "urns")
    >>> labelled_table(condition_table(ds))["r"].sel(split="ood").values.tolist()
    [0.4]
    """
    splits = [split for split in DISTANCE_SPLITS if any(str(c).endswith(f"_{split}") for c in table.columns)]
    by_split: dict[str, dict[str, str]] = {}                  # {name: {split: column}}
    for column in table.columns:
        for split in splits:
            name = str(column).removesuffix(f"_{split}")
            if name != str(column) and (name in OBSERVATIONS or name.startswith("observed_")):
                by_split.setdefault(name, {})[split] = column

    def over_splits(columns: dict[str, str]) -> np.ndarray:   # (C, split)
        return np.stack([table[columns[split]].to_numpy(dtype=np.float64) if split in columns
                         else np.full(len(table), np.nan) for split in splits], axis=1)

    used = {column for columns in by_split.values() for column in columns.values()}
    labels = {"condition", "run", *CONDITION_LEVELS}
    coords: dict[str, Any] = {"split": splits}
    data: dict[str, Any] = {}
    for column in table.columns:
        if column not in used:
            (coords if column in labels else data)[str(column)] = ("condition", table[column].to_numpy())
    for name, columns in by_split.items():
        if name in OBSERVATIONS:
            data[name] = (("condition", "split"), over_splits(columns))
    kinds = [name.removeprefix("observed_") for name in by_split if name not in OBSERVATIONS]
    if kinds:
        coords["strategy"] = kinds
        data["convex_weight"] = (("condition", "split", "strategy"),
                                 np.stack([over_splits(by_split[f"observed_{kind}"]) for kind in kinds], axis=2))
    return xr.Dataset(data, coords=coords)


def evidence_from_arrays(task, strategies: Sequence[str], transformer, strategy_outputs, *,
                         diversity, step, seed=None, run=None, configuration: str | None = None,
                         loss=None, complexity=None, pools=None, loss_difference=None, loss_difference_se=None,
                         complexity_convention: str = "bayesicl", loss_sequences: int | None = None,
                         cutoff: str | int = "paper", settings: dict | None = None, target=None,
                         splits: Sequence[str] | None = None, scored=None, runs_hash: str | None = None,
                         cache: bool = True) -> Evidence:
    """Build an `Evidence` from arrays (synthetic data, or the arrays `build_evidence` reads).

    transformer (C, split, B, P, O) holds log-probs or predictions per condition;
    strategy_outputs (R, S, split, B, P, O) the strategies' outputs per run on the same inputs
    (S = len(strategies); the first is M, the second G). Everything else is keyword-only.

    - The conditions: ``diversity`` and ``step`` (C,), ``seed`` (C,; default 0); the run of a
      condition is the index of its (diversity, seed) pair in order of first appearance
      (``run`` (C,) sets it explicitly); ``configuration`` labels them all (default: the
      family name, as `bayesicl.inference.population_data.configurations` names a lone
      configuration).
    - The terms: ``loss``/``complexity`` are DataFrames (index diversity, one column per
      strategy) or {strategy: {diversity: value}}; when None they are computed from
      ``pools`` ({diversity: pool} or {(diversity, seed): pool}, averaged over seeds) on
      ``loss_sequences`` sequences, together with the paired ΔL̄ and its standard error;
      ``loss_difference`` and ``loss_difference_se`` (same layout as ``loss``) may also be
      given. K from pools follows ``complexity_convention`` ("bayesicl" or "paper"; given K
      is labelled with it).
    - The outputs: ``splits`` names the split axis (default: the task's splits, "id" and
      "ood" first); ``scored`` (P,) the scored positions (default: the family's);
      ``target`` (R, split, B, P, O) regression's targets. Classification's outputs have
      P = 1 (the query); regression's O = 1.
    - ``cutoff``: "paper" (docs/model.md#cutoff), "all" (every step is modeled) or a step;
      ``settings``, ``runs_hash``: recorded as given; ``cache``: cache the computed terms.

    >>> import bayesicl as bic, numpy as np
    >>> task = bic.task("regression", num_dims=2, context_length=3)
    >>> rng = np.random.default_rng(0)
    >>> m, g = rng.standard_normal((2, 1, 2, 4, 3, 1))            # (R, split, B, P, O)
    >>> s = np.stack([m, g], axis=1)                                # (R, S, split, B, P, O)
    >>> t = np.stack([0.9 * m + 0.1 * g, 0.2 * m + 0.8 * g])[:, 0]  # two checkpoints of run 0
    >>> ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4, 4],
    ...     step=[10, 20], loss={"memorizing": {4: 1.0}, "generalizing": {4: 1.2}},
    ...     complexity={"memorizing": {4: 900.0}, "generalizing": {4: 300.0}}, cutoff="all")
    >>> ev.sel(split="id")["observed_weight"].round(2).values.tolist()
    [0.9, 0.2]
    >>> float(ev.sel(diversity=4, step=20, split="id")["observed_weight"].round(2).item())
    0.2
    """
    task = make_task(task) if isinstance(task, str) else task
    strategies = tuple(str(s) for s in strategies)
    output_kind = family_spec(task).output_kind
    transformer = np.asarray(transformer)
    strategy_outputs = np.asarray(strategy_outputs)
    if len(strategies) < 2 or len(set(strategies)) != len(strategies):
        raise BayesiclError(f"strategies must name at least two distinct kinds, got {strategies}")
    if transformer.ndim != 5:
        raise BayesiclError(f"transformer outputs have shape {transformer.shape}, expected "
                            "(condition, split, sequence, position, output)")
    num_conditions = transformer.shape[0]
    if strategy_outputs.ndim != 6 or strategy_outputs.shape[1] != len(strategies) \
            or strategy_outputs.shape[2:] != transformer.shape[1:]:
        raise BayesiclError(f"strategy outputs have shape {strategy_outputs.shape}, expected "
                            f"(run, {len(strategies)}, {', '.join(map(str, transformer.shape[1:]))})")
    # Log-probs may hold −inf (a float16 underflow; floored later), never NaN.
    finite = np.isfinite(transformer) if output_kind == "predictions" else ~np.isnan(transformer)
    if not finite.all():
        raise BayesiclError("transformer outputs contain NaN (or infinite predictions)")
    if np.any(np.isnan(strategy_outputs)):
        raise BayesiclError("strategy outputs contain NaN")
    check_cutoff(cutoff)
    paper_compatible(complexity_convention)                  # refuses an unknown convention
    splits = _split_names(task, splits, transformer.shape[1])
    scored = _scored_mask(task, scored, transformer.shape[3])

    table = _condition_index(diversity, step, seed, run, num_conditions)
    num_runs = int(table["run"].max()) + 1
    if strategy_outputs.shape[0] != num_runs:
        raise BayesiclError(f"strategy outputs cover {strategy_outputs.shape[0]} runs but the "
                            f"conditions name {num_runs} (diversity, seed) runs")
    if target is not None:
        target = np.asarray(target, dtype=np.float32)
        expected = (strategy_outputs.shape[0], *strategy_outputs.shape[2:])
        if target.shape != expected:
            raise BayesiclError(f"target has shape {target.shape}, expected {expected}")
    if loss is None or complexity is None:
        if pools is None:
            raise BayesiclError("give loss and complexity (index diversity, one column per "
                                "strategy) or the pools to compute them from")
        computed = terms_table(task, strategies, pools, num_sequences=loss_sequences, cache=cache,
                               complexity_convention=complexity_convention)
        if loss is None and loss_difference is None:
            loss_difference, loss_difference_se = computed.loss_difference, computed.loss_difference_se
        loss = computed.loss if loss is None else loss
        complexity = computed.complexity if complexity is None else complexity
    source = ArraySource(transformer.astype(np.float32, copy=False),
                         strategy_outputs.astype(np.float32, copy=False), table["run"].to_numpy(), splits, target)
    return assemble(task, strategies, source, table, scored, loss=loss, complexity=complexity,
                    loss_difference=loss_difference, loss_difference_se=loss_difference_se, cutoff=cutoff,
                    settings=settings, runs_hash=runs_hash, complexity_convention=complexity_convention,
                    configuration=configuration)


def assemble(task: Task, strategies: tuple[str, ...], source, table: pd.DataFrame, scored: np.ndarray, *,
             loss, complexity, loss_difference=None, loss_difference_se=None, cutoff="paper",
             settings: dict | None = None, runs_hash: str | None = None,
             complexity_convention: str = "bayesicl", configuration: str | None = None,
             progress=None) -> Evidence:
    """The `Evidence` of the conditions `table` (condition, run, diversity, seed, step) whose
    outputs `source` yields: one streamed pass (`bayesicl.evidence.statistics.collect`),
    the terms per diversity checked, the cutoff applied, the conditions labelled with
    `configuration` (default: the family name)."""
    output_kind = family_spec(task).output_kind
    observations, variables = collect(source, strategies, output_kind, scored, len(table), progress=progress,
                                      metrics=family_spec(task).metrics or DEFAULT_METRICS)
    table = table.copy()
    diversities = np.sort(table["diversity"].unique())
    loss = _per_diversity(loss, "loss", strategies, diversities)
    complexity = _per_diversity(complexity, "complexity", strategies, diversities)
    if (loss_difference is None) != (loss_difference_se is None):
        raise BayesiclError("give loss_difference together with its standard error loss_difference_se")
    if loss_difference is not None:
        loss_difference = _per_diversity(loss_difference, "loss_difference", strategies, diversities)
        loss_difference_se = _per_diversity(loss_difference_se, "loss_difference_se", strategies, diversities)

    label = task.family if configuration is None else configuration
    if cutoff == "paper":
        distance = evidence_dataset(table, {"interpolation_distance": observations["interpolation_distance"]},
                                    strategies, label)["interpolation_distance"]
        first_modeled = observe.cutoff_step(distance, family_spec(task).cutoff_quantile)
    elif cutoff == "all":
        first_modeled = int(table["step"].min())
    else:
        first_modeled = int(cutoff)
    table["modeled"] = table["step"] >= first_modeled

    statistics = statistics_dataset(variables, table, source.splits, strategies, scored)
    dataset = evidence_dataset(table, observations, strategies, label)
    return Evidence(task=task, settings=dict(task.settings if settings is None else settings),
                    strategies=strategies, output_kind=output_kind, dataset=dataset,
                    loss=loss, complexity=complexity, statistics=statistics,
                    cutoff_step=first_modeled, runs_hash=runs_hash, loss_difference=loss_difference,
                    loss_difference_se=loss_difference_se, complexity_convention=complexity_convention,
                    source=source)


def check_cutoff(cutoff) -> None:
    """Refuse a cutoff other than "paper", "all" or an integer step."""
    if not (cutoff in ("paper", "all") or isinstance(cutoff, (int, np.integer))
            and not isinstance(cutoff, bool)):
        raise BayesiclError(f"cutoff must be 'paper', 'all' or a step, got {cutoff!r}")


def observe_conditions(transformer: np.ndarray, strategy_outputs: np.ndarray, run: np.ndarray,
                       splits: Sequence[str], strategies: Sequence[str], output_kind: str,
                       scored: np.ndarray) -> dict[str, np.ndarray]:
    """Per condition and split (id, ood): {name: (C, 2)} for each of d_TM, d_TG, d_MG, r,
    observed_weight, interpolation_distance (and convex_weight (C, 2, S) with more than two
    strategies), as in `Evidence.dataset`.

    transformer (C, split, B, P, O), strategy_outputs (R, S, split, B, P, O), run (C,).
    Computed in float64, run by run (each run's strategies are prepared once) over chunks of
    its conditions (`bayesicl.evidence.statistics.RunObserver`).

    >>> rng = np.random.default_rng(0)
    >>> s = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 2, 4, 2)))     # (R, S, split, B, P, O)
    >>> t = np.log(0.3 * np.exp(s[:, 0]) + 0.7 * np.exp(s[:, 1]))
    >>> observe_conditions(t, s, np.array([0]), ("id", "ood"), ("memorizing", "generalizing"),
    ...                    "log_probs", np.ones(2, bool))["interpolation_distance"].round(9).tolist()
    [[0.0, 0.0]]
    """
    run = np.asarray(run)
    columns: dict[str, np.ndarray] = {}
    for r in range(strategy_outputs.shape[0]):
        rows = np.flatnonzero(run == r)
        if rows.size == 0:
            continue
        observer = RunObserver(strategy_outputs[r], splits, strategies, output_kind, scored, chebyshev_nodes(2))
        found, _ = observer.observe(transformer[rows], tables=False)
        for name, value in found.items():
            if name not in columns:
                columns[name] = np.full((len(run),) + value.shape[1:], np.nan)
            columns[name][rows] = value
    return columns


# -- internals ------------------------------------------------------------------------------------

def _split_names(task: Task, splits, size: int) -> tuple[str, ...]:
    names = tuple(splits) if splits is not None else tuple(getattr(task, "splits", DISTANCE_SPLITS))[:size]
    if len(names) != size or len(set(names)) != size:
        raise BayesiclError(f"the split axis has length {size} but the split names are {names}")
    missing = [s for s in DISTANCE_SPLITS if s not in names]
    if missing:
        raise BayesiclError(f"outputs lack the split(s) {missing} (splits: {names})")
    return names


def _scored_mask(task: Task, scored, num_positions: int) -> np.ndarray:
    if scored is None:
        scored = np.ones(num_positions, dtype=bool)
        scored[:family_spec(task).first_scored_row] = False     # markov: row 0 (docs/model.md#markov-chains)
    scored = np.asarray(scored, dtype=bool)
    if scored.shape != (num_positions,) or not scored.any():
        raise BayesiclError(f"scored mask must be a ({num_positions},) bool array selecting a position")
    return scored


def _condition_index(diversity, step, seed, run, num_conditions: int) -> pd.DataFrame:
    def column(values, name, default=None):
        if values is None:
            values = np.full(num_conditions, default)
        values = np.asarray(values)
        if values.shape != (num_conditions,):
            raise BayesiclError(f"{name} has shape {values.shape}, expected ({num_conditions},)")
        if not np.issubdtype(values.dtype, np.integer):
            if not np.all(np.isfinite(values.astype(float))) or np.any(values != np.round(values)):
                raise BayesiclError(f"{name} must hold integers")
        return values.astype(np.int64)

    diversity = column(diversity, "diversity")
    step = column(step, "step")
    seed = column(seed, "seed", 0)
    if np.any(diversity < 1) or np.any(step < 0):
        raise BayesiclError("diversity must be ≥ 1 and step ≥ 0 for every condition")
    if run is None:
        pairs = list(zip(diversity.tolist(), seed.tolist()))
        order = {pair: i for i, pair in enumerate(dict.fromkeys(pairs))}
        run = np.array([order[p] for p in pairs], dtype=np.int64)
    else:
        run = column(run, "run")
        if np.any(run < 0) or set(run.tolist()) != set(range(int(run.max()) + 1)):
            raise BayesiclError("run must number the runs 0..R-1")
    frame = pd.DataFrame({"condition": np.arange(num_conditions), "run": run,
                          "diversity": diversity, "seed": seed, "step": step})
    if frame.duplicated(["run", "step"]).any():
        raise BayesiclError("two conditions share the same run and step")
    if frame.groupby("run")["diversity"].nunique().max() > 1:
        raise BayesiclError("one run index is given more than one diversity")
    return frame


def _per_diversity(values, what: str, strategies: tuple[str, ...], diversities) -> pd.DataFrame:
    if isinstance(values, pd.DataFrame):
        frame = values.copy()
    elif isinstance(values, Mapping):
        frame = pd.DataFrame({k: pd.Series(v) for k, v in values.items()})
    else:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(diversities), len(strategies)):
            raise BayesiclError(f"{what} has shape {array.shape}, expected "
                                f"({len(diversities)} diversities, {len(strategies)} strategies)")
        frame = pd.DataFrame(array, index=diversities, columns=list(strategies))
    missing = [s for s in strategies if s not in frame.columns]
    if missing:
        raise BayesiclError(f"{what} lacks the strategy column(s) {missing}")
    frame.index = frame.index.astype(np.int64)
    absent = sorted(set(diversities.tolist()) - set(frame.index.tolist()))
    if absent:
        raise BayesiclError(f"{what} lacks the diversity value(s) {absent}")
    frame = frame.loc[diversities, list(strategies)].astype(np.float64)
    frame.index.name = "diversity"
    frame.columns.name = "strategy"
    if not np.all(np.isfinite(frame.to_numpy())):
        raise BayesiclError(f"{what} contains NaN or infinite values")
    return frame


def outputs_dataset(evidence: Evidence) -> xr.Dataset:
    """All of the evidence's token-level outputs as one labelled Dataset (`Evidence.arrays`)."""
    source, table = evidence.source, evidence.conditions
    transformer, strategy, target = None, [], []
    for r in range(source.num_runs):
        strategy.append(np.asarray(source.strategy(r), dtype=np.float32))
        if source.target(r) is not None:
            target.append(np.asarray(source.target(r), dtype=np.float32))
        for rows, block in source.blocks(r):
            if transformer is None:
                transformer = np.empty((len(table),) + block.shape[1:], dtype=np.float32)
            transformer[rows] = block
    dims = ("split", "sequence", "position", "output")
    data = {
        "transformer": (("condition", *dims), transformer),
        # xarray forbids a variable named like one of its dimensions unless it is that
        # dimension's 1-D coordinate, so the strategy axis is called "strategy_kind".
        "strategy": (("run", "strategy_kind", *dims), np.stack(strategy)),
        "scored": (("position",), evidence.scored),
    }
    if target:
        data["target"] = (("run", *dims), np.stack(target))
    runs = table.drop_duplicates("run").sort_values("run")
    coords: dict[str, Any] = {
        "run": np.arange(source.num_runs),
        "split": evidence.splits,
        "strategy_kind": list(evidence.strategies),
        "position": np.arange(transformer.shape[3]),
        "run_diversity": ("run", runs["diversity"].to_numpy()),
        "run_seed": ("run", runs["seed"].to_numpy()),
    }
    # The conditions carry the index of `Evidence.dataset`: arrays.sel(diversity=64, step=5000).
    condition = xr.Coordinates.from_pandas_multiindex(evidence.dataset.indexes["condition"], "condition")
    return xr.Dataset(data, coords=condition).assign_coords(coords)
