"""The on-disk schema of a logged run ("bayesicl-run", version 1) and its atomic writes.

A run is a directory (see docs/run-format.md for the full description)::

    RUN/run.json                        what the run is: task settings, D, seed, config, ...
    RUN/inputs.nc                       pool + evaluation inputs, written once
    RUN/checkpoints/step-00000020.nc    outputs on every split at one optimizer step
    RUN/loss.csv                        step,loss — the training-loss curve so far

This module holds what the writer and the reader must agree on: file names, the variables and
dimension names of each task family, and the rule that a file exists only once it is complete
(temp file in the same directory, fsync, `os.replace`). It never imports torch.

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=8, context_length=16)
>>> output_dims(task), output_sizes(task), output_kind(task)
(('position', 'token'), (16, 8), 'log_probs')
>>> checkpoint_name(20)
'step-00000020.nc'
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5netcdf
import numpy as np
import xarray as xr

from .. import atomic
from ..errors import BayesiclError
from ..families import family_spec
from ..tasks import Task

FORMAT = "bayesicl-run"
VERSION = 1

RUN_JSON = "run.json"
INPUTS = "inputs.nc"
CHECKPOINTS = "checkpoints"
LOSS_CSV = "loss.csv"
CHECKPOINT_PATTERN = re.compile(r"step-(\d+)\.nc")

#: Output dtypes a run may declare. float16 outputs are rounded to float16 and stored as
#: float32 (netCDF has no half type); shuffle + zlib makes them cost ~2 bytes a value anyway.
DTYPES = ("float32", "float16")
#: run.json fields that change after creation; they are left out of `Run.content_hash`.
VOLATILE_FIELDS = ("complete", "wall_time_s", "finished", "extra")
#: Config fields that say how a run was executed, not what was trained: they neither take
#: part in `Run.settings` nor stop a resumed run from reopening.
NON_SETTING_CONFIG_KEYS = ("diversity", "seed", "device", "data_workers", "resume", "out")

def output_dims(task: Task) -> tuple[str, ...]:
    """Dimension names of one sequence's outputs, the family spec's `output_dims`: urns
    (position, token), regression (position,), classification (label,)."""
    return tuple(family_spec(task).output_dims)


def output_sizes(task: Task) -> tuple[int, ...]:
    """Sizes of `output_dims(task)`: position = T, token = d (V for markov), label = L."""
    sizes = {"position": task.context_length,
             "token": getattr(task, "num_states", task.num_dims),
             "label": getattr(task, "num_labels", 0)}
    return tuple(sizes[name] for name in output_dims(task))


def output_kind(task: Task) -> str:
    """"predictions" (regression) or "log_probs" (a log-distribution over the last dim): the
    family spec's `output_kind`."""
    return family_spec(task).output_kind


def required_input_keys(task: Task) -> tuple[str, ...]:
    """Batch keys every evaluation split must carry: the inputs of docs/model.md#batches, the generating
    parameters the family's loss needs (theta, w, target) and task_index."""
    keys = dict.fromkeys([*task.input_keys, *family_spec(task).input_dims, "task_index"])
    return tuple(keys)


def input_dims(task: Task, key: str, ndim: int) -> tuple[str, ...]:
    """Dims of evaluation-input variable `key` holding an array of rank `ndim` (incl. split)."""
    if key == "task_index":
        return ("split", "sequence")
    named = family_spec(task).input_dims.get(key)
    if named is not None and len(named) == ndim - 2:
        return ("split", "sequence", *named)
    return ("split", "sequence", *(f"{key}_{i}" for i in range(1, ndim - 1)))


