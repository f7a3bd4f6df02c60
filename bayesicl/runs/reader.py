"""Open logged runs, validating every file: a problem is a one-line `BayesiclError` that
names the file and what is wrong, never a traceback and never a silent fit (docs/run-format.md).

>>> import tempfile, numpy as np, bayesicl as bic
>>> from bayesicl.runs import RunWriter, open_runs
>>> task = bic.task("regression", num_dims=2, context_length=3)
>>> with tempfile.TemporaryDirectory() as tmp:
...     for D in (4, 2):
...         pool = task.pool(D, seed=0)
...         evals = task.eval_sets(pool, seed=0, num_sequences=6)
...         w = RunWriter(f"{tmp}/D{D}", task, pool, evals)
...         for step in (20, 80):
...             w.log(step, {"id": np.zeros((6, 3)), "ood": np.zeros((6, 3))}, loss=0.5)
...     runs = open_runs(tmp)
...     [(r.diversity, r.steps.tolist()) for r in runs], runs[0].outputs.sizes["step"]
([(2, [20, 80]), (4, [20, 80])], 2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import atomic
from ..errors import BayesiclError, BayesiclWarning
from ..seeds import seed_tuple
from ..tasks import Task, from_settings
from . import format as fmt
from .writer import NORMALIZATION_TOLERANCE

#: run.json and loss.csv larger than this are refused unread (a loss row is ~30 bytes).
MAX_TEXT_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One validated logged run: what was trained, its inputs and its outputs at every step.

    `outputs` has dims (step, split, sequence, ...) — urns (…, position, token) log-probs,
    regression (…, position) predictions, classification (…, label) log-probs — in the
    run's storage dtype; `inputs[split]` is the batch (docs/model.md#batches; with theta/w/task_index) the
    outputs answer; `loss` is the training-loss curve (columns step, loss).
    """

    path: Path
    task: Task
    diversity: int
    seed: int | tuple[int, ...]
    config: dict[str, Any]
    meta: dict[str, Any]
    pool: Any
    inputs: dict[str, dict[str, np.ndarray]]
    steps: np.ndarray
    outputs: xr.DataArray
    loss: pd.DataFrame
    content_hash: str
    complete: bool
    #: training loss recorded in each checkpoint file (NaN where none was given), by step
    train_loss: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        """What defines the setting: task settings, Zipf exponent and the setting-defining
        config fields (everything but diversity, seed and how it was executed). Runs can be
        fitted together only when their settings are equal."""
        return {"task": dict(self.meta["task"]), "zipf": self.meta.get("zipf"),
                "config": fmt.setting_config(self.config)}

    def dataset(self) -> xr.Dataset:
        """The whole run as one xarray Dataset: inputs, `outputs` (step, split, ...),
        `train_loss` (step) at each checkpoint, the loss curve `loss` (loss_step); run.json
        in the attrs (nested values as JSON strings, so the Dataset can be saved as netCDF)."""
        splits = [str(s) for s in self.outputs["split"].values]
        identity = {"task": self.task.settings, "diversity": self.diversity, "seed": self.seed}
        dataset = fmt.inputs_dataset(self.task, self.pool, self.inputs, splits, identity)
        del dataset.attrs["pool_variables"], dataset.attrs["pool_kind"]
        dataset["outputs"] = self.outputs
        train_loss = np.full(len(self.steps), np.nan) if self.train_loss is None else self.train_loss
        dataset["train_loss"] = ("step", train_loss)
        dataset["loss"] = xr.DataArray(self.loss["loss"].to_numpy(), dims="loss_step",
                                       coords={"loss_step": self.loss["step"].to_numpy()})
        dataset.attrs = {k: v if isinstance(v, (str, int, float)) and not isinstance(v, bool)
                         else json.dumps(v) for k, v in self.meta.items()}
        return dataset


def open_run(path: str | Path) -> Run:
    """Open and validate the run directory `path`; any problem raises a one-line
    `BayesiclError` naming the file (see `open_runs` for an example)."""
    run, _ = _scan(Path(path), strict=True)
    return run


