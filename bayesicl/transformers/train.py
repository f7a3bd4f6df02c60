"""The training loop of one reference transformer, logged through the run store (docs/model.md#reference-transformers, docs/run-format.md).

A run trains on batches `task.training_batch(pool, batch_size, seed, step)` — a pure function
of (seed, step) — from a model initialized from the seed alone, so a run is deterministic
given its recipe, D and seed. At each checkpoint (`checkpoint_steps`: evenly spaced in √N
from step 20 to the last step) it logs the model's outputs on the fixed ID/OOD(/IWL)
evaluation sets and the per-step training losses through `RunWriter`, and only then saves the
resume state; both are written by a background thread (`bayesicl.transformers.logger`), in
that order, while training goes on. A finished run holds `model.safetensors` + `model.json` for interpretability
work (`load_model`). The run's folder, its resume state and final files are
`bayesicl.transformers.checkpoints`'s, shared with the stacked ensemble.

>>> import tempfile
>>> from bayesicl.transformers.presets import load_recipe
>>> recipe = load_recipe("urns-small", {"steps": 30, "checkpoints": 2, "eval_sequences": 4,
...                                     "width": 8, "mlp_width": 16, "batch_size": 4})
>>> checkpoint_steps(30, 2)
[20, 30]
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = train_run(recipe, diversity=4, out=tmp, progress=False)
...     from bayesicl.runs import open_run
...     open_run(path).steps.tolist(), load_model(path).config.width
([20, 30], 8)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..errors import BayesiclError
from .batches import TrainingBatches
from .checkpoints import (EVAL_CHUNK, MODEL_FILE, MODEL_JSON, STATE_DIR, STATE_FILE,  # noqa: F401
                          TrainingRun, TrainState, adam_state, adamw, checkpoint_steps, data_workers,
                          evaluate, finish_run, keep_freed_memory, load_run_state, open_training_run,
                          restore_adam, save_state_later, to_device)
from .ensemble import train_ensemble
from .logger import BackgroundWriter
from .model import ModelConfig, Transformer, init_parameters, inputs_from_batch
from .presets import Recipe

def train_run(recipe: Recipe, diversity: int, out: str | Path, *, resume: bool = False,
              progress: bool = True, stop_after: int | None = None) -> Path:
    """Train and log one run at diversity D = `diversity` under folder `out`; returns the run
    path. With `resume`, continue an interrupted run from its last saved state (a finished run
    is left as is). `stop_after` ends training after the first checkpoint at or beyond that
    step, as a crash would (for tests of resume)."""
    run = open_training_run(recipe, diversity, out, resume=resume)
    try:
        return _train(run, recipe, progress, stop_after)
    finally:
        run.close()


def _train(run: TrainingRun, recipe: Recipe, progress: bool, stop_after: int | None) -> Path:
    if run.complete:
        return run.path
    device = torch.device(recipe.device)
    keep_freed_memory(device)
    model = init_parameters(Transformer(run.model_config()), recipe.seed).to(device)
    named = dict(model.named_parameters())
    optimizer = adamw(named.values(), recipe)
    state = load_run_state(run)
    start, wall_time = 0, 0.0
    if state is not None:
        model.load_state_dict(state.parameters)
        restore_adam(optimizer, named, state.exp_avg, state.exp_avg_sq, state.adam_step)
        torch.set_rng_state(state.rng)
        start, wall_time = state.step, state.wall_time_s
    eval_inputs = {split: inputs_from_batch(run.task, batch, device) for split, batch in run.eval_sets.items()}
    pending = [s for s in checkpoint_steps(recipe.steps, recipe.checkpoints, recipe.first_checkpoint) if s > start]

    bar = tqdm(total=recipe.steps, initial=start, disable=not progress, desc=run.path.name,
               unit="step", dynamic_ncols=True)
    losses: list[torch.Tensor] = []
    batches = TrainingBatches(run.task, [run.pool], recipe, start + 1, workers=data_workers(recipe))
    began = time.perf_counter()
    with batches, BackgroundWriter() as background:
        for step in range(start + 1, recipe.steps + 1):
            inputs, targets = to_device(batches.take(step), device)
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate_at(step)
            loss = model.loss(inputs[0], targets[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            losses.append(loss.detach())
            bar.update()
            if pending and step == pending[0]:
                pending.pop(0)
                run.log(step, evaluate(model, eval_inputs), losses, background)
                bar.set_postfix(loss=f"{losses[-1].item():.4f}")
                losses = []
                exp_avg, exp_avg_sq, adam_step = adam_state(optimizer, named)
                save_state_later(background, run.path, TrainState(
                    step, dict(model.state_dict()), exp_avg, exp_avg_sq, adam_step, torch.get_rng_state(),
                    wall_time + time.perf_counter() - began))
                if stop_after is not None and step >= stop_after and pending:
                    background.close()
                    bar.close()
                    return run.path
    bar.close()
    finish_run(run, model.state_dict(), wall_time + time.perf_counter() - began,
               seconds_per_step=(time.perf_counter() - began) / max(recipe.steps - start, 1))
    return run.path


def load_model(path: str | Path, device: str = "cpu") -> Transformer:
    """The final model of a finished run folder (model.safetensors + model.json)."""
    path = Path(path)
    try:
        meta = json.loads((path / MODEL_JSON).read_text())
        config = ModelConfig(**meta["model_config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BayesiclError(f"{path / MODEL_JSON}: cannot read the model config ({error})") from None
    model = Transformer(config)
    model.load_state_dict(load_file(str(path / MODEL_FILE)))
    return model.to(device).eval()


def train_runs(recipe: Recipe, diversities: Sequence[int], out: str | Path, *, resume: bool = False,
               batched: bool = False, progress: bool = True) -> list[Path]:
    """Train one run per diversity: one after another, or as one stacked ensemble (`batched`,
    see ensemble.py), which gives the same runs."""
    diversities = list(dict.fromkeys(int(d) for d in diversities))
    if batched and len(diversities) > 1:
        return train_ensemble(recipe, diversities, out, resume=resume, progress=progress)
    return [train_run(recipe, d, out, resume=resume, progress=progress) for d in diversities]
