"""Everything a fit needs from the evidence, in arrays: the bridge from evidence to model.

Per condition c (every condition of the evidence, modeled or not): the strategies' terms
L̄_s(D_c) and K_s(D_c) (with user overrides of K and the variant's constant complexity
applied), the step N_c, the run, the observation the likelihood uses (unclipped ID r, or the
convex weights with more than two strategies) and whether it is in the fit. Once per fit:
the tabulated paper objective of the fit conditions and the ρ tables of every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import rational
from ..errors import BayesiclError
from .model import ModelData
from .objective import PaperObjective, paper_objective
from .observation import RelativeDistanceCurves, relative_distance_curves


@dataclasses.dataclass(frozen=True, eq=False)
class FitData:
    """Arrays of the conditions (C) and strategies (S) for the model; see the module doc."""

    evidence: Any
    variant: str
    in_fit: np.ndarray
    loss: pd.DataFrame
    complexity: pd.DataFrame
    condition_loss: np.ndarray
    condition_complexity: np.ndarray
    step: np.ndarray
    run: np.ndarray
    observed: np.ndarray
    curves: RelativeDistanceCurves
    objective: PaperObjective
    checkpoint: np.ndarray

    @property
    def fit_rows(self) -> np.ndarray:
        return np.flatnonzero(self.in_fit)

    @property
    def likelihood_rows(self) -> np.ndarray:
        """Fit conditions with a finite observation (r is NaN where d(M, G) < 1e-8)."""
        finite = np.isfinite(self.observed) if self.observed.ndim == 1 \
            else np.isfinite(self.observed).all(axis=1)
        return np.flatnonzero(self.in_fit & finite)

    @property
    def reference_step(self) -> float:
        """N_ref: the geometric mean of the steps of the fit conditions (where the sampler
        parameterizes γ, see `bayesicl.inference.model`)."""
        steps = self.step[self.fit_rows]
        return float(np.exp(np.mean(np.log(np.maximum(steps, 1.0))))) if steps.size else 1.0

    @property
    def fitted_runs(self) -> np.ndarray:
        """The runs (evidence run indices, sorted) with a condition in the likelihood."""
        return np.unique(self.run[self.likelihood_rows])

    def model_data(self, rows, observed: bool = True, split: int = 0) -> ModelData:
        """`ModelData` for the conditions `rows` (with their observations, or None), the ρ
        tables of split `split` (0 = id, 1 = ood), and the run structure of `rows`: their
        runs numbered 0 … R − 1 in evidence order, each run's rows in checkpoint order."""
        rows = np.asarray(rows, dtype=np.int64)
        runs, effect_run = np.unique(self.run[rows], return_inverse=True)
        members = [np.flatnonzero(effect_run == k) for k in range(runs.size)]
        members = [m[np.argsort(self.checkpoint[rows][m], kind="stable")] for m in members]
        width = max((m.size for m in members), default=1)
        run_rows = np.zeros((max(runs.size, 1), width), dtype=np.int64)
        run_mask = np.zeros(run_rows.shape, dtype=bool)
        position = np.zeros(run_rows.shape)
        for k, m in enumerate(members):
            run_rows[k, :m.size], run_mask[k, :m.size] = m, True
            position[k, :m.size] = self.checkpoint[rows][m]
        return ModelData(
            loss=jnp.asarray(self.condition_loss[rows]),
            complexity=jnp.asarray(self.condition_complexity[rows]),
            step=jnp.asarray(self.step[rows], dtype=jnp.float64),
            run=jnp.asarray(self.run[rows]),
            observed=jnp.asarray(self.observed[rows]) if observed else None,
            curve_nodes=jnp.asarray(self.curves.nodes),
            curve_values=jnp.asarray(self.curves.values[:, split]),
            curve_slopes=jnp.asarray(self.curves.slopes[:, split]),
            effect_run=jnp.asarray(effect_run.reshape(-1)), run_rows=jnp.asarray(run_rows),
            run_mask=jnp.asarray(run_mask), run_position=jnp.asarray(position),
            reference_step=jnp.asarray(self.reference_step))

    def observations(self, split: int) -> np.ndarray:
        """The observation of every condition on split `split` (0 = id, 1 = ood), as
        `observations_on`."""
        return observations_on(self.evidence, ("id", "ood")[split])


def observations_on(evidence, split: str) -> np.ndarray:
    """What the likelihood reads of every condition on `split`: unclipped r (C,), or the
    convex weights (C, S) with more than two strategies."""
    observed = evidence.dataset.sel(split=split)
    if len(evidence.strategies) > 2:
        return observed["convex_weight"].transpose("condition", "strategy").to_numpy().astype(np.float64)
    return observed["r"].to_numpy().astype(np.float64)


