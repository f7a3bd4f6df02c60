"""What a training run keeps between steps and on disk, shared by the single-run loop
(`bayesicl.transformers.train`) and the stacked ensemble (`bayesicl.transformers.ensemble`).

`checkpoint_steps` says when a run logs; a `TrainingRun` is the run's folder and writer, its
pool and evaluation sets; a `TrainState` is the resume state (model, AdamW moments, torch RNG)
saved after each checkpoint; `finish_run` writes the final model files. Also the AdamW
optimizer and the evaluation pass both loops use.

Files a run directory gains beyond the run store's own:

    RUN/state/resume.safetensors   model + AdamW moments + torch RNG, metadata {step, wall time}
                                   (written atomically after each checkpoint; removed at the end)
    RUN/model.safetensors          final weights (names of `Transformer.state_dict()`)
    RUN/model.json                 its ModelConfig, recipe, D, seed and step

>>> checkpoint_steps(30, 2)
[20, 30]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import json
import math
import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save_file

from .. import atomic
from ..errors import BayesiclError
from ..runs import RunWriter
from ..tasks import Task
from ..tasks import task as make_task
from .batches import default_workers
from .logger import BackgroundWriter
from .model import ModelConfig, Transformer
from .presets import Recipe

STATE_DIR = "state"
STATE_FILE = "resume.safetensors"
STATE_FORMAT = "bayesicl-train-state"
MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
#: Evaluation sequences per forward pass (bounds memory at the paper's 500 × T = 320).
EVAL_CHUNK = 128
#: AdamW constants shared by the single-run and ensemble loops (torch defaults).
BETAS = (0.9, 0.999)
EPS = 1e-8


def checkpoint_steps(steps: int, count: int, first: int = 20) -> list[int]:
    """`count` checkpoint steps evenly spaced in √N from `first` to `steps` (docs/model.md#reference-transformers):
    N_i = round((√first + i·(√steps − √first)/(count − 1))²), made strictly increasing by
    moving a step that rounds onto its predecessor one step later; the last is `steps`.

    >>> checkpoint_steps(100_000, 100)[:4], checkpoint_steps(100_000, 100)[-1]
    ([20, 58, 116, 194], 100000)
    >>> checkpoint_steps(25, 10)
    [20, 21, 22, 23, 24, 25]
    """
    if count <= 1 or first >= steps:
        return [int(steps)]
    roots = np.linspace(math.sqrt(first), math.sqrt(steps), count)
    out: list[int] = []
    for root in roots:
        step = int(round(float(root) ** 2))
        out.append(max(step, out[-1] + 1) if out else step)
    out = sorted({min(s, steps) for s in out})
    out[-1] = int(steps)
    return out


@dataclasses.dataclass
class TrainingRun:
    """One run being trained: its recipe, D, task, pool, evaluation sets and store writer."""

    recipe: Recipe
    diversity: int
    path: Path
    task: Task
    pool: Any
    eval_sets: dict[str, dict[str, np.ndarray]]
    writer: RunWriter

    @property
    def complete(self) -> bool:
        return bool(self.writer.meta.get("complete"))

    def model_config(self) -> ModelConfig:
        return self.recipe.model

    def log(self, step: int, outputs: Mapping[str, np.ndarray], losses: Sequence[torch.Tensor],
            background: BackgroundWriter | None = None) -> None:
        """Log a checkpoint with the losses of the steps since the last one (on `background`'s
        thread when given; `outputs` must then be arrays nothing else writes to). A
        checkpoint already on disk (a crash after it, before the resume state: the resumed
        run recomputes it identically) is kept, but its steps' losses are added to loss.csv
        where a crash left them out."""
        values = torch.stack(list(losses)).cpu().tolist() if losses else []
        pairs = list(zip(range(step - len(values) + 1, step + 1), values))
        job = functools.partial(self._write, step, outputs, pairs)
        if background is None:
            job()
        else:
            background.submit(str(self.path / "checkpoints" / f"step-{step:08d}.nc"), job)

    def _write(self, step: int, outputs: Mapping[str, np.ndarray], pairs: list[tuple[int, float]]) -> None:
        if step in self.writer.steps:
            self.writer.record_losses(pairs)
            return
        self.writer.log(step, outputs, loss=pairs)

    def close(self) -> None:
        """Release the run folder for other writers."""
        self.writer.close()


def run_config(recipe: Recipe) -> dict[str, Any]:
    """The config a run stores: the recipe's fields but its preset name."""
    return {k: v for k, v in recipe.to_dict().items() if k != "name"}


def open_training_run(recipe: Recipe, diversity: int, out: str | Path, *, resume: bool = False) -> TrainingRun:
    """Create the run folder `out`/`recipe.run_name(diversity)`, or reopen it when `resume`
    (refusing, in one line, a run with a different config or one that another process is
    writing). The device is checked first, so that a recipe that cannot run leaves nothing."""
    check_device(recipe.device)
    task = make_task(recipe.task, **recipe.task_params())
    pool = task.pool(diversity, seed=recipe.seed)
    eval_sets = task.eval_sets(pool, seed=recipe.seed, num_sequences=recipe.eval_sequences)
    path = Path(out) / recipe.run_name(diversity)
    writer = RunWriter(path, task, pool, eval_sets, diversity=diversity, seed=recipe.seed,
                       config=run_config(recipe), dtype=recipe.output_dtype, zipf=recipe.zipf,
                       device=recipe.device, exist_ok=resume)
    return TrainingRun(recipe, diversity, path, task, pool, eval_sets, writer)


def check_device(device: str) -> None:
    """Refuse, in one line, a device torch does not know or this machine does not have.

    >>> check_device("cpu")
    >>> check_device("tpu")
    Traceback (most recent call last):
    bayesicl.errors.BayesiclError: device 'tpu': not a torch device (cpu, cuda, cuda:N, mps)
    """
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise BayesiclError(f"device {device!r}: not a torch device (cpu, cuda, cuda:N, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise BayesiclError(f"device {device!r}: CUDA is not available on this machine")
    if kind == "cuda" and (torch.device(device).index or 0) >= torch.cuda.device_count():
        raise BayesiclError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BayesiclError(f"device {device!r}: MPS is not available on this machine")


# -- resume state ---------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainState:
    """Everything needed to continue a run after `step`: the parameters, AdamW's moments
    (keyed by parameter name) and step count, the torch RNG state and the wall time so far."""

    step: int
    parameters: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    adam_step: int
    rng: torch.Tensor
    wall_time_s: float


def save_state(path: str | Path, state: TrainState) -> None:
    """Write `state` as RUN/state/resume.safetensors, atomically (a crash leaves the old one)."""
    tensors = {f"parameters.{k}": v for k, v in state.parameters.items()}
    tensors.update({f"exp_avg.{k}": v for k, v in state.exp_avg.items()})
    tensors.update({f"exp_avg_sq.{k}": v for k, v in state.exp_avg_sq.items()})
    tensors["rng"] = state.rng
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {"format": STATE_FORMAT, "version": "1", "step": str(state.step),
                "adam_step": str(state.adam_step), "wall_time_s": repr(float(state.wall_time_s))}
    with atomic.atomic_path(Path(path) / STATE_DIR / STATE_FILE) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def snapshot(state: TrainState) -> TrainState:
    """`state` with every tensor copied to the CPU: training may change the originals while a
    background writer saves the copy."""
    def copy(group: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in group.items()}

    return dataclasses.replace(state, parameters=copy(state.parameters), exp_avg=copy(state.exp_avg),
                               exp_avg_sq=copy(state.exp_avg_sq), rng=state.rng.clone())


def save_state_later(background: BackgroundWriter, path: str | Path, state: TrainState) -> None:
    """Save a snapshot of `state` on `background`'s thread (after the jobs queued before it)."""
    copied = snapshot(state)
    background.submit(str(Path(path) / STATE_DIR / STATE_FILE), functools.partial(save_state, path, copied))


def load_state(path: str | Path) -> TrainState | None:
    """The resume state of the run at `path`, or None when it has none (safetensors only:
    nothing is unpickled; a FIFO or device in its place is refused)."""
    file = Path(path) / STATE_DIR / STATE_FILE
    if not os.path.lexists(file):
        return None
    data = atomic.read_regular(file)
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        metadata = header.get("__metadata__") or {}
        tensors = safetensors_load(data)
        if metadata.get("format") != STATE_FORMAT:
            raise ValueError("not a bayesicl training state")
        groups: dict[str, dict[str, torch.Tensor]] = {"parameters": {}, "exp_avg": {}, "exp_avg_sq": {}}
        for key, value in tensors.items():
            kind, _, name = key.partition(".")
            if kind in groups:
                groups[kind][name] = value
        return TrainState(int(metadata["step"]), groups["parameters"], groups["exp_avg"], groups["exp_avg_sq"],
                          int(metadata["adam_step"]), tensors["rng"], float(metadata["wall_time_s"]))
    except Exception as error:  # a damaged state cannot be trusted; say which file
        raise BayesiclError(f"{file}: unreadable training state ({error}); delete it to restart the run") from None


def load_run_state(run: TrainingRun) -> TrainState | None:
    """The resume state of `run`, refused in one line unless it belongs to it: saved at one
    of the recipe's checkpoint steps (≤ `steps`) whose checkpoint is on disk, holding a
    tensor of the model's shape for every parameter (and AdamW moment, once stepped)."""
    state = load_state(run.path)
    if state is None:
        return None
    file = run.path / STATE_DIR / STATE_FILE
    recipe = run.recipe
    if state.step not in checkpoint_steps(recipe.steps, recipe.checkpoints, recipe.first_checkpoint):
        raise BayesiclError(f"{file}: saved at step {state.step}, which is not a checkpoint step of this "
                            f"{recipe.steps}-step run; delete it to restart the run")
    if state.step not in run.writer.steps:
        raise BayesiclError(f"{file}: saved at step {state.step}, but the run has no checkpoint at that step; "
                            "delete it to restart the run")
    model = Transformer(run.model_config())
    need = {"parameters": {k: tuple(v.shape) for k, v in model.state_dict().items()}}
    if state.adam_step > 0:
        moments = {k: tuple(v.shape) for k, v in model.named_parameters()}
        need.update(exp_avg=moments, exp_avg_sq=moments)
    for name, shapes in need.items():
        group = getattr(state, name)
        for key in sorted(shapes.keys() | group.keys()):
            got = tuple(group[key].shape) if key in group else None
            if got != shapes.get(key):
                raise BayesiclError(f"{file}: {name}.{key} has shape {got}, the model needs "
                                    f"{shapes.get(key)}; delete it to restart the run")
    return state


def adam_state(optimizer: torch.optim.Optimizer, named: Mapping[str, torch.Tensor]) -> tuple[dict, dict, int]:
    """AdamW's first and second moments per parameter name, and its step count."""
    exp_avg, exp_avg_sq, step = {}, {}, 0
    for name, parameter in named.items():
        slot = optimizer.state.get(parameter, {})
        if slot:
            exp_avg[name], exp_avg_sq[name] = slot["exp_avg"], slot["exp_avg_sq"]
            step = int(slot["step"])
    return exp_avg, exp_avg_sq, step


def restore_adam(optimizer: torch.optim.Optimizer, named: Mapping[str, torch.Tensor],
                 exp_avg: Mapping[str, torch.Tensor], exp_avg_sq: Mapping[str, torch.Tensor], step: int) -> None:
    """Put saved moments back into `optimizer`, whose parameters are `named` in its order."""
    saved = optimizer.state_dict()
    saved["state"] = {i: {"step": torch.tensor(float(step)), "exp_avg": exp_avg[name].clone(),
                          "exp_avg_sq": exp_avg_sq[name].clone()}
                      for i, name in enumerate(named) if name in exp_avg}
    optimizer.load_state_dict(saved)


# -- the loop ---------------------------------------------------------------------------------------

def adamw(parameters: Any, recipe: Recipe) -> torch.optim.AdamW:
    """The recipe's AdamW, shared by the single-run and ensemble loops: the fused kernel on
    CUDA, the multi-tensor (foreach) one elsewhere."""
    cuda = torch.device(recipe.device).type == "cuda"
    return torch.optim.AdamW(parameters, lr=recipe.learning_rate, betas=BETAS, eps=EPS,
                             weight_decay=recipe.weight_decay, foreach=not cuda, fused=cuda or None)


_ALLOCATOR_TUNED = False


def keep_freed_memory(device: str | torch.device) -> None:
    """On a CPU under glibc, have malloc keep freed blocks of up to 1 GiB for reuse instead of
    returning them to the kernel (`mallopt` M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).

    A training step allocates and frees the same activation buffers (megabytes each) every
    step; by default glibc serves each from fresh `mmap`ed pages, and the page faults of
    touching them cost as much as the arithmetic (measured: a stacked 8-model step went from
    289 ms to 145 ms). The setting is process-wide, lasts for the process, and only changes
    how much freed memory the process keeps (at most its peak use). Elsewhere it does nothing.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or torch.device(device).type != "cpu":
        return
    _ALLOCATOR_TUNED = True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def data_workers(recipe: Recipe) -> int:
    """Worker processes for training batches: the recipe's `data_workers`, or the device's default."""
    return default_workers(recipe.device) if recipe.data_workers is None else recipe.data_workers


def to_device(arrays: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """NumPy arrays as tensors on `device` (copied asynchronously from pinned memory on CUDA)."""
    tensors = [torch.from_numpy(a) for a in arrays]
    if device.type == "cuda":
        return [t.pin_memory().to(device, non_blocking=True) for t in tensors]
    return [t.to(device) for t in tensors]


def evaluate(model: Transformer, inputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The model's outputs on each evaluation split, as float32 NumPy arrays."""
    model.eval()
    with torch.no_grad():
        out = {split: torch.cat([model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])
               .float().cpu().numpy() for split, x in inputs.items()}
    model.train()
    return out


def finish_run(run: TrainingRun, parameters: Mapping[str, torch.Tensor], wall_time_s: float,
               seconds_per_step: float, batched: int = 1) -> None:
    """Write the final model files, mark the run complete, drop the resume state."""
    config = run.model_config()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in parameters.items()}
    with atomic.atomic_path(run.path / MODEL_FILE) as tmp:
        save_file(tensors, tmp, metadata={"format": "bayesicl-transformer"})
    atomic.write_json(run.path / MODEL_JSON, {
        "format": "bayesicl-transformer", "version": 1, "model_config": dataclasses.asdict(config),
        "recipe": run_config(run.recipe), "diversity": run.diversity, "seed": run.recipe.seed,
        "step": run.recipe.steps, "num_parameters": sum(int(t.numel()) for t in tensors.values())})
    run.writer.finish(wall_time_s=wall_time_s, extra={
        "preset": run.recipe.name, "seconds_per_step": seconds_per_step, "ensemble_members": batched,
        "torch_version": torch.__version__})
    shutil.rmtree(run.path / STATE_DIR, ignore_errors=True)
