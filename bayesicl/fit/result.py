"""`FitResult`: a fitted strategy model, its report, and how to save and reload it.

A fit folder (``FitResult.save``) holds the report of SPEC §14 — summary.json,
conditions.csv, posterior.nc (NUTS: ArviZ InferenceData with posterior, sample stats,
per-condition log-likelihood, observed data and the posterior predictive) — plus what
`load_fit` needs to predict without the runs: strategy_loss.csv and strategy_complexity.csv
(L̄_s(D), K_s(D) as used by the fit), evidence_conditions.csv (the evidence table) and
fit.json (task settings, strategies, method, variant, split, priors, seeds, versions, runs
hash, MAP details). Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import rational
from ..atomic import atomic_path, write_json, write_text
from ..errors import BayesiclError
from .data import override_lookup
from .model import NOISE_SITES
from .predict import HIGH, LOW, transition_table, weights_for

FILES = {"summary": "summary.json", "conditions": "conditions.csv", "posterior": "posterior.nc",
         "loss": "strategy_loss.csv", "complexity": "strategy_complexity.csv",
         "evidence": "evidence_conditions.csv", "fit": "fit.json"}
FORMAT_VERSION = 1


@dataclasses.dataclass(eq=False)
class FitResult:
    """A fitted rational strategy model for one setting.

    ``params``: α, β, γ (posterior means for NUTS, the optimum for MAP). ``conditions``: one
    row per (diversity, step, split) — see `bayesicl.fit.fit`. ``idata``: ArviZ
    InferenceData for NUTS; None for MAP (a point estimate has no posterior). ``loss`` and
    ``complexity``: L̄_s(D) and K_s(D) the fit used (overrides and the variant applied).
    """

    task: Any
    settings: dict
    strategies: tuple[str, ...]
    method: str
    variant: str
    cutoff_step: int
    params: dict[str, float]
    conditions: pd.DataFrame
    idata: Any
    loss: pd.DataFrame
    complexity: pd.DataFrame
    draws: dict[str, np.ndarray] | None
    report: dict[str, Any]
    info: dict[str, Any]
    evidence_conditions: pd.DataFrame
    _terms: dict = dataclasses.field(default_factory=dict, repr=False)

    # -- the report ---------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The content of summary.json (SPEC §14 keys, plus transition_steps and guards)."""
        return json.loads(json.dumps(self.report))

    @property
    def guards(self) -> list[str]:
        """Fit-quality warnings (see `bayesicl.fit.guards`)."""
        return list(self.report.get("guards", []))

    # -- predictions ----------------------------------------------------------------------------------
    def transition_steps(self, pair: tuple[str, str] | None = None) -> pd.DataFrame:
        """N*(D) per logged diversity for a strategy pair (default: M vs G), with its 90%
        interval over the posterior for NUTS (NaN for MAP) and the direction.

        Example: ``fit.transition_steps()[["diversity", "transition_step"]]``.
        """
        names = list(self.strategies)
        pair = (names[0], names[1]) if pair is None else pair
        try:
            index = (names.index(pair[0]), names.index(pair[1]))
        except ValueError:
            raise BayesiclError(f"transition_steps: pair {pair} is not among {names}") from None
        return transition_table(self.params, self.loss, self.complexity, self.draws, index)

    def predict(self, diversity, step) -> pd.DataFrame:
        """Predicted strategy weights at any (D, N), logged or not.

        `diversity` and `step` are scalars or arrays (broadcast against each other). L̄ and K
        at a diversity that was not logged are computed from the task with
        `bayesicl.strategies.loss`/`complexity` on ``task.pool(D, seed)`` (cached). Returns
        diversity, step, predicted_weight (w_M; the posterior mean for NUTS) and, for NUTS,
        predicted_low/predicted_high (its 90% credible interval; NaN for MAP), plus
        predicted_<strategy> for every strategy.

        Example: ``fit.predict(2048, [1_000, 10_000, 100_000])``.
        """
        diversity, step = np.broadcast_arrays(np.asarray(diversity, dtype=np.int64),
                                              np.asarray(step, dtype=np.float64))
        diversity, step = diversity.ravel(), step.ravel()
        if np.any(diversity < 1) or np.any(step < 0) or not np.all(np.isfinite(step)):
            raise BayesiclError("predict: diversity must be ≥ 1 and step a finite number ≥ 0")
        loss, complexity = (np.stack(t) for t in zip(*(self._terms_at(int(d)) for d in diversity)))
        params = self.draws if self.draws is not None else {k: np.array([v]) for k, v in self.params.items()}
        weights = weights_for(params, loss, complexity, step)                  # (draws, n, S)
        out = pd.DataFrame({"diversity": diversity, "step": step,
                            "predicted_weight": weights[:, :, 0].mean(axis=0)})
        if self.draws is not None:
            out["predicted_low"], out["predicted_high"] = np.quantile(weights[:, :, 0], [LOW, HIGH], axis=0)
        else:
            out["predicted_low"] = out["predicted_high"] = np.nan
        for s, name in enumerate(self.strategies):
            out[f"predicted_{name}"] = weights[:, :, s].mean(axis=0)
        return out

    def _terms_at(self, diversity: int) -> tuple[np.ndarray, np.ndarray]:
        """(L̄_s(D), K_s(D)) for one diversity, as the fit defines them."""
        if diversity in self.loss.index:
            return (self.loss.loc[diversity].to_numpy(dtype=np.float64),
                    self.complexity.loc[diversity].to_numpy(dtype=np.float64))
        if diversity not in self._terms:
            from ..evidence.terms import strategy_terms

            seed = int(self.info.get("pool_seed", 0))
            pools = {(diversity, seed): self.task.pool(diversity, seed=seed)}
            loss, complexity = strategy_terms(self.task, self.strategies, pools,
                                              num_sequences=self.info.get("loss_sequences"),
                                              zipf=self.settings.get("zipf"))
            self._terms[diversity] = (loss.iloc[0].to_numpy(dtype=np.float64),
                                      complexity.iloc[0].to_numpy(dtype=np.float64))
        loss, complexity = self._terms[diversity]
        complexity = complexity.copy()
        if self.variant == "constant_complexity":
            complexity = self.complexity.iloc[0].to_numpy(dtype=np.float64)   # K_s(D_min)
        else:
            for s, name in enumerate(self.strategies):
                bits = override_lookup(self.info.get("complexity_override"), name, diversity)
                if bits is not None:
                    complexity[s] = bits
        return loss, complexity

    # -- files -------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the fit folder (see the module docstring); returns its path."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / FILES["summary"], self.report)
        _write_csv(folder / FILES["conditions"], self.conditions, index=False)
        _write_csv(folder / FILES["loss"], self.loss, index=True)
        _write_csv(folder / FILES["complexity"], self.complexity, index=True)
        _write_csv(folder / FILES["evidence"], self.evidence_conditions, index=False)
        write_json(folder / FILES["fit"], {
            "format_version": FORMAT_VERSION, "task_settings": dict(self.task.settings),
            "settings": self.settings, "strategies": list(self.strategies), "method": self.method,
            "variant": self.variant, "cutoff_step": self.cutoff_step, "params": self.params,
            "info": _json_info(self.info)})
        if self.idata is not None:
            with atomic_path(folder / FILES["posterior"]) as tmp:
                self.idata.to_netcdf(tmp, engine="h5netcdf")
        elif (folder / FILES["posterior"]).exists():
            os.unlink(folder / FILES["posterior"])     # a stale posterior from an earlier NUTS fit
        return folder


