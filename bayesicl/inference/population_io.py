"""The population fit folder: written whole (`bayesicl.inference.folder.replaced_folder`), read back
by `bayesicl.inference.load_fit` (`bayesicl.inference.population_load`).

Files: summary.json (the report), conditions.csv (every configuration's conditions, with a
configuration column), configurations.csv (per-configuration α, β, γ with 90% intervals and
covariates), transitions.csv (N*(D) per configuration), posterior.nc (NUTS: ArviZ
InferenceData; alpha/beta/gamma have a configuration dim, μ, B, τ, L the population) and
fit.json (kind "population": the configurations' settings, the covariates' standardization,
N_ref, strategies and what `predict` needs; the sha256 of every other file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import read_regular, write_bytes, write_json, write_text
from .folder import MAX_TEXT_BYTES, digests, inference_data_bytes, replaced_folder

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