def open_runs(directory: str | Path) -> list[Run]:
    """Every run below `directory` (any folder holding a run.json, searched recursively; or
    `directory` itself if it is a run), validated and sorted by (diversity, seed)."""
    paths = find_runs(directory)
    if not paths:
        raise BayesiclError(f"{directory}: no runs found (no {fmt.RUN_JSON} in it or below it)")
    for line in skipped_folders(directory):
        warnings.warn(line, SkippedFolderWarning, stacklevel=2)
    runs = [open_run(p) for p in paths]
    return sorted(runs, key=lambda r: (r.diversity, seed_tuple(r.seed), str(r.path)))


class SkippedFolderWarning(BayesiclWarning):
    """A folder below a runs directory that looks like a run but is not read."""


def find_runs(directory: str | Path) -> list[Path]:
    """Run directories at or below `directory` (a run's own subfolders are not searched;
    symbolic links to folders are not followed — `skipped_folders` names them)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BayesiclError(f"{directory}: not a directory")
    found = []
    for root, dirs, files in os.walk(directory):
        if fmt.RUN_JSON in files:
            found.append(Path(root))
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def skipped_folders(directory: str | Path) -> list[str]:
    """One line per folder below `directory` that `find_runs` skips although it looks like a
    run: a symbolic link to a folder holding a run.json (links are not followed, so that a
    link cannot make a run count twice or loop), or a folder with checkpoints/ or inputs.nc
    but no run.json (an unfinished creation or a damaged run).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "half" / "checkpoints").mkdir(parents=True)
    >>> [line.split(": ", 1)[1] for line in skipped_folders(root)]
    ['skipped: holds checkpoints/ or inputs.nc but no run.json']
    """
    directory = Path(directory)
    lines = []
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        if fmt.RUN_JSON in files:
            dirs[:] = []
            continue
        if fmt.INPUTS in files or fmt.CHECKPOINTS in dirs:
            lines.append(f"{here}: skipped: holds {fmt.CHECKPOINTS}/ or {fmt.INPUTS} but no {fmt.RUN_JSON}")
            dirs[:] = []
            continue
        for name in sorted(dirs):
            if (here / name).is_symlink() and (here / name / fmt.RUN_JSON).exists():
                lines.append(f"{here / name}: skipped: a symbolic link to a run folder "
                             "(links are not followed; open the run through its real path)")
        dirs.sort()
    return lines


# -- validation ----------------------------------------------------------------------------------

def _scan(path: Path, strict: bool) -> tuple[Run | None, list[str]]:
    """Validate every file of the run at `path`. strict: raise at the first problem;
    otherwise return (None, problems) where problems lists each bad file once."""
    problems: list[str] = []

    def attempt(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except BayesiclError as error:
            if strict:
                raise
            problems.append(str(error))
            return None

    loaded = attempt(lambda: _read_meta(path))
    if loaded is None:
        return None, problems
    meta, task = loaded
    inputs = attempt(lambda: _read_inputs(path / fmt.INPUTS, meta, task))
    files = attempt(lambda: _checkpoint_files(path / fmt.CHECKPOINTS, strict, problems))
    checkpoints = []
    for step, file in files or []:
        checkpoint = attempt(lambda: _read_checkpoint(file, step, meta, task))
        if checkpoint is not None:
            checkpoints.append(checkpoint)
    loss = attempt(lambda: _read_loss(path / fmt.LOSS_CSV))
    if problems:
        return None, problems
    checkpoints.sort(key=lambda c: c["step"])
    steps = np.array([c["step"] for c in checkpoints], dtype=np.int64)
    dims = ("step", "split", "sequence", *fmt.output_dims(task))
    outputs = xr.DataArray(np.stack([c["values"] for c in checkpoints]), dims=dims, name="outputs",
                           coords={"step": steps, "split": list(meta["splits"]),
                                   "diversity": meta["diversity"]})
    run = Run(
        path=path, task=task, diversity=meta["diversity"],
        seed=meta["seed"] if isinstance(meta["seed"], int) else tuple(meta["seed"]),
        config=meta["config"], meta=meta, pool=inputs["pool"], inputs=inputs["batches"],
        steps=steps, outputs=outputs, loss=loss,
        content_hash=fmt.content_hash(meta, [(fmt.INPUTS, inputs["digest"])]
                                      + [(c["name"], c["digest"]) for c in checkpoints]),
        complete=meta["complete"],
        train_loss=np.array([c["train_loss"] for c in checkpoints], dtype=np.float64))
    return run, problems


def _read_bytes(file: Path, max_bytes: int | None = None) -> bytes:
    try:
        return atomic.read_regular(file, max_bytes)
    except FileNotFoundError:
        raise BayesiclError(f"{file}: missing") from None


def _read_meta(path: Path) -> tuple[dict[str, Any], Task]:
    file = path / fmt.RUN_JSON
    if not path.is_dir():
        raise BayesiclError(f"{path}: not a directory")
    try:
        meta = json.loads(_read_bytes(file, MAX_TEXT_BYTES).decode())
    except (UnicodeDecodeError, ValueError) as error:
        raise BayesiclError(f"{file}: corrupt JSON: {error}") from None
    if not isinstance(meta, dict):
        raise BayesiclError(f"{file}: corrupt: expected a JSON object")
    if meta.get("format") != fmt.FORMAT:
        raise BayesiclError(f"{file}: not a {fmt.FORMAT} file (format = {meta.get('format')!r})")
    if meta.get("version") != fmt.VERSION:
        raise BayesiclError(f"{file}: unknown version {meta.get('version')!r} "
                            f"(this bayesicl reads version {fmt.VERSION})")
    number_or_null = (int, float, type(None))
    expected = {"task": dict, "diversity": int, "seed": (int, list), "config": dict, "zipf": number_or_null,
                "output_kind": str, "dtype": str, "complete": bool, "eval_sequences": int,
                "splits": list, "bayesicl_version": str, "device": str, "created": str,
                "wall_time_s": number_or_null}
    for key, kind in expected.items():
        if key not in meta:
            raise BayesiclError(f"{file}: missing field {key!r}")
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise BayesiclError(f"{file}: field {key!r} has the wrong type ({type(meta[key]).__name__})")
    try:
        task = from_settings(meta["task"])
        seed_tuple(meta["seed"])
    except BayesiclError as error:
        raise BayesiclError(f"{file}: {error}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as error:   # e.g. "concentration": null
        raise BayesiclError(f"{file}: invalid task settings {meta['task']}: {error}") from None
    zipf = meta["zipf"]
    if zipf is not None and (isinstance(zipf, bool) or not np.isfinite(zipf) or zipf < 0):
        raise BayesiclError(f"{file}: zipf must be null or a finite number ≥ 0, got {zipf!r}")
    if meta["diversity"] < 1 or meta["eval_sequences"] < 1:
        raise BayesiclError(f"{file}: diversity and eval_sequences must be ≥ 1")
    if meta["dtype"] not in fmt.DTYPES:
        raise BayesiclError(f"{file}: dtype {meta['dtype']!r} is not one of {fmt.DTYPES}")
    if meta["output_kind"] != fmt.output_kind(task):
        raise BayesiclError(f"{file}: output_kind {meta['output_kind']!r} does not match the "
                            f"{task.family} task ({fmt.output_kind(task)!r})")
    splits = meta["splits"]
    if "id" not in splits or "ood" not in splits or not set(splits) <= set(task.splits) \
            or len(set(splits)) != len(splits):
        raise BayesiclError(f"{file}: splits {splits} must include 'id' and 'ood' "
                            f"and be among {list(task.splits)}")
    return meta, task


def _check_identity(file: Path, attrs: dict[str, Any], meta: dict[str, Any]) -> None:
    """A .nc file must say it is a version-1 file of this very run (settings mismatch)."""
    if attrs.get("format") != fmt.FORMAT:
        raise BayesiclError(f"{file}: not a {fmt.FORMAT} file (format attribute = {attrs.get('format')!r})")
    if attrs.get("version") != fmt.VERSION:
        raise BayesiclError(f"{file}: unknown version {attrs.get('version')!r} "
                            f"(this bayesicl reads version {fmt.VERSION})")
    for key, value in fmt.file_attrs(meta).items():
        if attrs.get(key) != value:
            raise BayesiclError(f"{file}: settings mismatch with {fmt.RUN_JSON}: {key} is "
                                f"{attrs.get(key)!r} here, {value!r} in {fmt.RUN_JSON}")


def _read_inputs(file: Path, meta: dict[str, Any], task: Task) -> dict[str, Any]:
    data = _read_bytes(file)
    dataset = fmt.read_netcdf(file, data, fmt.input_limits(task, meta))
    _check_identity(file, dataset.attrs, meta)
    _check_splits(file, dataset, meta)
    try:
        pool_names = json.loads(dataset.attrs.get("pool_variables", ""))
    except (TypeError, ValueError):
        raise BayesiclError(f"{file}: missing or corrupt attribute 'pool_variables'") from None
    if not isinstance(pool_names, list) or not pool_names \
            or not set(map(str, pool_names)) <= set(fmt.values_per_item(task)[0]):
        raise BayesiclError(f"{file}: attribute 'pool_variables' must list the pool variables of a "
                            f"{task.family} run, got {pool_names!r}")
    missing = [n for n in [*pool_names, *fmt.required_input_keys(task)] if n not in dataset.variables]
    if missing:
        raise BayesiclError(f"{file}: missing field(s) {missing}")
    fields = [dataset[n].values for n in pool_names]
    try:
        pool = task.validate_pool(tuple(fields) if dataset.attrs.get("pool_kind") == "tuple" else fields[0])
    except BayesiclError as error:
        raise BayesiclError(f"{file}: pool: {error}") from None
    if task.pool_size(pool) != meta["diversity"]:
        raise BayesiclError(f"{file}: settings mismatch with {fmt.RUN_JSON}: the pool holds "
                            f"{task.pool_size(pool)} tasks, diversity is {meta['diversity']}")
    keys = [n for n, v in dataset.data_vars.items() if v.dims[:2] == ("split", "sequence")]
    for key in fmt.required_input_keys(task):
        if key not in keys:
            raise BayesiclError(f"{file}: variable {key!r} has dims {dataset[key].dims}, "
                                "expected (split, sequence, ...)")
    if dataset.sizes["sequence"] != meta["eval_sequences"]:
        raise BayesiclError(f"{file}: {dataset.sizes['sequence']} sequences per split, "
                            f"{fmt.RUN_JSON} says {meta['eval_sequences']}")
    batches = {}
    for i, split in enumerate(meta["splits"]):
        batch = {key: dataset[key].values[i] for key in keys}
        try:
            task.validate_batch(batch)
        except BayesiclError as error:
            raise BayesiclError(f"{file}: split {split!r}: {error}") from None
        for key, value in batch.items():
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise BayesiclError(f"{file}: {key} of split {split!r} contains NaN or infinite values")
        index = batch["task_index"]
        if np.any(index < 0) or (split != "ood" and np.any(index >= meta["diversity"])):
            raise BayesiclError(f"{file}: task_index of split {split!r} points outside the pool")
        batches[split] = batch
    return {"digest": hashlib.sha256(data).hexdigest(), "pool": pool, "batches": batches}


def _checkpoint_files(directory: Path, strict: bool, problems: list[str]) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        raise BayesiclError(f"{directory}: missing (no checkpoints)")
    files, seen = [], {}
    for file in sorted(directory.glob("*.nc")):
        match = fmt.CHECKPOINT_PATTERN.fullmatch(file.name)
        problem = None
        if match is None:
            problem = f"{file}: unexpected file name (checkpoints are named step-NNNNNNNN.nc)"
        elif int(match.group(1)) in seen:
            problem = f"{file}: duplicate step {int(match.group(1))} (also in {seen[int(match.group(1))].name})"
        if problem:
            if strict:
                raise BayesiclError(problem)
            problems.append(problem)
            continue
        seen[int(match.group(1))] = file
        files.append((int(match.group(1)), file))
    if not files and not problems:
        raise BayesiclError(f"{directory}: no checkpoints (nothing logged yet)")
    return files


def _read_checkpoint(file: Path, step: int, meta: dict[str, Any], task: Task) -> dict[str, Any]:
    data = _read_bytes(file)
    dataset = fmt.read_netcdf(file, data, fmt.checkpoint_limits(task, meta))
    _check_identity(file, dataset.attrs, meta)
    if dataset.attrs.get("dtype") != meta["dtype"]:
        raise BayesiclError(f"{file}: settings mismatch with {fmt.RUN_JSON}: dtype is "
                            f"{dataset.attrs.get('dtype')!r} here, {meta['dtype']!r} in {fmt.RUN_JSON}")
    if "outputs" not in dataset.data_vars:
        raise BayesiclError(f"{file}: missing field 'outputs'")
    if "step" not in dataset.coords or dataset["step"].ndim != 0:
        raise BayesiclError(f"{file}: missing field 'step' (a scalar coordinate)")
    if not np.issubdtype(dataset["step"].dtype, np.integer):
        raise BayesiclError(f"{file}: step {dataset['step'].values} is not an integer")
    if int(dataset["step"].values) != step:
        raise BayesiclError(f"{file}: holds step {int(dataset['step'].values)}, but its name says {step}")
    outputs = dataset["outputs"]
    dims = ("split", "sequence", *fmt.output_dims(task))
    shape = (len(meta["splits"]), meta["eval_sequences"], *fmt.output_sizes(task))
    if outputs.dims != dims or outputs.shape != shape:
        raise BayesiclError(f"{file}: outputs have shape {outputs.shape} {outputs.dims}, "
                            f"expected {shape} ({', '.join(dims)})")
    _check_splits(file, dataset, meta)
    if not np.issubdtype(outputs.dtype, np.floating):
        raise BayesiclError(f"{file}: outputs have dtype {outputs.dtype}, expected floating point")
    values = outputs.values
    bad = ~np.isfinite(values)
    if bad.any():
        split = meta["splits"][int(np.argwhere(bad)[0][0])]
        raise BayesiclError(f"{file}: outputs contain {int(bad.sum())} NaN/inf value(s) "
                            f"(first in split {split!r})")
    if meta["output_kind"] == "log_probs":
        worst = float(np.max(np.abs(np.exp(values.astype(np.float64)).sum(axis=-1) - 1.0)))
        if worst > NORMALIZATION_TOLERANCE:
            raise BayesiclError(f"{file}: outputs are not log-probabilities "
                                f"(Σ exp is off from 1 by {worst:.3g})")
    train_loss = dataset.attrs.get("train_loss", np.nan)
    if isinstance(train_loss, (str, bytes, bool, np.bool_)) or np.ndim(train_loss) != 0 \
            or not np.issubdtype(np.asarray(train_loss).dtype, np.number):
        raise BayesiclError(f"{file}: attribute train_loss must be a number, got {train_loss!r}")
    # Kept in the run's storage precision (float16 values are exact: they were rounded on write).
    values = values.astype(np.float16 if meta["dtype"] == "float16" else np.float32)
    return {"step": step, "name": file.name, "digest": hashlib.sha256(data).hexdigest(), "values": values,
            "train_loss": float(train_loss)}


def _read_loss(file: Path) -> pd.DataFrame:
    if not os.path.lexists(file):
        return pd.DataFrame({"step": np.zeros(0, np.int64), "loss": np.zeros(0)})
    data = _read_bytes(file, MAX_TEXT_BYTES)
    try:
        table = pd.read_csv(io.BytesIO(data))
    except Exception as error:
        raise BayesiclError(f"{file}: unreadable CSV: {str(error).splitlines()[0]}") from None
    if list(table.columns) != ["step", "loss"]:
        raise BayesiclError(f"{file}: columns are {list(table.columns)}, expected ['step', 'loss']")
    if len(table) == 0:
        return pd.DataFrame({"step": np.zeros(0, np.int64), "loss": np.zeros(0)})
    if not pd.api.types.is_integer_dtype(table["step"]):
        raise BayesiclError(f"{file}: column 'step' must hold integers")
    if not pd.api.types.is_numeric_dtype(table["loss"]) or not np.all(np.isfinite(table["loss"])):
        raise BayesiclError(f"{file}: column 'loss' must hold finite numbers")
    if table["step"].duplicated().any() or not table["step"].is_monotonic_increasing:
        raise BayesiclError(f"{file}: steps must be increasing without duplicates")
    return table.astype({"step": np.int64, "loss": np.float64})


def _check_splits(file: Path, dataset: xr.Dataset, meta: dict[str, Any]) -> None:
    splits = [str(s) for s in dataset["split"].values] if "split" in dataset.coords else []
    if splits != meta["splits"]:
        raise BayesiclError(f"{file}: splits {splits} differ from {meta['splits']} in {fmt.RUN_JSON}")