def pool_variables(task: Task, pool: Any) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The pool as netCDF variables {name: (dims, array)}; a tuple pool gives one per field."""
    named = family_spec(task).pool_dims
    fields = list(pool) if isinstance(pool, tuple) else [pool]
    names = (list(named) if named and len(named) == len(fields) else
             ["pool"] if len(fields) == 1 else
             [f"pool_{f}" for f in getattr(pool, "_fields", range(len(fields)))])
    out = {}
    for name, field in zip(names, fields):
        array = _storage_array(np.asarray(field))
        dims = named[name] if named and name in named and len(named[name]) == array.ndim else \
            ("task", *(f"{name}_{i}" for i in range(1, array.ndim)))
        out[name] = (dims, array)
    return out


def inputs_dataset(task: Task, pool: Any, eval_sets: Mapping[str, Mapping[str, Any]],
                   splits: list[str], identity: Mapping[str, Any]) -> xr.Dataset:
    """inputs.nc as a Dataset: pool variables (task, ...) and every batch key stacked over
    the splits (split, sequence, ...); `identity` (task, diversity, seed) goes in the attrs."""
    variables = dict(pool_variables(task, pool))
    for key in eval_sets[splits[0]]:
        stacked = np.stack([_storage_array(np.asarray(eval_sets[s][key])) for s in splits])
        variables[key] = (input_dims(task, key, stacked.ndim), stacked)
    attrs = file_attrs(identity)
    attrs["pool_variables"] = json.dumps([n for n in pool_variables(task, pool)])
    attrs["pool_kind"] = "tuple" if isinstance(pool, tuple) else "array"
    return xr.Dataset(variables, coords={"split": list(splits)}, attrs=attrs)


_PER_ITEM: dict[str, tuple[dict[str, int], dict[str, int]]] = {}


def values_per_item(task: Task) -> tuple[dict[str, int], dict[str, int]]:
    """({pool variable: values per task}, {batch key: values per sequence}) of `task`,
    measured on a pool of 2 tasks and one evaluation sequence (cached per settings)."""
    key = json.dumps(task.settings, sort_keys=True, default=str)
    if key not in _PER_ITEM:
        pool = task.pool(2, seed=0)
        per_task = {name: array.size // 2 for name, (_, array) in pool_variables(task, pool).items()}
        batch = task.eval_sets(pool, seed=0, num_sequences=1)["id"]
        per_sequence = {k: int(np.size(v)) for k, v in batch.items()}
        _PER_ITEM[key] = (per_task, per_sequence)
    return _PER_ITEM[key]


def input_limits(task: Task, meta: Mapping[str, Any]) -> dict[str, int]:
    """The variables inputs.nc holds for a run described by run.json `meta` — the pool
    variables and the family's evaluation keys — with the most values each may declare
    (diversity × per task; splits × eval_sequences × per sequence). Nothing else is read.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=3, context_length=4)
    >>> input_limits(task, {"diversity": 5, "splits": ["id", "ood"], "eval_sequences": 10})
    {'pool': 15, 'tokens': 100, 'theta': 60, 'task_index': 20, 'split': 2}
    """
    per_task, per_sequence = values_per_item(task)
    rows = len(meta["splits"]) * int(meta["eval_sequences"])
    limits = {name: int(meta["diversity"]) * size for name, size in per_task.items()}
    limits.update({key: rows * size for key, size in per_sequence.items()})
    limits.update({key: rows for key in required_input_keys(task) if key not in limits})
    limits["split"] = len(meta["splits"])
    return limits


def checkpoint_limits(task: Task, meta: Mapping[str, Any]) -> dict[str, int]:
    """The variables a checkpoint holds (outputs, split, step) and their declared sizes."""
    rows = len(meta["splits"]) * int(meta["eval_sequences"])
    return {"outputs": rows * int(np.prod(output_sizes(task))), "split": len(meta["splits"]), "step": 1}


def file_attrs(identity: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes every .nc file of a run carries, so that each file says which run it is."""
    return {"format": FORMAT, "version": VERSION,
            "task": json.dumps(identity["task"], sort_keys=True),
            "diversity": int(identity["diversity"]),
            "seed": json.dumps(identity["seed"])}