def fit_data(evidence, in_fit: np.ndarray, variant: str | None = None,
             complexity_override: Mapping | None = None) -> FitData:
    """Assemble `FitData`: terms per condition, observations, objective tables, ρ tables."""
    variant = rational.check_variant(variant)
    in_fit = np.asarray(in_fit, dtype=bool)
    if in_fit.shape != (evidence.num_conditions,):
        raise BayesiclError(f"in_fit has shape {in_fit.shape}, expected ({evidence.num_conditions},)")
    complexity = terms_for_fit(evidence.complexity, complexity_override, variant)
    loss = evidence.loss.copy()
    conditions = evidence.dataset
    diversity, step, run = (conditions[name].to_numpy() for name in ("diversity", "step", "run"))
    return FitData(
        evidence=evidence, variant=variant, in_fit=in_fit, loss=loss, complexity=complexity,
        condition_loss=loss.loc[diversity].to_numpy(dtype=np.float64),
        condition_complexity=complexity.loc[diversity].to_numpy(dtype=np.float64),
        step=step.astype(np.float64), run=run,
        observed=observations_on(evidence, "id"), curves=relative_distance_curves(evidence),
        objective=paper_objective(evidence, np.flatnonzero(in_fit)),
        checkpoint=checkpoint_order(run, step))


def checkpoint_order(run: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Each condition's position among its run's checkpoints (0 = first), by step.

    >>> checkpoint_order(np.array([0, 0, 1, 0]), np.array([30, 10, 5, 20])).tolist()
    [2, 0, 0, 1]
    """
    out = np.empty(run.size, dtype=np.int64)
    for r in np.unique(run):
        rows = np.flatnonzero(run == r)
        out[rows[np.argsort(step[rows], kind="stable")]] = np.arange(rows.size)
    return out


def terms_for_fit(complexity: pd.DataFrame, override: Mapping | None, variant: str) -> pd.DataFrame:
    """K_s(D) with overrides applied, then the variant's K_s(D) := K_s(D_min) if asked.

    `override` maps (kind, D) → bits, kind → {D: bits}, or kind → bits (every D).

    >>> k = pd.DataFrame({"memorizing": [10.0, 40.0], "generalizing": [2.0, 2.0]},
    ...                  index=pd.Index([4, 16], name="diversity"))
    >>> terms_for_fit(k, {("memorizing", 16): 30.0}, "full")["memorizing"].tolist()
    [10.0, 30.0]
    >>> terms_for_fit(k, None, "constant_complexity")["memorizing"].tolist()
    [10.0, 10.0]
    """
    complexity = apply_complexity_override(complexity, override)
    if variant == "constant_complexity":
        values = rational.constant_complexity(complexity.to_numpy(), complexity.index.to_numpy())
        complexity = pd.DataFrame(values, index=complexity.index, columns=complexity.columns)
    return complexity


def apply_complexity_override(complexity: pd.DataFrame, override: Mapping | None) -> pd.DataFrame:
    """A copy of K_s(D) with user-set values (see `terms_for_fit`)."""
    complexity = complexity.copy()
    for kind, diversity, bits in _override_items(override):
        if kind not in complexity.columns:
            raise BayesiclError(f"complexity override names strategy {kind!r}; the fit has "
                                f"{list(complexity.columns)}")
        if not np.isfinite(bits) or bits < 0:
            raise BayesiclError(f"complexity override {kind}={bits!r} must be a finite number of bits ≥ 0")
        if diversity is None:
            complexity[kind] = float(bits)
        elif diversity in complexity.index:
            complexity.loc[diversity, kind] = float(bits)
        else:
            raise BayesiclError(f"complexity override for D={diversity}: the evidence has "
                                f"diversities {complexity.index.tolist()}")
    return complexity


def _override_items(override: Mapping | None):
    for key, value in (override or {}).items():
        if isinstance(key, tuple):
            yield str(key[0]), int(key[1]), float(value)
        elif isinstance(value, Mapping):
            for diversity, bits in value.items():
                yield str(key), int(diversity), float(bits)
        else:
            yield str(key), None, float(value)


def override_lookup(override: Mapping | None, kind: str, diversity: int) -> float | None:
    """The overridden K of `kind` at `diversity`, if the user set one (else None).

    >>> override_lookup({"memorizing": 12.0}, "memorizing", 64)
    12.0
    """
    found = None
    for name, d, bits in _override_items(override):
        if name == kind and (d is None or d == int(diversity)):
            found = bits
    return found
