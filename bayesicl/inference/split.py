"""Which conditions the fit sees (docs/model.md#split): the extrapolation split.

Fit on the modeled conditions whose step N is among the first ⌈(1 − h)·n_N⌉ modeled
checkpoints AND whose diversity D is among the ⌈(1 − h)·n_D⌉ smallest diversities, with
h = `holdout` (0.2 by default: 9 of 11 diversities); every other modeled condition is held
out, so the held-out metrics measure extrapolation to larger D and later N. Checkpoints are
the distinct modeled steps over all runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import BayesiclError


def check_holdout(holdout: float) -> float:
    """The held-out fraction as a float in [0, 1).

    >>> check_holdout(0.2)
    0.2
    """
    try:
        value = float(holdout)
    except (TypeError, ValueError):
        raise BayesiclError(f"holdout must be a number in [0, 1), got {holdout!r}") from None
    if not (0.0 <= value < 1.0):
        raise BayesiclError(f"holdout must be in [0, 1), got {holdout!r}")
    return value


def fit_split(conditions: pd.DataFrame, holdout: float = 0.2) -> np.ndarray:
    """in_fit (C,) bool for the rows of an evidence condition table.

    Needs the columns diversity, step and modeled.

    >>> table = pd.DataFrame({"diversity": [4, 4, 64, 64], "step": [10, 20, 10, 20],
    ...                       "modeled": [True] * 4})
    >>> fit_split(table, holdout=0.5).tolist()
    [True, False, False, False]
    """
    holdout = check_holdout(holdout)
    missing = {"diversity", "step", "modeled"} - set(conditions.columns)
    if missing:
        raise BayesiclError(f"condition table lacks column(s) {sorted(missing)}")
    modeled = conditions["modeled"].to_numpy(dtype=bool)
    if not modeled.any():
        raise BayesiclError("no modeled conditions: every checkpoint is before the cutoff step")
    steps = np.unique(conditions.loc[modeled, "step"].to_numpy())
    diversities = np.unique(conditions.loc[modeled, "diversity"].to_numpy())
    fit_steps = steps[:math.ceil((1.0 - holdout) * len(steps))]
    fit_diversities = diversities[:math.ceil((1.0 - holdout) * len(diversities))]
    return (modeled & conditions["step"].isin(fit_steps).to_numpy()
            & conditions["diversity"].isin(fit_diversities).to_numpy())


def describe_split(conditions: pd.DataFrame, in_fit: np.ndarray, holdout: float) -> dict:
    """The split as JSON: holdout fraction, fitted diversities and steps, counts.

    >>> table = pd.DataFrame({"diversity": [4, 64], "step": [10, 10], "modeled": [True, True]})
    >>> describe_split(table, np.array([True, False]), 0.5)["fit_diversities"]
    [4]
    """
    in_fit = np.asarray(in_fit, dtype=bool)
    modeled = conditions["modeled"].to_numpy(dtype=bool)
    return {
        "holdout": float(holdout),
        "rule": "fit = modeled conditions with N among the first ceil((1-holdout)*n_N) modeled "
                "checkpoints and D among the ceil((1-holdout)*n_D) smallest diversities",
        "fit_diversities": sorted(int(d) for d in np.unique(conditions.loc[in_fit, "diversity"])),
        "fit_steps": sorted(int(s) for s in np.unique(conditions.loc[in_fit, "step"])),
        "n_fit": int(in_fit.sum()),
        "n_heldout": int((modeled & ~in_fit).sum()),
        "n_unmodeled": int((~modeled).sum()),
    }
