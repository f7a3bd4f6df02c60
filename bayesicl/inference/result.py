"""`FitResult`: a fitted strategy model, its report, and how to save and reload it.

A fit folder (``FitResult.save``) holds the report of docs/model.md#fit-outputs — summary.json,
conditions.csv, posterior.nc (NUTS: ArviZ InferenceData with posterior, sample stats,
per-condition log-likelihood, observed data, the posterior predictive (ID) and, in ArviZ's
"predictions" group, the OOD stage's draws and OOD predictive) — plus what
`load_fit` needs to predict without the runs: strategy_loss.csv and strategy_complexity.csv
(L̄_s(D), K_s(D) as used by the fit), evidence_conditions.csv (the evidence table) and
fit.json (task settings, strategies, method, variant, split, priors, seeds, versions, runs
hash, MAP details). Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import rational
from ..atomic import read_regular, write_bytes, write_json, write_text
from ..errors import BayesiclError
from ..evidence.terms import strategy_terms
from ..tasks import from_settings
from .data import _override_items, override_lookup
from .folder import MAX_STAGE_DRAWS, MAX_TEXT_BYTES, digests, inference_data_bytes, read_checked, read_posterior, replaced_folder
from .model import NOISE_SITES
from .options import FitOptions
from .population_io import is_population_folder
from .population_load import load_population
from .predict import HIGH, LOW, transition_table, weights_for

FILES = {"summary": "summary.json", "conditions": "conditions.csv", "posterior": "posterior.nc",
         "loss": "strategy_loss.csv", "complexity": "strategy_complexity.csv",
         "evidence": "evidence_conditions.csv", "fit": "fit.json"}
#: 2: run effects, the OOD stage, and the shared vocabulary (observed_low/high, low/high,
#: subset); 1 is still read (`upgrade_names`).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass(eq=False)
class FitResult:
    """A fitted rational strategy model for one setting.

    ``params``: α, β, γ (posterior means for NUTS, the optimum for MAP). ``conditions``: one
    row per (diversity, step, split) — see `bayesicl.inference.fit`. ``idata``: ArviZ
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
        """The content of summary.json (docs/model.md#fit-outputs keys, plus transition_steps and guards;
        for NUTS also interval_level, identified, coverage, elpd and effects — see `bayesicl.inference.fit`)."""
        return json.loads(json.dumps(self.report))

    @property
    def options(self) -> FitOptions:
        """The `FitOptions` of the fit (fit.json ``info.options``). A folder written before
        the options were recorded gives those its info holds (method, variant, seed, holdout,
        K overrides, the sampler's settings; its resolved priors as overrides) and defaults."""
        if isinstance(self.info.get("options"), dict):
            return FitOptions.from_dict(self.info["options"])
        sampler = self.info.get("sampler") or {}
        known = {"method": self.method, "variant": self.variant, "seed": self.info.get("seed"),
                 "holdout": self.info.get("holdout"), "complexity_override": self.info.get("complexity_override"),
                 "loss_sequences": self.info.get("loss_sequences"),
                 "priors": {k: (kind, tuple(args)) for k, (kind, args) in (self.info.get("priors") or {}).items()},
                 **{k: sampler.get(k) for k in ("num_chains", "num_samples", "num_warmup", "chain_method", "effects")},
                 "strategies": self.strategies}
        return FitOptions().replace(**{k: v for k, v in known.items() if v is not None})

    @property
    def guards(self) -> list[str]:
        """Fit-quality warnings (see `bayesicl.inference.guards`)."""
        return list(self.report.get("guards", []))

    # -- predictions ----------------------------------------------------------------------------------
    def transition_steps(self, pair: tuple[str, str] | None = None) -> pd.DataFrame:
        """N*(D) per logged diversity for a strategy pair (default: M vs G): the per-draw
        median (NUTS) or the MAP value, the value at the posterior mean, its 90% interval over
        the posterior (NaN for MAP), the direction, and whether N* lies beyond the last
        trained step of that diversity (`extrapolated`).

        Example: ``fit.transition_steps()[["diversity", "transition_step"]]``.
        """
        names = list(self.strategies)
        pair = (names[0], names[1]) if pair is None else pair
        try:
            index = (names.index(pair[0]), names.index(pair[1]))
        except ValueError:
            raise BayesiclError(f"transition_steps: pair {pair} is not among {names}") from None
        last_step = None
        if {"diversity", "step"} <= set(self.evidence_conditions.columns):
            last_step = self.evidence_conditions.groupby("diversity")["step"].max().to_dict()
        return transition_table(self.params, self.loss, self.complexity, self.draws, index, last_step=last_step)

    def predict(self, diversity, step) -> pd.DataFrame:
        """Predicted strategy weights at any (D, N), logged or not.

        `diversity` and `step` are scalars or arrays (broadcast against each other). L̄ and K
        at a diversity that was not logged are computed from the task with
        `bayesicl.strategies.loss`/`complexity` on ``task.pool(D, seed)`` (cached). Returns
        diversity, step, predicted_weight (w_M; the posterior mean for NUTS) and, for NUTS,
        weight_low/weight_high (its central 90% credible interval; NaN for MAP), plus
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
            out["weight_low"], out["weight_high"] = np.quantile(weights[:, :, 0], [LOW, HIGH], axis=0)
        else:
            out["weight_low"] = out["weight_high"] = np.nan
        for s, name in enumerate(self.strategies):
            out[f"predicted_{name}"] = weights[:, :, s].mean(axis=0)
        return out

    def _terms_at(self, diversity: int) -> tuple[np.ndarray, np.ndarray]:
        """(L̄_s(D), K_s(D)) for one diversity, as the fit defines them."""
        if diversity in self.loss.index:
            return (self.loss.loc[diversity].to_numpy(dtype=np.float64),
                    self.complexity.loc[diversity].to_numpy(dtype=np.float64))
        if diversity not in self._terms:
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
        """Write the fit folder (see the module docstring) whole: built beside it and swapped
        into place (`bayesicl.inference.folder`), so `directory` holds the previous fit or this
        one, never a mix; fit.json, written last, lists every other file's sha256."""
        folder = Path(directory)
        with replaced_folder(folder) as tmp:
            write_json(tmp / FILES["summary"], self.report)
            _write_csv(tmp / FILES["conditions"], self.conditions, index=False)
            _write_csv(tmp / FILES["loss"], self.loss, index=True)
            _write_csv(tmp / FILES["complexity"], self.complexity, index=True)
            _write_csv(tmp / FILES["evidence"], self.evidence_conditions, index=False)
            if self.idata is not None:
                write_bytes(tmp / FILES["posterior"], inference_data_bytes(self.idata))
            write_json(tmp / FILES["fit"], {
                "format_version": FORMAT_VERSION, "task_settings": dict(self.task.settings),
                "settings": self.settings, "strategies": list(self.strategies), "method": self.method,
                "variant": self.variant, "cutoff_step": self.cutoff_step, "params": self.params,
                "info": _json_info(self.info),
                "files": digests(tmp, [name for key, name in FILES.items() if key != "fit"])})
        return folder


