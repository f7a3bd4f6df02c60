"""Configurations of one task family and their data for the population model
(docs/model.md#population-model).

A configuration is a set of runs that differ only in diversity and seed: same task settings
(num_dims, context_length, …), same architecture and training recipe (mlp_width, width,
num_layers, …). `configurations` groups runs (or evidence) into configurations, names them by
the settings that vary between them, and `covariate_matrix` turns the varying numeric
settings into the standardized covariates x_j of the population model. `PopulationData`
stacks the per-configuration `FitData` into one `ModelData` for the joint likelihood.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..errors import BayesiclError
from ..evidence import Evidence
from ..runs import Run, open_runs
from .data import FitData
from .model import ModelData

#: Settings that never define a configuration (the family name is checked separately).
IGNORED_SETTINGS = ("task",)


@dataclasses.dataclass(eq=False)
class Configuration:
    """One configuration: ``name`` (the varying settings, e.g. "context_length=32,mlp_width=128";
    the family name when only one configuration is given), ``settings`` (every setting value,
    flattened: task settings and setting-defining config fields), ``covariates`` (the numeric
    settings that vary across the configurations given together, raw values), ``runs`` (the
    `bayesicl.runs.Run` objects; empty when built from evidence) and ``evidence`` (an
    `Evidence`, once built)."""

    name: str
    settings: dict[str, Any]
    covariates: dict[str, float]
    runs: list = dataclasses.field(default_factory=list)
    evidence: Any = None

    @property
    def task_settings(self) -> dict[str, Any]:
        """The task's settings (what `bayesicl.tasks.from_settings` takes)."""
        if self.evidence is not None:
            return dict(self.evidence.task.settings)
        return dict(self.runs[0].task.settings)


def flat_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """One flat dict of a run's or evidence's settings: the config fields, then the task
    settings (which win on a shared name), then the Zipf exponent; the family is kept as "task".

    >>> flat_settings({"task": {"task": "urns", "num_dims": 8}, "zipf": None,
    ...                "config": {"mlp_width": 128, "num_dims": 8, "task": "urns"}})
    {'mlp_width': 128, 'num_dims': 8, 'task': 'urns', 'zipf': None}
    """
    out: dict[str, Any] = {}
    config, task = settings.get("config"), settings.get("task")
    if isinstance(config, Mapping):
        out.update(config)
    if isinstance(task, Mapping):
        out.update(task)
    for key, value in settings.items():
        if key not in ("config", "task") or not isinstance(value, Mapping):
            out[key] = value
    return dict(sorted(out.items()))


