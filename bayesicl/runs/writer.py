"""RunWriter: log a training run checkpoint by checkpoint, from any training loop.

The writer knows nothing about the model: a loop hands it the outputs on the fixed
evaluation sets at a step (NumPy arrays) and the training loss, and the writer stores them as
one new, complete checkpoint file. A crash at any moment leaves every checkpoint written so far
readable; constructing the writer again on the same directory with the same settings reopens
the run (resume).

A run folder has one writer at a time: the writer holds an exclusive lock on RUN/writer.lock
(`fcntl.flock`, released by the kernel when the process dies, so a crash never leaves it
stuck) until `close()`; a second writer is refused in one line. Before every write the
writer checks that run.json and inputs.nc are still the ones it opened, so a run whose
settings were changed under it (by a process the lock cannot see, e.g. on another NFS
client) is refused at the next write instead of being mixed.

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
...     w.close()
...     run = open_run(f"{tmp}/run")
...     run.steps.tolist(), run.outputs.dims, run.complete
([20], ('step', 'split', 'sequence', 'position', 'token'), True)
"""

from __future__ import annotations

import datetime
import io
import json
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import atomic
from .._version import __version__
from ..errors import BayesiclError
from ..seeds import seed_tuple
from ..tasks import Task
from . import format as fmt

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the settings check before each write remains
    fcntl = None

#: The lock file a writer holds for as long as it is open.
LOCK_FILE = "writer.lock"
#: |Σ exp(log p) − 1| allowed in a logged distribution (float16 rounding, fp16 softmax).
NORMALIZATION_TOLERANCE = 2e-2


