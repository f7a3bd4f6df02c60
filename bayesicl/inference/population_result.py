"""The result of a fit over several configurations (`bayesicl.inference.population.fit_population`),
as it is saved to and read back from a fit folder (`bayesicl.inference.population_io`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .population_io import save_population
from .population_predict import predict_configuration


@dataclasses.dataclass(eq=False)
class PopulationResult:
    """A fit of several configurations of one family.

    ``configurations``: one row per configuration — configuration, its covariate settings,
    n_runs, alpha, alpha_low, alpha_high, beta…, gamma… (posterior means and 90% central
    intervals). ``population``: μ, B, τ (partial pooling; else None), each {parameter:
    {mean, low, high}} (B: {parameter: {covariate: …}}) in θ = (logit α, log β, log γ̃).
    ``conditions``: `bayesicl.inference.fit`'s condition table of every configuration plus
    ``configuration``. ``transitions``: configuration, diversity, transition_step (per-draw
    median), low, high, extrapolated, direction, transition_at_mean. ``idata``: ArviZ
    InferenceData whose posterior has alpha/beta/gamma with a ``configuration`` dim.
    ``report``: summary.json. ``fits``: the per-configuration `bayesicl.inference.FitResult` (empty
    after `load_fit`). ``state``: what `predict` needs (settings, covariates, draws).
    """

    pool: str
    configurations: pd.DataFrame
    population: dict | None
    conditions: pd.DataFrame
    transitions: pd.DataFrame
    idata: Any
    report: dict
    fits: dict[str, Any]
    state: dict

    @property
    def names(self) -> list[str]:
        """The configuration names, in fit order."""
        return self.configurations["configuration"].tolist()

    @property
    def guards(self) -> list[str]:
        return list(self.report.get("guards", []))

    def summary(self) -> dict:
        """The content of summary.json."""
        return json.loads(json.dumps(self.report))

    def predict(self, diversity, step, config: Mapping[str, Any], seed: int = 0):
        """The predicted phase diagram and N*(D) of a configuration nobody trained; see
        `bayesicl.inference.population_predict.predict_configuration` (refuses a covariate more than
        a factor `EXTRAPOLATION_FACTOR` = 2 outside the trained range)."""
        return predict_configuration(self, diversity, step, config, seed=seed)

    def save(self, directory: str | os.PathLike):
        """Write the fit folder atomically (`bayesicl.inference.population_io.save_population`)."""
        return save_population(self, directory)


__all__ = ["PopulationResult"]