def configurations(runs, covariates: Sequence[str] | None = None) -> list[Configuration]:
    """Group the runs of ONE task family into configurations (runs that differ only in
    diversity and seed), ordered by their settings.

    `runs` is a runs folder, a list of `bayesicl.runs.Run`, or a list of `Evidence` (one
    configuration each; their ``settings`` say which). Names list the settings that vary
    between the configurations ("context_length=32,mlp_width=128"). Runs of different
    families are refused in one line.

    >>> import bayesicl as bic
    >>> from bayesicl.inference.synthetic import synthetic_population
    >>> pop = synthetic_population(bic.task("urns", num_dims=4, context_length=8), {"mlp_width": [32, 64]},
    ...                            [4, 8], [100, 1000], num_sequences=4, loss_sequences=32)
    >>> [c.name for c in configurations(pop.evidence)]
    ['mlp_width=32', 'mlp_width=64']
    """

    if isinstance(runs, (str, os.PathLike)):
        where = str(runs)
        runs = open_runs(runs)
    else:
        where = "the runs given"
        runs = list(runs)
    if not runs:
        raise BayesiclError(f"{where}: no runs to group into configurations")
    if all(isinstance(r, Evidence) for r in runs):
        items = [(flat_settings(e.settings) | {"task": e.task.family}, e) for e in runs]
    elif all(isinstance(r, Run) for r in runs):
        items = [(flat_settings(r.settings) | {"task": r.task.family}, r) for r in runs]
    else:
        raise BayesiclError("configurations takes a runs folder, a list of bayesicl.runs.Run or a list of Evidence")
    families = sorted({s["task"] for s, _ in items})
    if len(families) > 1:
        raise BayesiclError(f"{where}: runs of several task families {families}; a population fit takes one "
                            "family at a time")
    groups: dict[str, tuple[dict, list]] = {}
    for settings, item in items:
        key = json.dumps(settings, sort_keys=True, default=str)
        groups.setdefault(key, (settings, []))[1].append(item)
    if any(isinstance(i, Evidence) for _, (_, members) in groups.items() for i in members) \
            and any(len(members) > 1 for _, (_, members) in groups.items()):
        raise BayesiclError("two evidence objects have the same settings; give one Evidence per configuration")
    ordered = sorted(groups.values(), key=lambda g: _sort_key(g[0]))
    varying = varying_settings([g[0] for g in ordered])
    numeric = [k for k in varying if all(_positive_number(g[0].get(k)) for g in ordered)]
    out = []
    for settings, members in ordered:
        name = ",".join(f"{k}={_text(settings.get(k))}" for k in varying) or families[0]
        evidence = members[0] if isinstance(members[0], Evidence) else None
        out.append(Configuration(name=name, settings=settings,
                                 covariates={k: float(settings[k]) for k in numeric},
                                 runs=[] if evidence is not None else members, evidence=evidence))
    if covariates is not None:
        covariate_matrix(out, covariates)          # refuses unknown or constant covariates early
    return out


