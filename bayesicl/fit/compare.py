"""Ablations of the strategy model compared on held-out conditions and by LOO (SPEC §8).

Each variant (full; α = 0; β = 1; γ = 1; complexity constant in D) is fitted to the same
evidence with the same split and seed. The table reports the held-out correlation (ID, OOD)
and the family's held-out metrics, the exact paper objective at the MAP, and, for NUTS, the
PSIS-LOO and WAIC expected log predictive densities of the fit conditions' observations
(all variants share them, so the numbers are comparable). Rank 1 is the best: by elpd_loo
for NUTS, by the MAP objective for MAP.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import BayesiclError

DEFAULT_VARIANTS = ("full", "alpha0", "beta1", "gamma1", "constant_complexity")


def compare_variants(evidence, variants: Sequence[str] = DEFAULT_VARIANTS, method: str = "nuts",
                     **fit_options) -> pd.DataFrame:
    """Fit every variant and rank them (see the module docstring).

    `fit_options` go to `bayesicl.fit.fit` (holdout, seed, num_samples, ...). Returns one row
    per variant: variant, rank, objective, alpha, beta, gamma (the point estimates),
    heldout_correlation_id/ood, heldout_<metric>_id/ood,
    and for NUTS elpd_loo, se_loo, p_loo, elpd_diff (to the best), elpd_waic, max_pareto_k.

    Example: ``compare_variants(evidence, method="map")[["variant", "rank", "objective"]]``.
    """
    import arviz as az

    from .pipeline import fit

    if not variants:
        raise BayesiclError("compare_variants: give at least one variant")
    rows = []
    for variant in variants:
        result = fit(evidence, method=method, variant=variant, **fit_options)
        summary = result.summary()
        row = {"variant": variant, "objective": summary["objective"]["map_exact"], **result.params}
        for split in ("id", "ood"):
            leaf = summary["metrics"]["heldout"][split]
            for name, value in leaf.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "n_conditions":
                    row[f"heldout_{name}_{split}"] = value
            row.setdefault(f"heldout_correlation_{split}", leaf.get("correlation"))
        if result.idata is not None:
            with warnings.catch_warnings():       # ArviZ warns on high Pareto k; it is reported
                warnings.simplefilter("ignore")
                loo = az.loo(result.idata, pointwise=True)
                waic = az.waic(result.idata)
            row.update({"elpd_loo": float(loo.elpd_loo), "se_loo": float(loo.se), "p_loo": float(loo.p_loo),
                        "elpd_waic": float(waic.elpd_waic),
                        "max_pareto_k": float(np.max(np.asarray(loo.pareto_k)))})
        rows.append(row)
    table = pd.DataFrame(rows)
    if method == "nuts":
        table["elpd_diff"] = table["elpd_loo"].max() - table["elpd_loo"]
        table["rank"] = table["elpd_loo"].rank(ascending=False, method="min").astype(int)
    else:
        table["rank"] = table["objective"].rank(ascending=True, method="min").astype(int)
    return table.sort_values("rank").reset_index(drop=True)