def _storage_array(array: np.ndarray) -> np.ndarray:
    # Integers on disk are int32 (token ids, labels, indices); floats keep float64 so that a
    # reloaded evaluation set reproduces the strategies' outputs exactly.
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array.astype(np.int32)
    return array.astype(np.float64)


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at `step` (zero-padded so that names sort by step)."""
    return f"step-{int(step):08d}.nc"


def netcdf_bytes(dataset: xr.Dataset, compress: tuple[str, ...] = ()) -> bytes:
    """Serialize `dataset` as netCDF-4 (h5netcdf); `compress` variables get shuffle + zlib."""
    encoding = {name: {"zlib": True, "complevel": 1, "shuffle": True} for name in compress}
    return bytes(dataset.to_netcdf(engine="h5netcdf", encoding=encoding))


def declared_sizes(path: Path, data: bytes, group: str | None = None) -> dict[str, int]:
    """{variable: number of values its header declares} of a netCDF file already read into
    `data` (root group or `group`), read from the headers alone: no variable is loaded."""
    try:
        with h5netcdf.File(io.BytesIO(data), "r") as handle:
            node = handle if group is None else handle.groups[group]
            return _sizes(node)
    except Exception as error:  # h5py raises many types for a truncated or corrupt file
        raise BayesiclError(f"{path}: not a readable netCDF file (truncated or corrupt?): {_first_line(error)}") from None


def read_netcdf(path: Path, data: bytes, limits: Mapping[str, int], group: str | None = None) -> xr.Dataset:
    """Load from `data` (the bytes of `path`) only the variables named in `limits`, each
    refused unless its header declares at most `limits[name]` values; every other variable
    is left unread. An absent variable is simply absent (callers name what they miss). Any
    decoding failure is a one-line `BayesiclError` naming `path`.

    The file is opened once, with h5netcdf, and the variables read are decoded by
    `xarray.decode_cf` as `xarray.open_dataset` would decode them (a fifth of its time per
    file: every checkpoint of a run is read this way, once for the evidence and once for the
    metrics).
    """
    try:
        with h5netcdf.File(io.BytesIO(data), "r") as handle:
            node = handle if group is None else handle.groups[group]
            declared = _sizes(node)
            for name, limit in limits.items():
                if declared.get(name, 0) > limit:
                    raise BayesiclError(f"{path}: variable {name!r} declares {declared[name]} values, more than "
                                        f"the {limit} the run's settings allow")
            variables = {name: xr.Variable(node.variables[name].dimensions, _text(node.variables[name][...]),
                                           dict(node.variables[name].attrs))
                         for name in limits if name in declared}
            attrs = dict(node.attrs)
        return xr.decode_cf(xr.Dataset(variables, attrs=attrs))
    except BayesiclError:
        raise
    except Exception as error:  # h5py raises many types for a truncated or corrupt file
        raise BayesiclError(f"{path}: not a readable netCDF file (truncated or corrupt?): {_first_line(error)}") from None


def _sizes(node) -> dict[str, int]:
    """{variable: number of values its header declares} of an open h5netcdf group."""
    return {name: int(np.prod(variable.shape, dtype=np.int64)) for name, variable in node.variables.items()}


def _text(values: np.ndarray) -> np.ndarray:
    """Variable-length strings as h5netcdf reads them (bytes objects) as a str array."""
    if values.dtype == object and values.size and isinstance(values.flat[0], bytes):
        return np.vectorize(bytes.decode, otypes=[str])(values).astype(str)
    return values


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete, never partial
    (a temp file beside it, fsync, then `os.replace`; see `bayesicl.atomic`)."""
    atomic.write_bytes(path, data)


def to_json(value: Any, what: str) -> Any:
    """`value` as plain JSON data (NumPy scalars/arrays converted, tuples become lists)."""
    def convert(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON-serializable")
    try:
        return json.loads(json.dumps(value, default=convert, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise BayesiclError(f"{what} must be JSON-serializable: {error}") from None


def json_bytes(value: Any) -> bytes:
    """run.json text: indented, keys sorted, UTF-8, newline-terminated."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def setting_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields that define the setting (all but `NON_SETTING_CONFIG_KEYS`)."""
    return {k: v for k, v in config.items() if k not in NON_SETTING_CONFIG_KEYS}


def content_hash(meta: Mapping[str, Any], file_digests: list[tuple[str, str]]) -> str:
    """sha256 over run.json without its volatile fields and the (name, sha256 of the bytes)
    of inputs.nc and of every checkpoint file, in step order."""
    digest = hashlib.sha256()
    stable = {k: v for k, v in meta.items() if k not in VOLATILE_FIELDS}
    digest.update(json.dumps(stable, sort_keys=True).encode())
    for name, file_digest in file_digests:
        digest.update(f"\0{name}\0{file_digest}".encode())
    return digest.hexdigest()