def varying_settings(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names whose values differ between the settings dicts (sorted).

    >>> varying_settings([{"a": 1, "b": 2}, {"a": 1, "b": 3}])
    ['b']
    """
    keys = sorted(set().union(*settings)) if settings else []
    return [k for k in keys if k not in IGNORED_SETTINGS
            and len({json.dumps(s.get(k), sort_keys=True, default=str) for s in settings}) > 1]


@dataclasses.dataclass(frozen=True)
class Covariates:
    """The population model's covariates: x_j = (log s_j − center) / scale per name (the
    mean and sd of log s over the fitted configurations), and the trained range of s."""

    names: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def transform(self, values: Mapping[str, float]) -> np.ndarray:
        """x for one configuration's raw setting values (P,)."""
        return np.array([(math.log(float(values[n])) - c) / s
                         for n, c, s in zip(self.names, self.center, self.scale)], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "transform": "standardized log", "center": list(self.center),
                "scale": list(self.scale), "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Covariates":
        return cls(tuple(data["names"]), *(tuple(float(v) for v in data[k]) for k in ("center", "scale", "low", "high")))


def covariate_matrix(configs: Sequence[Configuration], names: Sequence[str] | None = None
                     ) -> tuple[Covariates, np.ndarray]:
    """(Covariates, X (J, P)): by default the log of every numeric setting that varies across
    `configs`; `names` chooses them. A named setting must be a positive number in every
    configuration and must vary."""
    available = sorted(set().union(*(c.covariates for c in configs))) if configs else []
    chosen = list(available if names is None else names)
    for name in chosen:
        if name not in available:
            known = sorted(set().union(*(c.settings for c in configs)) - set(IGNORED_SETTINGS))
            if name in known:
                raise BayesiclError(f"covariate {name!r} does not vary as a positive number across the "
                                    f"configurations; varying numeric settings: {available}")
            raise BayesiclError(f"unknown covariate {name!r}; varying numeric settings: {available}")
    logs = np.array([[math.log(c.covariates[n]) for n in chosen] for c in configs],
                    dtype=np.float64).reshape(len(configs), len(chosen))
    center = logs.mean(axis=0)
    scale = logs.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    raw = np.exp(logs)
    covariates = Covariates(tuple(chosen), tuple(center.tolist()), tuple(scale.tolist()),
                            tuple(raw.min(axis=0).tolist()), tuple(raw.max(axis=0).tolist()))
    return covariates, (logs - center) / scale


@dataclasses.dataclass(frozen=True, eq=False)
class PopulationData:
    """The likelihood rows of every configuration stacked into one `ModelData`:
    ``model`` (runs renumbered across configurations, ρ tables concatenated, γ's reference
    step N_ref shared), ``config`` (C,) the configuration of each row, ``runs`` the
    fitted-run columns of each configuration in the stacked run effects (J lists of
    (start, stop)), and ``reference_step``."""

    model: ModelData
    config: np.ndarray
    run_columns: list[tuple[int, int]]
    reference_step: float


def stack(datas: Sequence[FitData]) -> PopulationData:
    """Stack the fit conditions of several configurations (each a `FitData`) for one joint
    likelihood. N_ref is the geometric mean of the steps of all fit conditions."""
    steps = np.concatenate([d.step[d.fit_rows] for d in datas])
    reference = float(np.exp(np.mean(np.log(np.maximum(steps, 1.0))))) if steps.size else 1.0
    parts = [d.model_data(d.likelihood_rows) for d in datas]
    nodes = np.asarray(parts[0].curve_nodes)
    if any(not np.array_equal(np.asarray(p.curve_nodes), nodes) for p in parts):
        raise BayesiclError("configurations tabulate their relative-distance curves on different nodes")
    width = max(int(p.run_rows.shape[1]) for p in parts)
    run_offset = curve_offset = row_offset = 0
    fields: dict[str, list] = {k: [] for k in ("loss", "complexity", "step", "run", "observed", "curve_values",
                                               "curve_slopes", "effect_run", "run_rows", "run_mask",
                                               "run_position")}
    config, columns = [], []
    for j, (d, p) in enumerate(zip(datas, parts)):
        rows = int(p.step.shape[0])
        runs = int(p.run_rows.shape[0])
        pad = ((0, 0), (0, width - int(p.run_rows.shape[1])))
        fields["loss"].append(np.asarray(p.loss))
        fields["complexity"].append(np.asarray(p.complexity))
        fields["step"].append(np.asarray(p.step))
        fields["run"].append(np.asarray(p.run) + curve_offset)
        fields["observed"].append(np.asarray(p.observed))
        fields["curve_values"].append(np.asarray(p.curve_values))
        fields["curve_slopes"].append(np.asarray(p.curve_slopes))
        fields["effect_run"].append(np.asarray(p.effect_run) + run_offset)
        fields["run_rows"].append(np.pad(np.asarray(p.run_rows) + row_offset, pad))
        fields["run_mask"].append(np.pad(np.asarray(p.run_mask), pad))
        fields["run_position"].append(np.pad(np.asarray(p.run_position), pad))
        config.append(np.full(rows, j))
        columns.append((run_offset, run_offset + runs))
        run_offset += runs
        row_offset += rows
        curve_offset += int(np.asarray(p.curve_values).shape[0])
    arrays = {k: jnp.asarray(np.concatenate(v)) for k, v in fields.items()}
    model = ModelData(loss=arrays["loss"], complexity=arrays["complexity"],
                      step=arrays["step"].astype(jnp.float64), run=arrays["run"], observed=arrays["observed"],
                      curve_nodes=jnp.asarray(nodes), curve_values=arrays["curve_values"],
                      curve_slopes=arrays["curve_slopes"], effect_run=arrays["effect_run"],
                      run_rows=arrays["run_rows"], run_mask=arrays["run_mask"],
                      run_position=arrays["run_position"], reference_step=jnp.asarray(reference))
    return PopulationData(model=model, config=np.concatenate(config), run_columns=columns,
                          reference_step=reference)


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True)


def _sort_key(settings: Mapping[str, Any]):
    return tuple((k, (0, float(v), "") if _positive_number(v) else (1, 0.0, json.dumps(v, default=str)))
                 for k, v in sorted(settings.items()))
