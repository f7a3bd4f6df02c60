"""Evidence entries of the cache (`bayesicl.evidence.cache`): an `Evidence` stored and read back.

An entry (format `EVIDENCE_FORMAT`) is a directory written atomically (a temporary directory
renamed into place): statistics.nc (netCDF: the tabulated objective, the ρ curves, the
scored positions), observations.nc (netCDF: `Evidence.dataset`, its condition index stored
as plain coordinates), loss.csv, complexity.csv, loss_difference.csv and
loss_difference_se.csv (the paired ΔL̄ and its standard error), evidence.json, and
strategies/run-NNNN.npy, the strategies' outputs on each run's inputs (read back one run at a
time by the metrics of a fit; the transformer's outputs are read from the runs themselves).
A corrupt entry is treated as a miss.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._version import __version__
from ..atomic import make_shareable, read_regular, write_bytes, write_json
from ..errors import BayesiclError
from ..families import family_spec
from ..tasks import from_settings
from .cache import warn_cannot_store, cache_dir
from .stream import RunSource, load_array, save_array
from .table import CONDITION_LEVELS, Evidence

#: Layout of an evidence entry; part of its key (2: streamed statistics instead of arrays.nc;
#: 3: the labelled observations.nc instead of the wide conditions.csv; 4: the metric tables,
#: `bayesicl.evidence.metric_tables`). An entry of another format is a miss: the evidence is
#: built again.
EVIDENCE_FORMAT = 4


def load_evidence(entry: str, runs=None, splits=None):
    """The Evidence stored under `entry`, or None when absent or unreadable; its outputs are
    read from `runs` (the runs it was built from) and the stored strategies' outputs."""
    folder = cache_dir() / "evidence" / entry
    try:
        meta = json.loads(read_regular(folder / "evidence.json", 1 << 26))
        if meta.get("format") != EVIDENCE_FORMAT:
            return None
        with xr.open_dataset(io.BytesIO(read_regular(folder / "statistics.nc")), engine="h5netcdf") as stored:
            statistics = stored.load()
        statistics["scored"] = statistics["scored"].astype(bool)
        with xr.open_dataset(io.BytesIO(read_regular(folder / "observations.nc")), engine="h5netcdf") as stored:
            dataset = stored.load()
        dataset = dataset.assign(modeled=dataset["modeled"].astype(bool)) \
            .assign_coords(configuration=dataset["configuration"].astype(object)) \
            .set_index(condition=list(CONDITION_LEVELS))
        loss = pd.read_csv(folder / "loss.csv", index_col="diversity")
        complexity = pd.read_csv(folder / "complexity.csv", index_col="diversity")
        paired = [pd.read_csv(folder / f"{name}.csv", index_col="diversity")
                  if (folder / f"{name}.csv").exists() else None
                  for name in ("loss_difference", "loss_difference_se")]
        for frame in (loss, complexity, *paired):
            if frame is not None:
                frame.columns.name = "strategy"
        source = None
        if runs is not None:
            if not all((folder / "strategies" / _strategy_name(r)).is_file() for r in range(len(runs))):
                return None
            targets = None
            target_key = family_spec(meta["task"]["task"]).target_key
            if target_key is not None:
                targets = [np.stack([np.asarray(run.inputs[s][target_key], dtype=np.float32)[..., None]
                                     for s in splits]) for run in runs]
            source = RunSource(runs, splits, strategy_reader(folder), targets)
        return Evidence(task=from_settings(meta["task"]), settings=meta["settings"],
                        strategies=tuple(meta["strategies"]), output_kind=meta["output_kind"],
                        dataset=dataset, loss=loss, complexity=complexity, statistics=statistics,
                        cutoff_step=int(meta["cutoff_step"]), runs_hash=meta["runs_hash"],
                        loss_difference=paired[0], loss_difference_se=paired[1],
                        complexity_convention=meta.get("complexity_convention", "bayesicl"), source=source)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def strategy_reader(folder: Path):
    """r → the strategies' outputs of run r stored in the evidence entry `folder`."""
    def read(r: int) -> np.ndarray:
        path = folder / "strategies" / _strategy_name(r)
        try:
            return load_array(read_regular(path))
        except (OSError, ValueError) as error:
            raise BayesiclError(f"{path}: the evidence cache entry changed or is unreadable ({error}); "
                                "build the evidence again") from None
    return read


def _strategy_name(r: int) -> str:
    return f"run-{r:04d}.npy"


def store_evidence(entry: str, evidence) -> Path | None:
    """Write `evidence` under `entry` (built in a temporary directory, then renamed); its
    path, or None when the cache cannot be written (one `CacheWarning`, nothing left)."""
    try:
        return _store_evidence(entry, evidence)
    except OSError as error:
        warn_cannot_store(cache_dir() / "evidence", error)
        return None


def _store_evidence(entry: str, evidence) -> Path:
    root = cache_dir() / "evidence"
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry
    # Serialized in memory first: HDF5 writing straight into a file on a full disk can crash
    # the process; a plain write of bytes fails with an OSError instead.
    statistics = bytes(evidence.statistics.to_netcdf(engine="h5netcdf"))
    observations = bytes(evidence.dataset.reset_index("condition").to_netcdf(engine="h5netcdf"))
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry}.", dir=root))
    try:
        make_shareable(tmp, directory=True)
        write_bytes(tmp / "statistics.nc", statistics)
        write_bytes(tmp / "observations.nc", observations)
        (tmp / "strategies").mkdir()
        make_shareable(tmp / "strategies", directory=True)
        for r in range(evidence.source.num_runs):
            write_bytes(tmp / "strategies" / _strategy_name(r), save_array(evidence.source.strategy(r)))
        evidence.loss.to_csv(tmp / "loss.csv")
        evidence.complexity.to_csv(tmp / "complexity.csv")
        if evidence.loss_difference is not None:
            evidence.loss_difference.to_csv(tmp / "loss_difference.csv")
            evidence.loss_difference_se.to_csv(tmp / "loss_difference_se.csv")
        write_json(tmp / "evidence.json", {
            "format": EVIDENCE_FORMAT, "version": __version__, "task": evidence.task.settings, "settings": evidence.settings,
            "strategies": list(evidence.strategies), "output_kind": evidence.output_kind,
            "cutoff_step": evidence.cutoff_step, "runs_hash": evidence.runs_hash,
            "complexity_convention": evidence.complexity_convention})
        if final.exists():
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():   # else a concurrent writer stored the same entry first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
