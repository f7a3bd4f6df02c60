"""The phase diagram of a configuration nobody trained (docs/model.md#population-model).

L̄_s(D) and K_s(D) need no training: they are computed from the new configuration's task
(`bayesicl.evidence.terms.strategy_terms` on ``task.pool(D, seed)``, the fit's pool seed and
loss-sequence count). Architecture settings (mlp_width, width, num_layers, …) change only
the covariates x; task settings (context_length, num_dims, …) change the task too. Its θ is
drawn from the population model, one per posterior draw: μ + B x + diag(τ) L z with a fresh
z ~ N(0, I) (pool "partial"); the shared θ (pool "full"); or, with pool "none", which has no
population, the draws of the nearest fitted configuration (standardized covariates), and
the prediction says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_json, write_text
from ..errors import BayesiclError, BayesiclWarning
from ..evidence.terms import strategy_terms
from ..seeds import stream
from ..tasks import from_settings
from .population_model import new_theta, theta_params
from .predict import HIGH, LOW, transition_table, weights_for

#: A covariate more than this factor below the smallest or above the largest trained value
#: is refused; inside the factor, outside the trained range, predict warns that it extrapolates.
EXTRAPOLATION_FACTOR = 2.0


@dataclasses.dataclass(eq=False)
class Prediction:
    """A predicted configuration: ``settings`` (every setting of the new configuration),
    ``covariates`` (its raw covariate values), ``source`` (where θ came from), ``warnings``,
    ``conditions`` (diversity, step, predicted_weight, weight_low, weight_high,
    predicted_<strategy>) and ``transitions`` (diversity, transition_step (per-draw
    median), low, high, direction, transition_at_mean)."""

    settings: dict
    covariates: dict
    source: str
    warnings: list
    conditions: pd.DataFrame
    transitions: pd.DataFrame

    def save(self, directory) -> list[Path]:
        """Write predicted_conditions.csv, predicted_transitions.csv and prediction.json into
        `directory` (created); returns the paths."""

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "predicted_conditions.csv", folder / "predicted_transitions.csv", folder / "prediction.json"]
        write_text(paths[0], self.conditions.to_csv(index=False))
        write_text(paths[1], self.transitions.to_csv(index=False))
        transitions = [{k: (None if isinstance(v, float) and math.isnan(v) else
                            "inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in row.items()}
                       for row in json.loads(self.transitions.to_json(orient="records", double_precision=15))]
        write_json(paths[2], {"settings": self.settings, "covariates": self.covariates, "source": self.source,
                              "warnings": self.warnings, "interval_level": 0.9, "transition_steps": transitions})
        return paths


def resolve_settings(state: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[dict, dict, list[str], int]:
    """(settings, task settings, warnings, index of the nearest fitted configuration) of the
    configuration `config` describes: the nearest fitted configuration's settings (over the
    settings `config` gives) updated with `config`. Refuses unknown names, changes of a
    setting that did not vary among the fitted configurations, and covariates more than
    `EXTRAPOLATION_FACTOR` outside the trained range."""
    configs = state["configurations"]
    known = sorted(set().union(*(c["settings"] for c in configs)) - {"task"})
    unknown = [k for k in config if k not in known]
    if unknown:
        raise BayesiclError(f"unknown setting(s) {unknown}; the fitted configurations have {known}")
    varying = [k for k in known if len({json.dumps(c["settings"].get(k), sort_keys=True, default=str)
                                        for c in configs}) > 1]
    for key, value in config.items():
        if key not in varying and value != configs[0]["settings"].get(key):
            raise BayesiclError(f"setting {key}={value!r}: it is {configs[0]['settings'].get(key)!r} in every "
                                f"fitted configuration, so the population model knows nothing of its effect "
                                f"(varying settings: {varying})")
    spec = state["covariates"]
    messages = []
    if spec is not None:
        for name, low, high in zip(spec.names, spec.low, spec.high):
            if name not in config:
                continue
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise BayesiclError(f"setting {name}={value!r}: a covariate must be a positive number")
            if value < low / EXTRAPOLATION_FACTOR or value > high * EXTRAPOLATION_FACTOR:
                raise BayesiclError(f"setting {name}={value:g} is more than a factor {EXTRAPOLATION_FACTOR:g} outside "
                                    f"the trained range [{low:g}, {high:g}]; the population model cannot "
                                    "extrapolate that far")
            if value < low or value > high:
                messages.append(f"{name}={value:g} is outside the trained range [{low:g}, {high:g}]: the "
                                "prediction extrapolates the covariate trend")
    nearest = _nearest(state, config, varying)
    settings = dict(configs[nearest]["settings"])
    settings.update(config)
    task_settings = dict(configs[nearest]["task_settings"])
    for key, value in config.items():
        if key in task_settings:
            task_settings[key] = value
    return settings, task_settings, messages, nearest


def _nearest(state, config: Mapping[str, Any], varying) -> int:
    """The fitted configuration closest to `config`: standardized covariates where both
    have them, exact match on other given settings, ties to the first."""
    spec = state["covariates"]
    best, best_distance = 0, math.inf
    for j, c in enumerate(state["configurations"]):
        distance = 0.0
        for key, value in config.items():
            if key not in varying:
                continue
            if spec is not None and key in spec.names:
                i = spec.names.index(key)
                distance += ((math.log(float(value)) - math.log(float(c["settings"][key]))) / spec.scale[i]) ** 2
            elif c["settings"].get(key) != value:
                distance += 1e6
        if distance < best_distance:
            best, best_distance = j, distance
    return best


def theta_draws(result, settings: Mapping[str, Any], nearest: int, seed: int) -> tuple[dict, str]:
    """(α, β, γ) draws of the new configuration and where they come from."""
    state = result.state
    if result.pool == "partial":
        x = state["covariates"].transform(settings)
        theta = new_theta(state["population_draws"], x, stream((seed, 9), "fit"))
        return theta_params(theta, state["reference_step"]), "population draw: mu + B x + diag(tau) L z, z ~ N(0, I)"
    name = state["configurations"][nearest]["name"]
    draws = state["config_draws"][name]
    if result.pool == "full":
        return draws, "the shared (alpha, beta, gamma) of full pooling"
    return draws, f"pool 'none' has no population: the nearest fitted configuration {name}"


def predict_configuration(result, diversity, step, config: Mapping[str, Any], seed: int = 0) -> Prediction:
    """The predicted phase diagram (every diversity × step) and N*(D) of the configuration
    `config` ({setting: value}, e.g. {"mlp_width": 512}; settings not given are those of the
    nearest fitted configuration), with 90% intervals over the posterior; see the module
    docstring. A covariate more than a factor `EXTRAPOLATION_FACTOR` (= 2) below the smallest
    or above the largest trained value is refused in one line; inside that factor but
    outside the trained range, a `BayesiclWarning` says the prediction extrapolates.
    Unknown setting names are refused.

    Example: ``fit_population("runs/").predict(diversity=[16, 64], step=[1000, 4000],
    config={"mlp_width": 256}).transitions``.
    """

    if not isinstance(config, Mapping) or not config:
        raise BayesiclError("predict: give the new configuration as {setting: value}, e.g. {'mlp_width': 512}")
    diversities = np.unique(np.atleast_1d(np.asarray(diversity, dtype=np.int64)))
    steps = np.unique(np.atleast_1d(np.asarray(step, dtype=np.float64)))
    if diversities.size == 0 or steps.size == 0 or np.any(diversities < 1) or np.any(steps < 0) \
            or not np.all(np.isfinite(steps)):
        raise BayesiclError("predict: diversity must be integers ≥ 1 and step finite numbers ≥ 0")
    settings, task_settings, messages, nearest = resolve_settings(result.state, config)
    for message in messages:
        warnings.warn(message, BayesiclWarning, stacklevel=3)
    draws, source = theta_draws(result, settings, nearest, seed)
    state = result.state
    if result.pool == "none":
        messages = messages + [source]
    try:
        task = from_settings(task_settings)
    except (BayesiclError, TypeError, ValueError) as error:
        raise BayesiclError(f"predict: settings {task_settings} do not make a task: {error}") from None
    seed_pool = int(state["pool_seed"])
    pools = {(int(d), seed_pool): task.pool(int(d), seed=seed_pool) for d in diversities}
    loss, complexity = strategy_terms(task, tuple(state["strategies"]), pools,
                                      num_sequences=state.get("loss_sequences"), zipf=state.get("zipf"))
    loss, complexity = loss.loc[diversities], complexity.loc[diversities]
    grid_d, grid_n = (a.ravel() for a in np.meshgrid(diversities, steps, indexing="ij"))
    weights = weights_for(draws, loss.loc[grid_d].to_numpy(), complexity.loc[grid_d].to_numpy(), grid_n)
    table = pd.DataFrame({"diversity": grid_d, "step": grid_n, "predicted_weight": weights[:, :, 0].mean(axis=0)})
    table["weight_low"], table["weight_high"] = np.quantile(weights[:, :, 0], [LOW, HIGH], axis=0)
    for s, name in enumerate(state["strategies"]):
        table[f"predicted_{name}"] = weights[:, :, s].mean(axis=0)
    mean = {k: float(np.mean(v)) for k, v in draws.items()}
    transitions = transition_table(mean, loss, complexity, draws).rename(
        columns={"transition_low": "low", "transition_high": "high"})
    covariates = {n: float(settings[n]) for n in (state["covariates"].names if state["covariates"] else ())}
    return Prediction(settings=settings, covariates=covariates, source=source, warnings=messages,
                      conditions=table, transitions=transitions)
