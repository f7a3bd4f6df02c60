"""Fitting the rational strategy model (docs/model.md#map, docs/model.md#nuts): MAP (the paper's objective) and NUTS.

The data flow: `bayesicl.evidence.Evidence` → `split` (which conditions the fit sees) →
`data` (arrays per condition; the paper's objective tabulated once, `objective`; the
relative-distance curves of the likelihood, `observation`) → `model` (the paper's objective
and the Bayesian model, two NumPyro models sharing one forward pass; `map`, `nuts`, and the
OOD stage `cut`) → `predict` → `result` (FitResult, save/load) and `guards`. `FitOptions`
(`options`) holds every choice of a fit. `compare_variants` ranks the ablations; the
`bayesicl fit` verb, which adds figures and the report, is `bayesicl.commands.fit`. Several
configurations: `fit_population` (partial, full or no pooling, docs/model.md#population-model),
`cross_validate` (leave one configuration out).

>>> from bayesicl.inference import fit, load_fit, FitResult, compare_variants
>>> import bayesicl as bic
>>> bic.fit is fit and bic.load_fit is load_fit
True
"""

from __future__ import annotations

from .compare import compare_variants
from .options import FitOptions
from .pipeline import fit
from .population import PopulationResult, configurations, fit_population
from .population_cv import cross_validate
from .result import FitResult, load_fit

__all__ = ["FitOptions", "FitResult", "PopulationResult", "compare_variants", "configurations", "cross_validate", "fit",
           "fit_population", "load_fit"]