def load_fit(directory: str | os.PathLike) -> FitResult:
    """Reload a fit folder written by `FitResult.save`; `predict` works without the runs.

    Example: ``bayesicl.fit.load_fit("fit-out").predict(64, 10_000)``.
    """
    from ..tasks import from_settings

    folder = Path(directory)
    if not folder.is_dir():
        raise BayesiclError(f"{folder}: not a fit folder (no such directory)")
    missing = [name for key, name in FILES.items() if key != "posterior" and not (folder / name).exists()]
    if missing:
        raise BayesiclError(f"{folder}: not a complete fit folder, missing {missing}")
    try:
        meta = json.loads((folder / FILES["fit"]).read_text())
        report = json.loads((folder / FILES["summary"]).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BayesiclError(f"{folder}: cannot read the fit description ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise BayesiclError(f"{folder / FILES['fit']}: unknown fit format version {meta.get('format_version')!r}")
    strategies = tuple(meta["strategies"])
    loss = _read_terms(folder / FILES["loss"], strategies)
    complexity = _read_terms(folder / FILES["complexity"], strategies)
    idata, draws = None, None
    if meta["method"] == "nuts":
        import arviz as az

        path = folder / FILES["posterior"]
        if not path.exists():
            raise BayesiclError(f"{folder}: a NUTS fit without {FILES['posterior']}")
        idata = az.from_netcdf(path, engine="h5netcdf")
        idata = idata.map(lambda ds: ds.load(), groups=list(idata.groups()))
        draws = {k: np.asarray(idata.posterior[k].values, dtype=np.float64).ravel()
                 for k in ("alpha", "beta", "gamma", *NOISE_SITES)}
    info = meta.get("info", {})
    override = info.get("complexity_override")
    if override:
        info["complexity_override"] = {(k, int(d)): float(v) for k, d, v in override}
    return FitResult(task=from_settings(meta["task_settings"]), settings=meta["settings"],
                     strategies=strategies, method=meta["method"], variant=meta["variant"],
                     cutoff_step=int(meta["cutoff_step"]), params=meta["params"],
                     conditions=pd.read_csv(folder / FILES["conditions"]), idata=idata, loss=loss,
                     complexity=complexity, draws=draws, report=report, info=info,
                     evidence_conditions=pd.read_csv(folder / FILES["evidence"]))


def _write_csv(path: Path, frame: pd.DataFrame, index: bool) -> None:
    write_text(path, frame.to_csv(index=index, float_format="%.17g"))


def _read_terms(path: Path, strategies: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path, index_col=0)
    if list(frame.columns) != list(strategies):
        raise BayesiclError(f"{path}: columns {list(frame.columns)} do not match the strategies {list(strategies)}")
    frame.index = frame.index.astype(np.int64)
    frame.index.name = "diversity"
    frame.columns.name = "strategy"
    return frame


def _json_info(info: dict) -> dict:
    out = dict(info)
    override = out.get("complexity_override")
    if override:
        from .data import _override_items

        out["complexity_override"] = [[k, d, v] for k, d, v in _override_items(override)]
    return out


def param_summary(params: dict[str, float], draws: dict[str, np.ndarray] | None) -> dict[str, dict]:
    """summary.json "params": mean, sd and the 90% HDI per parameter (sd/HDI null for MAP).

    >>> param_summary({"alpha": 0.6, "beta": 0.2, "gamma": 0.85}, None)["alpha"]
    {'mean': 0.6, 'sd': None, 'hdi_low': None, 'hdi_high': None}
    """
    out = {}
    names = list(rational.PARAMETERS) + (list(NOISE_SITES) if draws is not None else [])
    for name in names:
        if draws is None:
            out[name] = {"mean": float(params[name]), "sd": None, "hdi_low": None, "hdi_high": None}
            continue
        import arviz as az

        values = np.asarray(draws[name], dtype=np.float64)
        if np.ptp(values) == 0:                               # pinned by the variant
            low = high = float(values[0])
        else:
            low, high = (float(v) for v in az.hdi(values, hdi_prob=0.9))
        out[name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                     "hdi_low": low, "hdi_high": high}
    return out
