"""The population fit folder: written whole (`bayesicl.fit.folder.replaced_folder`), read back
by `bayesicl.fit.load_fit`.

Files: summary.json (the report), conditions.csv (every configuration's conditions, with a
configuration column), configurations.csv (per-configuration α, β, γ with 90% intervals and
covariates), transitions.csv (N*(D) per configuration), posterior.nc (NUTS: ArviZ
InferenceData; alpha/beta/gamma have a configuration dim, μ, B, τ, L the population) and
fit.json (kind "population": the configurations' settings, the covariates' standardization,
N_ref, strategies and what `predict` needs; the sha256 of every other file).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import numpy as np
import pandas as pd

from .. import rational
from ..atomic import read_regular, write_bytes, write_json, write_text
from ..errors import BayesiclError
from .folder import MAX_TEXT_BYTES, digests, inference_data_bytes, read_checked, read_posterior, replaced_folder
from .population_data import Covariates

KIND = "population"
FORMAT_VERSION = 1
FILES = {"summary": "summary.json", "conditions": "conditions.csv", "configurations": "configurations.csv",
         "transitions": "transitions.csv", "posterior": "posterior.nc", "fit": "fit.json"}


def save_population(result, directory: str | os.PathLike) -> Path:
    """Write `result` (a `PopulationResult`) into `directory` whole; fit.json, written last,
    lists every other file's sha256."""
    folder = Path(directory)
    state = result.state
    with replaced_folder(folder) as tmp:
        write_json(tmp / FILES["summary"], result.report)
        write_text(tmp / FILES["conditions"], result.conditions.to_csv(index=False))
        write_text(tmp / FILES["configurations"], result.configurations.to_csv(index=False))
        write_text(tmp / FILES["transitions"], result.transitions.to_csv(index=False))
        if result.idata is not None:
            write_bytes(tmp / FILES["posterior"], inference_data_bytes(result.idata))
        point = None
        if result.idata is None:
            point = {n: {k: float(np.mean(v)) for k, v in d.items()} for n, d in state["config_draws"].items()}
        write_json(tmp / FILES["fit"], {
            "format_version": FORMAT_VERSION, "kind": KIND, "pool": result.pool,
            "configurations": state["configurations"],
            "covariates": state["covariates"].to_json() if state["covariates"] is not None else None,
            "reference_step": state["reference_step"], "strategies": state["strategies"],
            "family": state["family"], "seed": state["seed"], "loss_sequences": state["loss_sequences"],
            "pool_seed": state["pool_seed"], "zipf": state["zipf"], "point_params": point,
            "sampler": result.report.get("sampler"),
            "files": digests(tmp, [name for key, name in FILES.items() if key != "fit"])})
    return folder


def is_population_folder(folder: Path) -> bool:
    """Whether fit.json in `folder` says kind "population" (False for a single fit)."""
    path = Path(folder) / FILES["fit"]
    if not path.is_file():
        return False
    try:
        meta = json.loads(read_regular(path, MAX_TEXT_BYTES))
    except (ValueError, OSError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == KIND


def load_population(directory: str | os.PathLike):
    """Reload a population fit folder as a `PopulationResult` (``fits`` empty; ``predict`` works
    without the runs). A damaged or mixed folder is refused in one line naming it."""
    folder = Path(directory)
    try:
        return _load(folder)
    except BayesiclError:
        raise
    except (LookupError, ValueError, TypeError, AttributeError) as error:
        raise BayesiclError(f"{folder}: not a valid population fit folder ({type(error).__name__}: {error})") from None


def _load(folder: Path):
    from .population import PopulationResult
    from .population_model import population_draws

    meta = json.loads(read_regular(folder / FILES["fit"], MAX_TEXT_BYTES))
    if meta.get("format_version") != FORMAT_VERSION:
        raise BayesiclError(f"{folder / FILES['fit']}: unknown population format version {meta.get('format_version')!r}")
    expected = meta.get("files")
    if not isinstance(expected, dict):
        raise BayesiclError(f"{folder / FILES['fit']}: field 'files' must map file names to sha256 digests")
    missing = [name for key, name in FILES.items() if key not in ("posterior", "fit") and not (folder / name).is_file()]
    if missing:
        raise BayesiclError(f"{folder}: not a complete population fit folder, missing {missing}")

    def table(key: str) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(read_checked(folder, FILES[key], expected)))

    report = json.loads(read_checked(folder, FILES["summary"], expected))
    configurations, conditions, transitions = table("configurations"), table("conditions"), table("transitions")
    names = [c["name"] for c in meta["configurations"]]
    if configurations["configuration"].tolist() != names:
        raise BayesiclError(f"{folder / FILES['configurations']}: configurations differ from {FILES['fit']}")
    idata, samples = None, None
    if FILES["posterior"] in expected:
        sampler = meta.get("sampler") or {}
        draws = int(sampler.get("num_chains", 1)) * (int(sampler.get("num_samples", 1)) + int(sampler.get("num_warmup", 0)))
        limit = max(draws, 1) * max(len(conditions), 1) * 9
        idata = read_posterior(folder / FILES["posterior"], read_checked(folder, FILES["posterior"], expected), limit)
        samples = {k: np.asarray(v.values, dtype=np.float64) for k, v in idata.posterior.items()}
    pool = meta["pool"]
    if samples is not None:
        config_draws = {n: {k: samples[k][..., j].reshape(-1) for k in rational.PARAMETERS}
                        for j, n in enumerate(names)}
    else:
        config_draws = {n: {k: np.array([float(v)]) for k, v in meta["point_params"][n].items()} for n in names}
    state = {"configurations": meta["configurations"],
             "covariates": Covariates.from_json(meta["covariates"]) if meta.get("covariates") else None,
             "reference_step": meta["reference_step"], "strategies": meta["strategies"], "family": meta["family"],
             "seed": meta["seed"], "loss_sequences": meta["loss_sequences"], "pool_seed": meta["pool_seed"],
             "zipf": meta["zipf"], "config_draws": config_draws,
             "population_draws": population_draws(samples) if pool == "partial" else None}
    population = report.get("population")
    return PopulationResult(pool=pool, configurations=configurations, population=population, conditions=conditions,
                            transitions=transitions, idata=idata, report=report, fits={}, state=state)

