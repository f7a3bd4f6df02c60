"""Training batches of one or several runs, step after step, optionally made ahead of time by
worker processes.

The batch of member e at step N is `task.training_batch(pool_e, batch_size, seed, N)`, a pure
function of its arguments, so it can be made anywhere and in any order. With `workers` > 0,
worker processes make the batches of the next steps while the model trains on the current
one, and `TrainingBatches` hands them out in step order; the numbers are the same with or
without workers. On a GPU this keeps the accelerator fed: making one paper-size urns batch
takes about 0.4 ms of Python and NumPy, which for an ensemble of 11 runs is more than the GPU
needs for the step. On a CPU the cores are busy with the model, so the default is no workers.

This module imports NumPy only (no torch), so that worker processes start quickly.

>>> import bayesicl as bic
>>> from bayesicl.transformers.presets import load_recipe
>>> recipe = load_recipe("urns-small", {"batch_size": 4})
>>> task = bic.task("urns", **recipe.task_params())
>>> pools = [task.pool(4, seed=0), task.pool(16, seed=0)]
>>> with TrainingBatches(task, pools, recipe, first_step=1) as batches:
...     inputs, targets = batches.take(1)
>>> inputs.shape, targets.shape                          # (members, batch, positions)
((2, 4, 64), (2, 4, 64))
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import BayesiclError
from ..families import family_spec
from ..tasks import Task

#: Most worker processes used when `data_workers` is left to the default on a GPU.
MAX_AUTO_WORKERS = 8


def transformer_layout(task: Task) -> str:
    """The read-in/read-out layout of the task family's reference transformer (its spec's
    `transformer`: "tokens", "pairs" or "query"; `bayesicl.families.TRANSFORMER_LAYOUTS`).

    >>> import bayesicl as bic
    >>> transformer_layout(bic.task("regression")), transformer_layout(bic.task("markov"))
    ('pairs', 'tokens')
    """
    layout = family_spec(task).transformer
    if layout is None:
        raise BayesiclError(f"no reference transformer for task family {task.family!r} (its spec "
                            "names no transformer layout)")
    return layout


def input_array(task: Task, batch: Mapping[str, Any]) -> np.ndarray:
    """The model input for a batch (docs/model.md#batches), as NumPy, by the family's layout:
    "tokens" (urns, markov) token ids (B, T) (start token and x_1..x_{T-1}); "pairs"
    (regression) (B, 2T, d) interleaved x and (y, 0..0); "query" (classification)
    (B, T, d+L+1) rows (x, onehot label, query flag)."""
    layout = transformer_layout(task)
    if layout == "tokens":
        return np.asarray(batch["tokens"])[:, :-1].astype(np.int64)
    if layout == "pairs":
        x = np.asarray(batch["x"], dtype=np.float32)                # (B, T, d)
        y = np.asarray(batch["y"], dtype=np.float32)                # (B, T)
        B, T, d = x.shape
        tokens = np.zeros((B, T, 2, d), dtype=np.float32)
        tokens[:, :, 0] = x
        tokens[:, :, 1, 0] = y
        return tokens.reshape(B, 2 * T, d)
    if layout == "query":
        x = np.asarray(batch["x"], dtype=np.float32)                # (B, T, d)
        labels = np.asarray(batch["labels"])                        # (B, T), last = −1
        L = task.num_labels
        B, T, d = x.shape
        tokens = np.zeros((B, T, d + L + 1), dtype=np.float32)
        tokens[..., :d] = x
        np.put_along_axis(tokens[:, :-1, d:d + L], labels[:, :-1, None], 1.0, axis=-1)
        tokens[:, -1, -1] = 1.0
        return tokens
    raise BayesiclError(f"no transformer read-in for task {task.family!r}")


def target_array(task: Task, batch: Mapping[str, Any]) -> np.ndarray:
    """Training targets as NumPy: the next tokens x_1..x_T (B, T) ("tokens"); y (B, T)
    ("pairs"); the query label (B,) ("query")."""
    layout = transformer_layout(task)
    if layout == "tokens":
        return np.asarray(batch["tokens"])[:, 1:].astype(np.int64)
    if layout == "pairs":
        return np.asarray(batch["y"], dtype=np.float32)
    return np.asarray(batch["target"]).astype(np.int64)


def default_workers(device: str) -> int:
    """Worker processes when a recipe leaves `data_workers` unset: none on a CPU; with CUDA,
    the machine's cores less two (for the training process), at most `MAX_AUTO_WORKERS`."""
    if not str(device).startswith("cuda"):
        return 0
    return max(0, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 2))


class TrainingBatches:
    """The stacked training inputs and targets, (members, batch, ...), of the runs whose pools
    are `pools`, for steps `first_step`, `first_step` + 1, ... up to `recipe.steps`.
    Steps must be taken in order. Use as a context manager (or call `close`) to stop workers."""

    def __init__(self, task: Task, pools: Sequence[Any], recipe: Any, first_step: int, *,
                 workers: int = 0, ahead: int | None = None):
        self._settings = (task, list(pools), recipe.batch_size, recipe.seed, recipe.zipf)
        self._next, self._last = int(first_step), int(recipe.steps)
        self._executor = None
        self._pending: deque = deque()
        if workers > 0 and self._next <= self._last:
            self._executor, self._job = _executor(workers, self._settings)
            self._ahead = ahead or 4 * workers
            self._submitted = self._next - 1
            self._fill()

    def take(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of step `step`, which must be the next one."""
        if step != self._next:
            raise BayesiclError(f"training batches: asked for step {step}, the next one is {self._next}")
        self._next += 1
        if self._executor is None:
            return make_batch(*self._settings, step)
        arrays = self._pending.popleft().result()
        self._fill()
        return arrays

    def _fill(self) -> None:
        while len(self._pending) < self._ahead and self._submitted < self._last:
            self._submitted += 1
            self._pending.append(self._executor.submit(self._job, self._submitted))

    def close(self) -> None:
        """Stop the workers (pending batches are dropped)."""
        if self._executor is not None:
            for future in self._pending:
                future.cancel()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._pending.clear()

    def __enter__(self) -> TrainingBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_batch(task: Task, pools: Sequence[Any], batch_size: int, seed: Any, zipf: float | None,
               step: int) -> tuple[np.ndarray, np.ndarray]:
    """The stacked inputs and targets of every member at `step`."""
    batches = [task.training_batch(pool, batch_size, seed, step, zipf=zipf) for pool in pools]
    return (np.stack([input_array(task, b) for b in batches]),
            np.stack([target_array(task, b) for b in batches]))


def _executor(workers: int, settings: tuple) -> tuple[Any, Any]:
    """Forked worker processes, as torch's DataLoader uses: they only run NumPy, never CUDA,
    and a fork needs no `if __name__ == "__main__"` guard in the user's script (spawned ones
    would). Threads instead where forking is unsafe: no fork on this platform, or JAX (which
    runs threads of its own) already started in this process — e.g. a fit earlier in the same
    notebook. NumPy's random fills release the GIL, so threads still overlap with training."""
    if "fork" in multiprocessing.get_all_start_methods() and not _jax_started():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_install, initargs=settings), _make
    return ThreadPoolExecutor(workers), functools.partial(make_batch, *settings)


def _jax_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):     # another JAX version: assume it has started
        return True


_WORKER: tuple | None = None


def _install(*settings: Any) -> None:
    global _WORKER
    _WORKER = settings


def _make(step: int) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER is not None
    return make_batch(*_WORKER, step)