class RunWriter:
    """Create (or reopen, to resume) the run directory `path` and log checkpoints into it.

    `task` is a bayesicl Task, `pool` its training pool (D tasks), `eval_sets` the fixed
    evaluation batches {"id", "ood"(, "iwl")} as from `task.eval_sets`. `diversity` defaults
    to the pool size, `config` is the preset/recipe (a JSON-able dict), `dtype` the storage
    precision of the outputs ("float32" or "float16"), `zipf` the task-sampling exponent.
    `exist_ok=False` refuses a run that already exists instead of reopening it (decided
    under the lock, so two processes creating the same run cannot both succeed).
    """

    def __init__(self, path: str | Path, task: Task, pool: Any,
                 eval_sets: Mapping[str, Mapping[str, Any]], *, diversity: int | None = None,
                 seed: int | Sequence[int] = 0, config: Mapping[str, Any] | None = None,
                 dtype: str = "float32", zipf: float | None = None, device: str | None = None,
                 exist_ok: bool = True):
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
        self._lock_fd: int | None = None
        self._lock()
        try:
            if os.path.lexists(self.path / fmt.RUN_JSON):
                if not exist_ok:
                    raise BayesiclError(f"{self.path}: the run already exists; pass --resume to continue "
                                        "it or choose another --out")
                self._reopen(inputs)
            else:
                self._create(inputs)
            self._opened = self._signature()
        except BaseException:
            self.close()
            raise

    # -- ownership -----------------------------------------------------------------------------
    def _lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BayesiclError(f"{self.path}: exists and is not a folder") from None
        if fcntl is None:
            return
        lock = self.path / LOCK_FILE
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BayesiclError(f"{self.path}: the run is being written by another process (pid {holder}); "
                                "wait for it to finish, or write into another --out") from None
        except OSError:    # a file system without locks: the check before each write remains
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._release = weakref.finalize(self, os.close, fd)   # a dropped writer frees its run

    def close(self) -> None:
        """Release the run folder (the writer cannot log any more); idempotent."""
        if self._lock_fd is not None:
            self._release()
            self._lock_fd = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _signature(self) -> tuple[Any, ...]:
        """What must not change under an open writer: run.json's settings and inputs.nc's file."""
        meta = _read_meta_json(self.path / fmt.RUN_JSON)
        stable = {k: v for k, v in meta.items() if k not in fmt.VOLATILE_FIELDS}
        info = os.stat(self.path / fmt.INPUTS)
        return stable, (info.st_ino, info.st_size, info.st_mtime_ns)

    def _check_owner(self, target: Path) -> None:
        if fcntl is not None and self._lock_fd is None:
            raise BayesiclError(f"{target}: this writer was closed; reopen the run to log into it")
        try:
            now = self._signature()
        except (OSError, BayesiclError) as error:
            raise BayesiclError(f"{self.path}: the run changed under this writer ({error}); "
                                "refusing to write into it") from None
        if now != self._opened:
            keys = sorted(k for k in now[0].keys() | self._opened[0].keys()
                          if now[0].get(k) != self._opened[0].get(k))
            what = f"run.json fields {keys}" if keys else f"{fmt.INPUTS} was rewritten"
            raise BayesiclError(f"{self.path}: the run's settings changed since this writer opened it "
                                f"({what}); another training wrote here; refusing to mix them")

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
        old = _read_meta_json(meta_path)
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
        if not os.path.lexists(inputs_path):
            raise BayesiclError(f"{inputs_path}: missing; cannot reopen the run")
        stored = fmt.read_netcdf(inputs_path, atomic.read_regular(inputs_path),
                                 {name: variable.size for name, variable in inputs.variables.items()})
        for name, variable in inputs.variables.items():
            if name not in stored.variables or not np.array_equal(stored[name].values, variable.values):
                raise BayesiclError(f"{inputs_path}: variable {name!r} differs from the pool or "
                                    "evaluation sets given; use another directory")
        self.meta = old
        loss_path = self.path / fmt.LOSS_CSV
        if os.path.lexists(loss_path):
            try:
                table = pd.read_csv(io.BytesIO(atomic.read_regular(loss_path)))
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
        Nothing is written unless everything is valid; an existing step is never rewritten.
        loss.csv is written before the checkpoint, so that a crash between the two leaves
        losses ahead of the checkpoints (rewritten identically on resume), never behind."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise BayesiclError(f"RunWriter.log: step must be a non-negative integer, got {step!r}")
        step = int(step)
        target = self.path / fmt.CHECKPOINTS / fmt.checkpoint_name(step)
        if step in self.steps:
            raise BayesiclError(f"{target}: step {step} is already logged; checkpoints are never rewritten")
        values = self._check_outputs(outputs, target)
        new_losses = _loss_pairs(loss, step, target)
        self._check_owner(target)

        attrs = fmt.file_attrs(self.meta)
        attrs.update(dtype=self.dtype, output_kind=self.meta["output_kind"])
        if new_losses:
            attrs["train_loss"] = new_losses[max((s for s in new_losses if s <= step), default=max(new_losses))]
        checkpoint = xr.Dataset(
            {"outputs": (("split", "sequence", *fmt.output_dims(self.task)), values)},
            coords={"split": list(self.splits), "step": np.int64(step)}, attrs=attrs)
        data = fmt.netcdf_bytes(checkpoint, ("outputs",))
        if new_losses or not (self.path / fmt.LOSS_CSV).exists():
            self._write_losses(new_losses)
        fmt.write_atomic(target, data)

    def record_losses(self, loss: Sequence[tuple[int, float]]) -> None:
        """Add to loss.csv the (step, loss) pairs of steps it lacks (a resumed run that
        recomputes steps whose checkpoint a crash left on disk without their losses)."""
        pairs = _loss_pairs(loss, 0, self.path / fmt.LOSS_CSV)
        missing = {s: v for s, v in pairs.items() if s not in self._losses}
        if missing:
            self._check_owner(self.path / fmt.LOSS_CSV)
            self._write_losses(missing)

    def _write_losses(self, new_losses: Mapping[int, float]) -> None:
        losses = {**self._losses, **new_losses}
        lines = ["step,loss"] + [f"{s},{_shortest(losses[s])}" for s in sorted(losses)]
        fmt.write_atomic(self.path / fmt.LOSS_CSV, ("\n".join(lines) + "\n").encode())
        self._losses = losses

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
        self._check_owner(self.path / fmt.RUN_JSON)
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
        self._opened = self._signature()


def _read_meta_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(atomic.read_regular(path, 1 << 26).decode())
    except (OSError, ValueError) as error:
        raise BayesiclError(f"{path}: cannot reopen the run, unreadable JSON: {error}") from None
    if not isinstance(meta, dict):
        raise BayesiclError(f"{path}: cannot reopen the run: not a JSON object")
    return meta


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
