"""Fitting the rational strategy model (SPEC §8): MAP (the paper's objective) and NUTS.

The data flow: `bayesicl.evidence.Evidence` → `split` (which conditions the fit sees) →
`data` (arrays per condition; the paper's objective tabulated once, `objective`; the
relative-distance curves of the likelihood, `observation`) → `model` (ONE NumPyro model,
run two ways: `map` and `nuts`) → `predict` → `result` (FitResult, save/load) and `guards`.
`compare_variants` ranks the ablations; `command` is the `bayesicl fit` verb.

>>> from bayesicl.fit import fit, load_fit, FitResult, compare_variants
"""

from __future__ import annotations

from .compare import compare_variants
from .pipeline import fit
from .result import FitResult, load_fit

__all__ = ["FitResult", "compare_variants", "fit", "load_fit"]
