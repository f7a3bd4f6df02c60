"""RunWriter: log a training run checkpoint by checkpoint, from any training loop.

The writer knows nothing about the model: a loop hands it the outputs on the fixed
evaluation sets at a step (NumPy arrays) and the training loss, and the writer stores them as
one new, complete checkpoint file. A crash at any moment leaves every checkpoint written so far
readable; constructing the writer again on the same directory with the same settings reopens
the run (resume).

>>> import tempfile, numpy as np, bayesicl as bic
>>> from bayesicl.runs import RunWriter, open_run
>>> task = bic.task("urns", num_dims=3, context_length=4)
>>> pool = task.pool(diversity=2, seed=0)
>>> evals = task.eval_sets(pool, seed=0, num_sequences=5)
>>> uniform = np.full((5, 4, 3), np.log(1 / 3))          # (sequence, position, token)
>>> with tempfile.TemporaryDirectory() as tmp:
...     w = RunWriter(f"{tmp}/run", task, pool, evals, seed=0)
...     w.log(20, {"id": uniform, "ood": uniform}, loss=1.1)
...     w.finish(wall_time_s=1.0)
...     run = open_run(f"{tmp}/run")
...     run.steps.tolist(), run.outputs.dims, run.complete
([20], ('step', 'split', 'sequence', 'position', 'token'), True)
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._version import __version__
from ..errors import BayesiclError
from ..seeds import seed_tuple
from ..tasks import Task
from . import format as fmt

#: |Σ exp(log p) − 1| allowed in a logged distribution (float16 rounding, fp16 softmax).
NORMALIZATION_TOLERANCE = 2e-2


class RunWriter:
    """Create (or reopen, to resume) the run directory `path` and log checkpoints into it.

    `task` is a bayesicl Task, `pool` its training pool (D tasks), `eval_sets` the fixed
    evaluation batches {"id", "ood"(, "iwl")} as from `task.eval_sets`. `diversity` defaults
    to the pool size, `config` is the preset/recipe (a JSON-able dict), `dtype` the storage
    precision of the outputs ("float32" or "float16"), `zipf` the task-sampling exponent.
    """

    def __init__(self, path: str | Path, task: Task, pool: Any,
                 eval_sets: Mapping[str, Mapping[str, Any]], *, diversity: int | None = None,
                 seed: int | Sequence[int] = 0, config: Mapping[str, Any] | None = None,
                 dtype: str = "float32", zipf: float | None = None, device: str | None = None):
        if not isinstance(task, Task):
            raise BayesiclError(f"RunWriter: task must be a bayesicl Task, got {type(task).__name__}")
        self.path = Path(path)
        self.task = task
        self.pool = task.validate_pool(pool)
        size = task.pool_size(self.pool)
        if diversity is None:
            diversity = size
        if isinstance(diversity, bool) or not isinstance(diversity, (int, np.integer)) or diversity != size:
            raise BayesiclError(f"RunWriter: diversity {diversity!r} does not match the pool size {size}")
        if dtype not in fmt.DTYPES:
            raise BayesiclError(f"RunWriter: dtype must be one of {fmt.DTYPES}, got {dtype!r}")
        if zipf is not None and not (np.isfinite(zipf) and zipf >= 0):
            raise BayesiclError(f"RunWriter: zipf must be None or a finite number ≥ 0, got {zipf!r}")
        seeds = seed_tuple(seed)
        config = fmt.to_json(dict(config or {}), "RunWriter: config")
        self.splits = _check_eval_sets(task, eval_sets)
        self.num_sequences = int(np.shape(eval_sets["id"][task.input_keys[0]])[0])
        self.dtype = dtype
        self.meta = {
            "format": fmt.FORMAT, "version": fmt.VERSION, "task": fmt.to_json(task.settings, "task settings"),
            "diversity": int(diversity), "seed": seeds[0] if len(seeds) == 1 else list(seeds),
            "zipf": None if zipf is None else float(zipf), "config": config,
            "output_kind": fmt.output_kind(task), "dtype": dtype,
            "eval_sequences": self.num_sequences, "splits": list(self.splits),
            "bayesicl_version": __version__,
            "device": str(device or config.get("device") or "unspecified"),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": None, "complete": False,
        }
        inputs = fmt.inputs_dataset(task, self.pool, {s: eval_sets[s] for s in self.splits},
                                    list(self.splits), self.meta)
        self._losses: dict[int, float] = {}
        if (self.path / fmt.RUN_JSON).exists():
            self._reopen(inputs)
        else:
            self._create(inputs)

    # -- creating / reopening ----------------------------------------------------------------
    def _create(self, inputs: xr.Dataset) -> None:
        checkpoints = self.path / fmt.CHECKPOINTS
        if checkpoints.is_dir() and any(checkpoints.glob("*.nc")):
            raise BayesiclError(f"{self.path / fmt.RUN_JSON}: missing, but {checkpoints} holds "
                                "checkpoints; refusing to write over a damaged run")
        checkpoints.mkdir(parents=True, exist_ok=True)
        # inputs.nc first: a run.json on disk promises that the inputs are complete.
        fmt.write_atomic(self.path / fmt.INPUTS, fmt.netcdf_bytes(inputs, tuple(inputs.data_vars)))
        fmt.write_atomic(self.path / fmt.RUN_JSON, fmt.json_bytes(self.meta))

    def _reopen(self, inputs: xr.Dataset) -> None:
        meta_path = self.path / fmt.RUN_JSON
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise BayesiclError(f"{meta_path}: cannot reopen the run, unreadable JSON: {error}") from None
        if not isinstance(old, dict) or old.get("format") != fmt.FORMAT or old.get("version") != fmt.VERSION:
            raise BayesiclError(f"{meta_path}: not a {fmt.FORMAT} version {fmt.VERSION} run; cannot reopen it")
        for key in ("task", "diversity", "seed", "zipf", "output_kind", "dtype", "eval_sequences", "splits"):
            if old.get(key) != self.meta[key]:
                raise BayesiclError(f"{meta_path}: the run exists with {key} = {old.get(key)!r}, "
                                    f"not {self.meta[key]!r}; use another directory")
        old_config = fmt.setting_config(old.get("config") or {})
        new_config = fmt.setting_config(self.meta["config"])
        if old_config != new_config:
            keys = sorted(k for k in old_config.keys() | new_config.keys()
                          if old_config.get(k) != new_config.get(k))
            raise BayesiclError(f"{meta_path}: the run exists with a different config "
                                f"(fields {keys}); use another directory")
        inputs_path = self.path / fmt.INPUTS
        if not inputs_path.exists():
            raise BayesiclError(f"{inputs_path}: missing; cannot reopen the run")
        stored = fmt.read_netcdf(inputs_path, inputs_path.read_bytes())
        for name, variable in inputs.variables.items():
            if name not in stored.variables or not np.array_equal(stored[name].values, variable.values):
                raise BayesiclError(f"{inputs_path}: variable {name!r} differs from the pool or "
                                    "evaluation sets given; use another directory")
        self.meta = old
        loss_path = self.path / fmt.LOSS_CSV
        if loss_path.exists():
            try:
                table = pd.read_csv(loss_path)
                self._losses = {int(s): float(v) for s, v in zip(table["step"], table["loss"])}
            except Exception as error:
                raise BayesiclError(f"{loss_path}: unreadable loss curve: {error}") from None

    # -- logging -------------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Steps of the checkpoints already on disk, sorted."""
        found = []
        for file in (self.path / fmt.CHECKPOINTS).glob("*.nc"):
            match = fmt.CHECKPOINT_PATTERN.fullmatch(file.name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def log(self, step: int, outputs: Mapping[str, Any],
            loss: float | Sequence[tuple[int, float]] | None = None) -> None:
        """Store the outputs on every evaluation split at optimizer step `step` as a new
        checkpoint file, and append `loss` (this step's training loss, or the (step, loss)
        pairs since the last log) to loss.csv. Outputs per split: urns/markov (B, T, d)
        log-probabilities, regression (B, T) predictions, classification (B, L) log-probs.
        Nothing is written unless everything is valid; an existing step is never rewritten."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise BayesiclError(f"RunWriter.log: step must be a non-negative integer, got {step!r}")
        step = int(step)
        target = self.path / fmt.CHECKPOINTS / fmt.checkpoint_name(step)
        if step in self.steps:
            raise BayesiclError(f"{target}: step {step} is already logged; checkpoints are never rewritten")
        values = self._check_outputs(outputs, target)
        new_losses = _loss_pairs(loss, step, target)

        attrs = fmt.file_attrs(self.meta)
        attrs.update(dtype=self.dtype, output_kind=self.meta["output_kind"])
        if new_losses:
            attrs["train_loss"] = new_losses[max((s for s in new_losses if s <= step), default=max(new_losses))]
        checkpoint = xr.Dataset(
            {"outputs": (("split", "sequence", *fmt.output_dims(self.task)), values)},
            coords={"split": list(self.splits), "step": np.int64(step)}, attrs=attrs)
        fmt.write_atomic(target, fmt.netcdf_bytes(checkpoint, ("outputs",)))

        loss_path = self.path / fmt.LOSS_CSV
        if new_losses or not loss_path.exists():
            self._losses.update(new_losses)
            lines = ["step,loss"] + [f"{s},{_shortest(self._losses[s])}" for s in sorted(self._losses)]
            fmt.write_atomic(loss_path, ("\n".join(lines) + "\n").encode())

    def _check_outputs(self, outputs: Mapping[str, Any], target: Path) -> np.ndarray:
        if not isinstance(outputs, Mapping) or set(outputs) != set(self.splits):
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise BayesiclError(f"{target}: outputs must be a dict with splits {list(self.splits)}, got {got}")
        shape = (self.num_sequences, *fmt.output_sizes(self.task))
        arrays = []
        for split in self.splits:
            array = _as_numpy(outputs[split])
            if array.shape != shape:
                raise BayesiclError(f"{target}: outputs[{split!r}] has shape {array.shape}, expected "
                                    f"{shape} {('sequence', *fmt.output_dims(self.task))}")
            with np.errstate(over="ignore"):  # overflow to ±inf is reported just below
                stored = array.astype(np.float16 if self.dtype == "float16" else np.float32)
            if not np.all(np.isfinite(stored)):
                raise BayesiclError(f"{target}: outputs[{split!r}] contains NaN or infinite values "
                                    f"(after rounding to {self.dtype})")
            if self.meta["output_kind"] == "log_probs":
                _check_normalized(stored, f"{target}: outputs[{split!r}]")
            arrays.append(stored.astype(np.float32))
        return np.stack(arrays)

    def finish(self, wall_time_s: float | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """Mark the run complete in run.json (atomically), with its wall time and any `extra`
        JSON-able facts (merged into run.json["extra"])."""
        meta = dict(self.meta)
        meta["complete"] = True
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if wall_time_s is not None:
            if not np.isfinite(wall_time_s) or wall_time_s < 0:
                raise BayesiclError(f"RunWriter.finish: wall_time_s must be ≥ 0, got {wall_time_s!r}")
            meta["wall_time_s"] = float(wall_time_s)
        if extra:
            meta["extra"] = {**(meta.get("extra") or {}), **fmt.to_json(dict(extra), "RunWriter.finish: extra")}
        fmt.write_atomic(self.path / fmt.RUN_JSON, fmt.json_bytes(meta))
        self.meta = meta


def _check_eval_sets(task: Task, eval_sets: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    if not isinstance(eval_sets, Mapping) or "id" not in eval_sets or "ood" not in eval_sets:
        raise BayesiclError("RunWriter: eval_sets must be a dict with at least the splits 'id' and 'ood'")
    unknown = sorted(set(eval_sets) - set(task.splits))
    if unknown:
        raise BayesiclError(f"RunWriter: unknown evaluation split(s) {unknown}; "
                            f"{task.family} has {list(task.splits)}")
    splits = tuple(s for s in task.splits if s in eval_sets)
    keys = set(eval_sets["id"])
    sizes = set()
    for split in splits:
        batch = eval_sets[split]
        missing = [k for k in fmt.required_input_keys(task) if k not in batch]
        if missing:
            raise BayesiclError(f"RunWriter: eval_sets[{split!r}] lacks key(s) {missing}")
        if set(batch) != keys:
            raise BayesiclError(f"RunWriter: eval_sets[{split!r}] has keys {sorted(batch)}, "
                                f"but eval_sets['id'] has {sorted(keys)}")
        try:
            task.validate_batch(batch)
        except BayesiclError as error:
            raise BayesiclError(f"RunWriter: eval_sets[{split!r}]: {error}") from None
        sizes.add(int(np.shape(batch[task.input_keys[0]])[0]))
    if len(sizes) != 1:
        raise BayesiclError("RunWriter: every evaluation split must have the same number of "
                            f"sequences, got {sorted(sizes)}")
    return splits


def _as_numpy(value: Any) -> np.ndarray:
    """float64 NumPy copy of an array-like; a torch tensor (on any device, any dtype, with or
    without grad) is recognized by duck typing, so this module never imports torch."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BayesiclError(f"RunWriter.log: outputs must be numeric arrays: {error}") from None


def _check_normalized(log_probs: np.ndarray, what: str) -> None:
    total = np.exp(log_probs.astype(np.float64)).sum(axis=-1)
    worst = float(np.max(np.abs(total - 1.0)))
    if worst > NORMALIZATION_TOLERANCE:
        raise BayesiclError(f"{what} are not log-probabilities: Σ exp over the last dim is off "
                            f"from 1 by {worst:.3g} (pass log_softmax, not logits)")


def _shortest(value: float) -> str:
    """Text for a loss value: 9 significant digits identify a float32 loss uniquely (and halve
    loss.csv); any other float64 is written with repr, which reads back exactly."""
    short = f"{value:.9g}"
    return short if float(short) == value or float(np.float32(value)) == value else repr(value)


def _loss_pairs(loss: Any, step: int, target: Path) -> dict[int, float]:
    if loss is None:
        return {}
    if hasattr(loss, "detach"):
        loss = _as_numpy(loss)
    if np.ndim(loss) == 0:
        pairs = [(step, loss)]
    else:
        try:
            pairs = [(s, v) for s, v in loss]
        except (TypeError, ValueError):
            raise BayesiclError(f"{target}: loss must be a float or a sequence of (step, loss) pairs") from None
    out = {}
    for s, v in pairs:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise BayesiclError(f"{target}: loss step {s!r} is not a non-negative integer")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise BayesiclError(f"{target}: loss at step {s} is not a number: {v!r}") from None
        if not np.isfinite(v):
            raise BayesiclError(f"{target}: training loss at step {s} is {v} (diverged?)")
        out[int(s)] = v
    return out
