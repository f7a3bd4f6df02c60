"""The evidence cache: computed evidence and strategy terms, kept outside the runs' folder.

Location: ``$BAYESICL_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("bayesicl")``.
Nothing is ever written inside a runs directory. An entry's key hashes everything its value
depends on: for evidence, the runs' content hashes, the strategy list, the cutoff, the loss
sample size and the package version; for strategy terms (L̄_s, K_s), the task settings, the
pool's bytes, the strategy, the loss sample size and seed. A run that gains a checkpoint
changes its content hash, so its evidence is recomputed; its L̄ and K are reused.

Evidence entries are directories written atomically (a temporary directory renamed into
place): arrays.nc (netCDF), conditions.csv, loss.csv, complexity.csv and evidence.json.
Terms are small JSON files. No pickle anywhere. A corrupt entry is treated as a miss.

>>> import os, tempfile
>>> from unittest import mock
>>> with mock.patch.dict(os.environ, {"BAYESICL_CACHE_DIR": tempfile.mkdtemp()}):
...     store_json("terms", "abc", {"loss": 1.5})
...     load_json("terms", "abc")
{'loss': 1.5}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from .._version import __version__
from ..atomic import write_json
from ..tasks import from_settings

ENV_VAR = "BAYESICL_CACHE_DIR"


def cache_dir() -> Path:
    """The cache root: $BAYESICL_CACHE_DIR, or the user cache directory for bayesicl."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("bayesicl"))


def key(*parts: Any) -> str:
    """A stable hex key of JSON-able parts (and the package version).

    >>> key("a", 1) == key("a", 1) != key("a", 2)
    True
    """
    text = json.dumps([__version__, *parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_json(kind: str, entry: str) -> Any | None:
    """The JSON value stored under (kind, entry), or None when absent or unreadable."""
    path = cache_dir() / kind / f"{entry}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def store_json(kind: str, entry: str, value: Any) -> None:
    """Atomically store a JSON value under (kind, entry)."""
    write_json(cache_dir() / kind / f"{entry}.json", value)


def load_evidence(entry: str):
    """The Evidence stored under `entry`, or None when absent or unreadable."""
    from .table import Evidence

    folder = cache_dir() / "evidence" / entry
    try:
        meta = json.loads((folder / "evidence.json").read_text())
        with xr.open_dataset(folder / "arrays.nc", engine="h5netcdf") as stored:
            arrays = stored.load()
        arrays["scored"] = arrays["scored"].astype(bool)
        conditions = pd.read_csv(folder / "conditions.csv")
        loss = pd.read_csv(folder / "loss.csv", index_col="diversity")
        complexity = pd.read_csv(folder / "complexity.csv", index_col="diversity")
        for frame in (loss, complexity):
            frame.columns.name = "strategy"
        return Evidence(task=from_settings(meta["task"]), settings=meta["settings"],
                        strategies=tuple(meta["strategies"]), output_kind=meta["output_kind"],
                        conditions=conditions, loss=loss, complexity=complexity, arrays=arrays,
                        cutoff_step=int(meta["cutoff_step"]), runs_hash=meta["runs_hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_evidence(entry: str, evidence) -> Path:
    """Write `evidence` under `entry`: built in a temporary directory, then renamed."""
    root = cache_dir() / "evidence"
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry}.", dir=root))
    try:
        evidence.arrays.to_netcdf(tmp / "arrays.nc", engine="h5netcdf")
        evidence.conditions.to_csv(tmp / "conditions.csv", index=False)
        evidence.loss.to_csv(tmp / "loss.csv")
        evidence.complexity.to_csv(tmp / "complexity.csv")
        write_json(tmp / "evidence.json", {
            "version": __version__, "task": evidence.task.settings, "settings": evidence.settings,
            "strategies": list(evidence.strategies), "output_kind": evidence.output_kind,
            "cutoff_step": evidence.cutoff_step, "runs_hash": evidence.runs_hash})
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
