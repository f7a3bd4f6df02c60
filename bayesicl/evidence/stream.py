"""Token-level outputs, one checkpoint (or a bounded block of them) at a time.

Building evidence reads the transformer's outputs checkpoint by checkpoint and keeps only
per-condition statistics (`bayesicl.evidence.statistics`); with more than two strategies
the metrics of a fit read them once more the same way (`bayesicl.metrics`; with two, the
metrics are tabulated in the same pass). What yields the outputs is a *source*:

- `RunSource`: logged runs. Runs given as a folder are opened lazily (`open_lazy`): run.json,
  inputs.nc and the list of checkpoint files are validated up front, each checkpoint is read
  and validated (by the run reader's own checks) only when it is needed, and dropped after.
- `ArraySource`: arrays already in memory (`evidence_from_arrays`).

Both yield, per run, the strategies' outputs (S, split, sequence, position, output) and
blocks of (condition rows, transformer outputs (c, split, sequence, position, output)),
float32. A block holds at most `BLOCK_BYTES` of outputs (at least one checkpoint), so the
memory of a pass is bounded by one block plus one run's strategy outputs, whatever the
number of checkpoints; the statistics work through a block in chunks of sequences
(`bayesicl.evidence.statistics.sequence_chunk`), so its temporaries do not grow with the
number of sequences either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BayesiclError
from ..families import family_spec
from ..runs import format as fmt
from ..runs import reader
from ..runs.reader import SkippedFolderWarning, find_runs, skipped_folders

#: Bytes of float32 transformer outputs per block of checkpoints (the working set of a pass).
#: The objective's tables cost one pass over what the strategies give at every node per block
#: (`bayesicl.evidence.statistics.kl_sums`), so larger blocks are faster; this bounds the
#: memory of a pass (about 4× this, with the block's float64 copy) whatever the number of
#: checkpoints.
BLOCK_BYTES = 128 << 20


def block_size(per_checkpoint_floats: int, budget: int = BLOCK_BYTES) -> int:
    """Checkpoints per block: as many as `budget` bytes of float32 outputs hold, at least one.

    >>> block_size(1 << 20, budget=16 << 20), block_size(1 << 30, budget=16 << 20)
    (4, 1)
    """
    return max(1, int(budget) // max(4 * int(per_checkpoint_floats), 1))


@dataclasses.dataclass(frozen=True, eq=False)
class LazyRun:
    """A validated run whose checkpoint outputs stay on disk until read (`checkpoint`).

    Has what `bayesicl.runs.Run` has except ``outputs``: path, task, diversity, seed, config,
    meta, pool, inputs, steps, content_hash, splits and `settings`; ``files`` are the
    checkpoint files in step order and ``digests`` their sha256 (part of the content hash).
    """

    path: Path
    task: Any
    diversity: int
    seed: int | tuple[int, ...]
    config: dict
    meta: dict
    pool: Any
    inputs: dict
    steps: np.ndarray
    files: tuple[Path, ...]
    digests: tuple[str, ...]
    content_hash: str

    @property
    def settings(self) -> dict[str, Any]:
        """As `bayesicl.runs.Run.settings`."""
        return {"task": dict(self.meta["task"]), "zipf": self.meta.get("zipf"),
                "config": fmt.setting_config(self.config)}

    @property
    def splits(self) -> list[str]:
        return [str(s) for s in self.meta["splits"]]

    def checkpoint(self, index: int) -> np.ndarray:
        """The outputs of checkpoint `index` (split, sequence, ...) in the stored precision,
        validated as `open_run` validates them; refuses a file changed since it was opened."""
        file, step = self.files[index], int(self.steps[index])
        read = reader._read_checkpoint(file, step, self.meta, self.task)
        if read["digest"] != self.digests[index]:
            raise BayesiclError(f"{file}: changed while the evidence was being built; build it again")
        return read["values"]


def open_lazy(path: str | Path) -> LazyRun:
    """Open the run at `path` without loading its checkpoints' outputs (see `LazyRun`).

    Checks run.json, inputs.nc, the checkpoint file names and loss.csv as `open_run` does;
    each checkpoint's contents are checked when `LazyRun.checkpoint` reads it.
    """
    path = Path(path)
    meta, task = reader._read_meta(path)
    inputs = reader._read_inputs(path / fmt.INPUTS, meta, task)
    files = reader._checkpoint_files(path / fmt.CHECKPOINTS, True, [])
    reader._read_loss(path / fmt.LOSS_CSV)
    files.sort()
    digests = tuple(hashlib.sha256(reader._read_bytes(file)).hexdigest() for _, file in files)
    content_hash = fmt.content_hash(meta, [(fmt.INPUTS, inputs["digest"])]
                                    + [(file.name, d) for (_, file), d in zip(files, digests)])
    return LazyRun(path=path, task=task, diversity=meta["diversity"],
                   seed=meta["seed"] if isinstance(meta["seed"], int) else tuple(meta["seed"]),
                   config=meta["config"], meta=meta, pool=inputs["pool"], inputs=inputs["batches"],
                   steps=np.array([s for s, _ in files], dtype=np.int64),
                   files=tuple(f for _, f in files), digests=digests, content_hash=content_hash)


def open_lazy_runs(directory: str | Path) -> list[LazyRun]:
    """Every run below `directory`, opened lazily (as `bayesicl.runs.open_runs` finds them)."""
    paths = find_runs(directory)
    if not paths:
        raise BayesiclError(f"{directory}: no runs found (no {fmt.RUN_JSON} in it or below it)")
    for line in skipped_folders(directory):
        warnings.warn(line, SkippedFolderWarning, stacklevel=3)
    return [open_lazy(p) for p in paths]


def run_splits(run) -> list[str]:
    """The split names of a `Run` or `LazyRun`, in storage order."""
    if isinstance(run, LazyRun):
        return run.splits
    return [str(s) for s in run.outputs.coords["split"].values]


def as_evidence_layout(values: np.ndarray, output_dims: Sequence[str]) -> np.ndarray:
    """Stored outputs (…, split, sequence, *output_dims) as (…, split, sequence, position,
    output), from the family's output dims (`bayesicl.families.FamilySpec.output_dims`).

    >>> as_evidence_layout(np.zeros((2, 3, 5)), ("position",)).shape        # predictions
    (2, 3, 5, 1)
    >>> as_evidence_layout(np.zeros((2, 3, 4)), ("label",)).shape           # one query
    (2, 3, 1, 4)
    """
    if "position" not in output_dims:
        return values[..., None, :]                    # the query position
    if len(output_dims) == 1:
        return values[..., None]                       # output axis of length 1
    return values


class RunSource:
    """Outputs of logged runs (`Run` or `LazyRun`) and the strategies' outputs per run.

    ``strategy_outputs`` is a list of per-run arrays (S, split, B, P, O) float32, or a
    callable r → that array (read from the evidence cache when it is needed).
    """

    def __init__(self, runs: Sequence[Any], splits: Sequence[str], strategy_outputs, targets=None,
                 block_bytes: int | None = None):
        self.runs = list(runs)
        self.splits = [str(s) for s in splits]
        self._strategy = strategy_outputs
        self._targets = targets
        self.block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
        offsets = np.cumsum([0] + [len(r.steps) for r in self.runs])
        self._rows = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(self.runs))]

    @property
    def num_runs(self) -> int:
        return len(self.runs)

    def strategy(self, r: int) -> np.ndarray:
        """Run r's strategy outputs (S, split, B, P, O) float32."""
        return self._strategy(r) if callable(self._strategy) else self._strategy[r]

    def target(self, r: int) -> np.ndarray | None:
        """Run r's regression targets (split, B, P, 1) float32, or None."""
        if self._targets is None:
            return None
        return self._targets(r) if callable(self._targets) else self._targets[r]

    def blocks(self, r: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(condition rows, outputs (c, split, B, P, O) float32) of run r, block by block."""
        run = self.runs[r]
        rows = self._rows[r]
        output_dims = family_spec(run.task).output_dims
        if isinstance(run, LazyRun):
            stored = run_splits(run)
            take = [stored.index(s) for s in self.splits]
            start = 0
            while start < rows.size:
                first = as_evidence_layout(np.asarray(run.checkpoint(start)[take], dtype=np.float32), output_dims)
                size = block_size(first.size, self.block_bytes)
                block = [first] + [as_evidence_layout(np.asarray(run.checkpoint(i)[take], dtype=np.float32), output_dims)
                                   for i in range(start + 1, min(start + size, rows.size))]
                yield rows[start:start + len(block)], np.stack(block)
                start += len(block)
            return
        outputs = run.outputs.transpose("step", "split", "sequence", ...).sel(split=self.splits)
        per_checkpoint = int(np.prod(outputs.shape[1:]))
        size = block_size(per_checkpoint, self.block_bytes)
        for start in range(0, rows.size, size):
            values = np.asarray(outputs.values[start:start + size], dtype=np.float32)
            yield rows[start:start + size], as_evidence_layout(values, output_dims)


class ArraySource:
    """Outputs held in memory: transformer (C, split, B, P, O), strategies (R, S, split, B,
    P, O), the run of each condition (C,) and optional targets (R, split, B, P, 1)."""

    def __init__(self, transformer: np.ndarray, strategy_outputs: np.ndarray, run: np.ndarray,
                 splits: Sequence[str], target: np.ndarray | None = None, block_bytes: int | None = None):
        self.transformer = transformer
        self.strategy_outputs = strategy_outputs
        self.run = np.asarray(run)
        self.splits = [str(s) for s in splits]
        self.target_outputs = target
        self.block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes

    @property
    def num_runs(self) -> int:
        return self.strategy_outputs.shape[0]

    def strategy(self, r: int) -> np.ndarray:
        return self.strategy_outputs[r]

    def target(self, r: int) -> np.ndarray | None:
        return None if self.target_outputs is None else self.target_outputs[r]

    def blocks(self, r: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rows = np.flatnonzero(self.run == r)
        size = block_size(int(np.prod(self.transformer.shape[1:])), self.block_bytes)
        for start in range(0, rows.size, size):
            part = rows[start:start + size]
            yield part, self.transformer[part]


def save_array(array: np.ndarray) -> bytes:
    """An array as .npy bytes (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_array(data: bytes) -> np.ndarray:
    """The array of `save_array` bytes (pickles refused)."""
    return np.load(io.BytesIO(data), allow_pickle=False)