def load_fit(directory: str | os.PathLike) -> FitResult:
    """Reload a fit folder written by `FitResult.save`; `predict` works without the runs.
    A folder that is incomplete, mixed from two fits (fit.json lists each file's sha256),
    crafted or damaged is refused in one line naming it; posterior.nc is read only in
    ArviZ's groups and only as large as the fit's chains × draws × conditions allow.

    A folder of a fit over several configurations (`bayesicl.inference.population`, fit.json kind
    "population") is read back as a `PopulationResult`.

    Example: ``bayesicl.inference.load_fit("fit-out").predict(64, 10_000)``.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise BayesiclError(f"{folder}: not a fit folder (no such directory)")
    if is_population_folder(folder):
        return load_population(folder)
    missing = [name for key, name in FILES.items() if key != "posterior" and not os.path.lexists(folder / name)]
    if missing:
        raise BayesiclError(f"{folder}: not a complete fit folder, missing {missing}")
    try:
        return _load_fit(folder)
    except BayesiclError:
        raise
    except (LookupError, ValueError, TypeError, AttributeError, OverflowError) as error:
        raise BayesiclError(f"{folder}: not a valid fit folder ({type(error).__name__}: {error})") from None


def _load_fit(folder: Path) -> FitResult:
    fit_json = folder / FILES["fit"]
    meta = _json_object(fit_json, read_regular(fit_json, MAX_TEXT_BYTES))
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise BayesiclError(f"{fit_json}: unknown fit format version {meta.get('format_version')!r}")
    expected = meta.get("files")
    if expected is not None and not (isinstance(expected, dict) and all(isinstance(v, str) for v in expected.values())):
        raise BayesiclError(f"{fit_json}: field 'files' must map file names to sha256 digests")

    def read(key: str) -> bytes:
        return read_checked(folder, FILES[key], expected)

    report = _json_object(folder / FILES["summary"], read("summary"))
    strategies = meta.get("strategies")
    if not isinstance(strategies, list) or len(strategies) < 2 or not all(isinstance(k, str) for k in strategies):
        raise BayesiclError(f"{fit_json}: strategies must be a list of at least two names, got {strategies!r}")
    strategies = tuple(strategies)
    if meta.get("method") not in ("map", "nuts"):
        raise BayesiclError(f"{fit_json}: method must be 'map' or 'nuts', got {meta.get('method')!r}")
    params = meta.get("params")
    if not isinstance(params, dict) or not all(
            isinstance(params.get(k), (int, float)) and not isinstance(params.get(k), bool)
            and np.isfinite(params[k]) for k in rational.PARAMETERS):
        raise BayesiclError(f"{fit_json}: params must hold finite numbers {list(rational.PARAMETERS)}, got {params!r}")
    cutoff = meta.get("cutoff_step")
    if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 0:
        raise BayesiclError(f"{fit_json}: cutoff_step must be an integer ≥ 0, got {cutoff!r}")
    for key, kind in (("task_settings", dict), ("settings", dict), ("variant", str), ("info", dict)):
        if not isinstance(meta.get(key, {} if key == "info" else None), kind):
            raise BayesiclError(f"{fit_json}: field {key!r} must be a {kind.__name__}")
    try:
        task = from_settings(meta["task_settings"])
    except (BayesiclError, LookupError, TypeError, ValueError, AttributeError) as error:
        raise BayesiclError(f"{fit_json}: invalid task_settings: {error}") from None
    loss = _read_terms(folder / FILES["loss"], read("loss"), strategies)
    complexity = _read_terms(folder / FILES["complexity"], read("complexity"), strategies)
    conditions = _read_table(folder / FILES["conditions"], read("conditions"))
    evidence_conditions = _read_table(folder / FILES["evidence"], read("evidence"))
    info = meta.get("info", {})
    idata, draws = None, None
    if meta["method"] == "nuts":
        path = folder / FILES["posterior"]
        if not os.path.lexists(path):
            raise BayesiclError(f"{folder}: a NUTS fit without {FILES['posterior']}")
        sampler = info.get("sampler") or {}
        sizes = [sampler.get(k) for k in ("num_chains", "num_samples", "num_warmup")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes) or sizes[0] < 1:
            raise BayesiclError(f"{fit_json}: info.sampler must give num_chains, num_samples and num_warmup")
        # A variable holds at most (draws) × (conditions, or fewer runs/observations) × strategies
        # values; draws are the sampler's (warm-up included) or a fixed stage's (≤ MAX_STAGE_DRAWS).
        draws_bound = max(sizes[0] * (sizes[1] + sizes[2]), MAX_STAGE_DRAWS)
        limit = draws_bound * max(len(conditions), len(evidence_conditions), 1) * max(len(strategies), 2)
        idata = read_posterior(path, read("posterior"), limit)
        draws = {}
        for k in ("alpha", "beta", "gamma", *NOISE_SITES):
            if k not in idata.posterior:
                raise BayesiclError(f"{path}: the posterior lacks {k!r}")
            draws[k] = np.asarray(idata.posterior[k].values, dtype=np.float64).ravel()
            if draws[k].size == 0 or not np.all(np.isfinite(draws[k])):
                raise BayesiclError(f"{path}: the draws of {k!r} are empty or not finite")
        for k in ("sigma_run", "trend_corr", "run_effect"):     # run effects (format 2)
            if k in idata.posterior:
                value = np.asarray(idata.posterior[k].values, dtype=np.float64)
                draws[k] = value.reshape(-1, value.shape[-1]) if k == "run_effect" else value.ravel()
    report, conditions = upgrade_names(report, conditions)
    override = info.get("complexity_override")
    if override:
        info["complexity_override"] = {(k if d is None else (k, int(d))): float(v) for k, d, v in override}
    return FitResult(task=task, settings=meta["settings"],
                     strategies=strategies, method=meta["method"], variant=meta["variant"],
                     cutoff_step=int(cutoff), params=params,
                     conditions=conditions, idata=idata, loss=loss,
                     complexity=complexity, draws=draws, report=report, info=info,
                     evidence_conditions=evidence_conditions)


def _json_object(path: Path, data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError as error:    # also a UnicodeDecodeError
        raise BayesiclError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(value, dict):
        raise BayesiclError(f"{path}: expected a JSON object")
    return value


def _read_table(path: Path, data: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError) as error:
        raise BayesiclError(f"{path}: unreadable CSV ({str(error).splitlines()[0] if str(error) else error})") from None


def _write_csv(path: Path, frame: pd.DataFrame, index: bool) -> None:
    write_text(path, frame.to_csv(index=index, float_format="%.17g"))


def _read_terms(path: Path, data: bytes, strategies: tuple[str, ...]) -> pd.DataFrame:
    frame = _read_table(path, data)
    frame = frame.set_index(frame.columns[0]) if len(frame.columns) else frame
    if list(frame.columns) != list(strategies):
        raise BayesiclError(f"{path}: columns {list(frame.columns)} do not match the strategies {list(strategies)}")
    values = frame.to_numpy()
    if len(frame) == 0 or not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)) \
            or not pd.api.types.is_integer_dtype(frame.index):
        raise BayesiclError(f"{path}: must hold finite numbers per integer diversity")
    frame.index = frame.index.astype(np.int64)
    frame.index.name = "diversity"
    frame.columns.name = "strategy"
    return frame


def _json_info(info: dict) -> dict:
    out = dict(info)
    override = out.get("complexity_override")
    if override:
        out["complexity_override"] = [[k, d, v] for k, d, v in _override_items(override)]
    return out


def param_summary(params: dict[str, float], draws: dict[str, np.ndarray] | None,
                  map_params: dict[str, float] | None = None,
                  sd_ratios: dict[str, float] | None = None) -> dict[str, dict]:
    """summary.json "params": per parameter the mean, sd and the central 90% interval
    (low, high) of the posterior (sd/low/high null for MAP), the MAP value (`map`) and, for
    NUTS, posterior sd / prior sd in the sampler's coordinates (`sd_ratio`, see
    `bayesicl.inference.guards.identification_guard`). NUTS adds the noise scales, σ_run and φ.

    >>> param_summary({"alpha": 0.6, "beta": 0.2, "gamma": 0.85}, None)["alpha"]
    {'mean': 0.6, 'sd': None, 'low': None, 'high': None, 'map': 0.6}
    """
    out = {}
    map_params = params if map_params is None and draws is None else (map_params or {})
    names = list(rational.PARAMETERS)
    if draws is not None:
        names += [n for n in (*NOISE_SITES, "sigma_run", "trend_corr") if n in draws]
    for name in names:
        if draws is None:
            out[name] = {"mean": float(params[name]), "sd": None, "low": None, "high": None,
                         "map": float(map_params[name])}
            continue
        values = np.asarray(draws[name], dtype=np.float64)
        low, high = (float(v) for v in np.quantile(values, [LOW, HIGH]))
        out[name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "low": low, "high": high}
        if name in map_params:
            out[name]["map"] = float(map_params[name])
        if sd_ratios and name in sd_ratios:
            out[name]["sd_ratio"] = float(sd_ratios[name])
    return out


def json_number(value: Any) -> Any:
    """A number for summary.json: ∞ as "inf" (−∞ as "-inf"), NaN as None, others unchanged.

    >>> json_number(float("inf")), json_number(float("nan")), json_number(2.5)
    ('inf', None, 2.5)
    """
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(value)
    return value


#: Names of fit folders written before the shared vocabulary (docs/outputs.md), read by `load_fit`.
OLD_CONDITION_COLUMNS = {"predicted_low": "observed_low", "predicted_high": "observed_high"}
OLD_PARAM_KEYS = {"hdi_low": "low", "hdi_high": "high"}


def upgrade_names(report: dict, conditions: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """A fit folder's summary and condition table in the current vocabulary: old
    predicted_low/high (the predictive interval of the observed weight) → observed_low/high,
    hdi_low/high → low/high, the summary's "split" (fit/held-out) → "subset".

    >>> report, table = upgrade_names({"params": {"alpha": {"hdi_low": 0.1}}, "split": {}},
    ...                               pd.DataFrame({"predicted_low": [0.2]}))
    >>> report["params"]["alpha"], "subset" in report, table.columns.tolist()
    ({'low': 0.1}, True, ['observed_low'])
    """
    conditions = conditions.rename(columns={k: v for k, v in OLD_CONDITION_COLUMNS.items()
                                            if k in conditions and v not in conditions})
    report = dict(report)
    for name, leaf in list((report.get("params") or {}).items()):
        if isinstance(leaf, dict):
            report["params"][name] = {OLD_PARAM_KEYS.get(k, k): v for k, v in leaf.items()}
    if "split" in report and "subset" not in report:
        report["subset"] = report.pop("split")
    report.setdefault("interval_level", 0.9)
    return report, conditions
