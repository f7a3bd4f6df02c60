"""Read a population fit folder (`bayesicl.inference.population_io`) back as a `PopulationResult`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import rational
from ..atomic import read_regular
from ..errors import BayesiclError
from .folder import MAX_TEXT_BYTES, read_checked, read_posterior
from .population_data import Covariates
from .population_io import FILES, FORMAT_VERSION
from .population_model import noise_draws, population_draws
from .population_result import PopulationResult


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
             "population_draws": population_draws(samples) if pool == "partial" else None,
             "noise_draws": noise_draws(samples)}
    population = report.get("population")
    return PopulationResult(pool=pool, configurations=configurations, population=population, conditions=conditions,
                            transitions=transitions, idata=idata, report=report, fits={}, state=state)

