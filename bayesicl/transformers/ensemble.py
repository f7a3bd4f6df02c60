"""Several runs of one recipe (different diversities D) trained as one stacked ensemble.

The E members share the architecture, the seed and therefore the initial weights; member e
trains on `task.training_batch(pool_e, batch_size, seed, step)` exactly as its separate run
would. Their parameters are stacked along a leading member axis, (E, *shape), and
`stacked.stacked_outputs` runs the E forward passes as batched matmuls. The loss
summed over members has, for member e, the gradient of member e's own loss; gradients are
clipped per member (the rule of `clip_grad_norm_`, applied to each member's slice), and AdamW
on the stacked tensors is per-member AdamW, because every AdamW operation is elementwise. So
each member follows its separate run up to float rounding, while the per-step Python and
kernel-launch overhead is paid once for the E members.

Each member writes its own run store and resume state in the format of `train.train_run`, so
a member can be resumed alone, and an ensemble can resume runs started separately.

>>> import tempfile
>>> from bayesicl.transformers.presets import load_recipe
>>> recipe = load_recipe("urns-small", {"steps": 25, "checkpoints": 2, "eval_sequences": 4,
...                                     "width": 8, "mlp_width": 16, "batch_size": 4})
>>> with tempfile.TemporaryDirectory() as tmp:
...     paths = train_ensemble(recipe, [4, 16], tmp, progress=False)
...     [p.name for p in paths]
['urns-d8-T64-D0004-w16-s0', 'urns-d8-T64-D0016-w16-s0']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .batches import TrainingBatches
from .logger import BackgroundWriter
from .model import Transformer, init_parameters, inputs_from_batch
from .presets import Recipe
from .stacked import stacked_loss, stacked_outputs
from .checkpoints import (
    EVAL_CHUNK,
    TrainingRun,
    TrainState,
    adamw,
    checkpoint_steps,
    data_workers,
    finish_run,
    keep_freed_memory,
    load_run_state,
    open_training_run,
    restore_adam,
    save_state_later,
    to_device,
)


def train_ensemble(recipe: Recipe, diversities: Sequence[int], out: str | Path, *, resume: bool = False,
                   progress: bool = True, stop_after: int | None = None) -> list[Path]:
    """Train one run per diversity in `diversities` under `out` as a stacked ensemble; returns
    the run paths in the order given. Same arguments and results as `train.train_run`."""
    runs = [open_training_run(recipe, int(d), out, resume=resume) for d in dict.fromkeys(diversities)]
    states = {run.path: load_run_state(run) for run in runs if not run.complete}
    # Members restart from their own saved step; a crash between two members' state writes
    # leaves them at different steps, and each step group then trains as its own ensemble.
    # (Classification at D = 1 has no IWL split, so the split set is part of the group too.)
    groups: dict[tuple[int, tuple[str, ...]], list[TrainingRun]] = {}
    for run in runs:
        if not run.complete:
            state = states[run.path]
            groups.setdefault((state.step if state else 0, tuple(run.eval_sets)), []).append(run)
    for (start, _), members in sorted(groups.items()):
        _train_members(recipe, members, [states[r.path] for r in members], start,
                       progress=progress, stop_after=stop_after)
    return [run.path for run in runs]


def clip_per_member(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each member's slice of the stacked gradients `grads` (E, ...) as
    `torch.nn.utils.clip_grad_norm_` would scale that member's own gradients; returns the
    per-member total norms (E,)."""
    members = grads[0].shape[0]
    total = torch.linalg.vector_norm(torch.cat([g.reshape(members, -1) for g in grads], dim=1), dim=1)  # (E,)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(list(grads), [scale.view(members, *([1] * (g.ndim - 1))) for g in grads])
    return total


def _train_members(recipe: Recipe, runs: list[TrainingRun], states: list[TrainState | None], start: int, *,
                   progress: bool, stop_after: int | None) -> None:
    device = torch.device(recipe.device)
    keep_freed_memory(device)
    task = runs[0].task
    members = len(runs)
    config = runs[0].model_config()
    initial = init_parameters(Transformer(config), recipe.seed).state_dict()
    names = list(initial)
    params = {name: torch.stack([(s.parameters if s else initial)[name] for s in states]).to(device)
              .requires_grad_() for name in names}
    optimizer = adamw(params.values(), recipe)
    wall_time = 0.0
    if start > 0:
        restore_adam(optimizer, params,
                     {n: torch.stack([s.exp_avg[n] for s in states]) for n in names},
                     {n: torch.stack([s.exp_avg_sq[n] for s in states]) for n in names}, states[0].adam_step)
        torch.set_rng_state(states[0].rng)
        wall_time = max(s.wall_time_s for s in states)

    eval_inputs = {split: torch.stack([inputs_from_batch(task, r.eval_sets[split], device) for r in runs])
                   for split in runs[0].eval_sets}                                  # (E, B, ...)

    def evaluate() -> list[dict[str, np.ndarray]]:
        with torch.no_grad():
            outs = {split: torch.cat([stacked_outputs(config, params, x[:, i:i + EVAL_CHUNK])
                                      for i in range(0, x.shape[1], EVAL_CHUNK)], dim=1).float().cpu().numpy()
                    for split, x in eval_inputs.items()}
        return [{split: outs[split][e] for split in outs} for e in range(members)]

    pending = [s for s in checkpoint_steps(recipe.steps, recipe.checkpoints, recipe.first_checkpoint) if s > start]
    bar = tqdm(total=recipe.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"{recipe.task} D={','.join(str(r.diversity) for r in runs)}")
    losses: list[torch.Tensor] = []
    began = time.perf_counter()
    with bar, TrainingBatches(task, [r.pool for r in runs], recipe, start + 1,
                              workers=data_workers(recipe)) as batches, BackgroundWriter() as background:
        for step in range(start + 1, recipe.steps + 1):
            inputs, targets = to_device(batches.take(step), device)
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate_at(step)
            loss = stacked_loss(task.family, stacked_outputs(config, params, inputs), targets)   # (E,)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            clip_per_member([p.grad for p in params.values()], recipe.grad_clip)
            optimizer.step()
            losses.append(loss.detach())
            bar.update()
            if pending and step == pending[0]:
                pending.pop(0)
                stacked = torch.stack(losses)                                       # (steps, E)
                for e, (run, outputs) in enumerate(zip(runs, evaluate())):
                    run.log(step, outputs, list(stacked[:, e]), background)
                losses = []
                elapsed = wall_time + time.perf_counter() - began
                moments = [optimizer.state[p] for p in params.values()]
                adam_step = int(moments[0]["step"])
                for e, run in enumerate(runs):
                    save_state_later(background, run.path, TrainState(
                        step, {n: p[e] for n, p in params.items()},
                        {n: m["exp_avg"][e] for n, m in zip(names, moments)},
                        {n: m["exp_avg_sq"][e] for n, m in zip(names, moments)},
                        adam_step, torch.get_rng_state(), elapsed))
                bar.set_postfix(loss=" ".join(f"{v:.3f}" for v in stacked[-1].tolist()))
                if stop_after is not None and step >= stop_after and pending:
                    background.close()
                    return
    elapsed = time.perf_counter() - began
    for e, run in enumerate(runs):
        finish_run(run, {n: p[e] for n, p in params.items()}, wall_time + elapsed,
                   seconds_per_step=elapsed / max(recipe.steps - start, 1), batched=members)
