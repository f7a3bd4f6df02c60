"""Training throughput of the reference transformers.

Measures, on one device (CPU by default, `--device cuda` if available):
1. steps/s and tokens/s of each preset (a few hundred steps through `train_run`, logging
   included: checkpoints, evaluation, store writes);
2. the wall time of 8 diversities trained one after another vs as one stacked ensemble
   (`train_ensemble`), and their ratio, in the same process;
3. the per-step time of the urns paper preset through `train_run` next to a plain loop (the
   same model, AdamW and clipping on one fixed batch; no data generation, no logging);
4. the cost of logging: the per-step time of the urns-small recipe with 26 checkpoints
   through `train_run` (data, evaluation and the background checkpoint writer included) next
   to a plain loop over the same batches (`--logging-steps`; `--only-logging` runs just this).

    python benchmarks/training.py [--steps 200] [--device cpu] [--out results.json]
    python benchmarks/training.py --device cuda --presets urns --sweep-preset urns --sweep-steps 2000

Each run of the sweep comparison pays fixed costs (creating its store, its checkpoint writes,
its final files: ~0.3 s) on both sides; on a GPU, where a step costs a few ms, use enough
steps that they do not dominate (measured results: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bayesicl/transformers/cli.py

import torch  # noqa: E402

import bayesicl as bic  # noqa: E402
from bayesicl.transformers.ensemble import train_ensemble  # noqa: E402
from bayesicl.transformers.model import (  # noqa: E402
    Transformer,
    init_parameters,
    inputs_from_batch,
    targets_from_batch,
)
from bayesicl.transformers.presets import load_recipe  # noqa: E402
from bayesicl.transformers.train import train_run  # noqa: E402

PRESETS = ["urns-small", "regression-small", "classification-small", "urns", "regression", "classification"]
SWEEP_DIVERSITIES = [4, 8, 16, 32, 64, 128, 256, 1024]


def tokens_per_step(recipe) -> int:
    positions = 2 * recipe.model.context_length if recipe.task == "regression" else recipe.model.context_length
    return recipe.batch_size * positions


def preset_throughput(name: str, steps: int, device: str) -> dict:
    recipe = load_recipe(name, {"steps": steps, "checkpoints": 4, "eval_sequences": 64, "device": device})
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        train_run(recipe, 64, tmp, progress=False)
        seconds = time.perf_counter() - began
    return {"preset": name, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "tokens_per_s": steps * tokens_per_step(recipe) / seconds}


def sweep_ratio(steps: int, device: str, preset: str = "urns-small") -> dict:
    recipe = load_recipe(preset, {"steps": steps, "checkpoints": 4, "eval_sequences": 64, "device": device})
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        for diversity in SWEEP_DIVERSITIES:
            train_run(recipe, diversity, f"{tmp}/separate", progress=False)
        separate = time.perf_counter() - began
        began = time.perf_counter()
        train_ensemble(recipe, SWEEP_DIVERSITIES, f"{tmp}/batched", progress=False)
        batched = time.perf_counter() - began
    members = len(SWEEP_DIVERSITIES)
    return {"preset": preset, "diversities": SWEEP_DIVERSITIES, "steps": steps,
            "one_after_another_s": separate, "batched_s": batched, "speedup": separate / batched,
            "s_per_member_step_separate": separate / (members * steps),
            "s_per_member_step_batched": batched / (members * steps)}


def paper_step_time(steps: int, device: str) -> dict:
    recipe = load_recipe("urns", {"steps": steps, "checkpoints": 2, "eval_sequences": 64, "device": device})
    task = bic.task("urns", **recipe.task_params())
    model = init_parameters(Transformer(recipe.model), 0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    batch = task.training_batch(task.pool(64, seed=0), recipe.batch_size, 0, 1)
    inputs, targets = inputs_from_batch(task, batch, device), targets_from_batch(task, batch, device)

    def plain_step():
        loss = model.loss(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    for _ in range(5):
        plain_step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    began = time.perf_counter()
    for _ in range(steps):
        plain_step()
    sync()
    plain = (time.perf_counter() - began) / steps
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        train_run(recipe, 64, tmp, progress=False)
        logged = (time.perf_counter() - began) / steps
    return {"preset": "urns", "steps": steps, "plain_loop_s_per_step": plain, "train_run_s_per_step": logged,
            "overhead_ratio": logged / plain, "num_parameters": model.num_parameters()}


def logging_overhead(steps: int, device: str, checkpoints: int = 26) -> dict:
    """Per-step time of `train_run` (26 checkpoints logged) over a plain loop on the same
    batches, measured in the same process, plain loop first and last (their mean is used)."""
    from bayesicl.transformers.batches import TrainingBatches
    from bayesicl.transformers.train import adamw, data_workers, to_device

    recipe = load_recipe("urns-small", {"steps": steps, "checkpoints": checkpoints, "device": device})
    task = bic.task("urns", **recipe.task_params())
    pool = task.pool(64, seed=recipe.seed)

    def plain() -> float:
        model = init_parameters(Transformer(recipe.model), 0).to(device)
        optimizer = adamw(model.parameters(), recipe)
        with TrainingBatches(task, [pool], recipe, 1, workers=data_workers(recipe)) as batches:
            began = time.perf_counter()
            for step in range(1, steps + 1):
                inputs, targets = to_device(batches.take(step), torch.device(device))
                for group in optimizer.param_groups:
                    group["lr"] = recipe.learning_rate_at(step)
                loss = model.loss(inputs[0], targets[0])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                loss.detach()
            return (time.perf_counter() - began) / steps

    before = plain()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        train_run(recipe, 64, tmp, progress=False)
        logged = (time.perf_counter() - began) / steps
    after = plain()
    baseline = (before + after) / 2
    return {"preset": "urns-small", "steps": steps, "checkpoints": checkpoints,
            "plain_loop_s_per_step": baseline, "plain_loop_runs_s_per_step": [before, after],
            "train_run_s_per_step": logged, "ratio": logged / baseline,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per preset measurement")
    parser.add_argument("--sweep-steps", type=int, default=100, help="steps per run in the sweep comparison")
    parser.add_argument("--sweep-preset", default="urns-small", help="preset of the 8-diversity sweep")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--logging-steps", type=int, default=1000,
                        help="steps of the logging-overhead measurement (26 checkpoints)")
    parser.add_argument("--only-logging", action="store_true", help="measure only the logging overhead")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    results = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "presets": []}
    overhead = logging_overhead(args.logging_steps, args.device)
    results["logging"] = overhead
    print(f"urns-small, {overhead['checkpoints']} checkpoints: {overhead['train_run_s_per_step'] * 1e3:.1f} ms/step "
          f"through train_run, {overhead['plain_loop_s_per_step'] * 1e3:.1f} ms/step plain loop "
          f"(x{overhead['ratio']:.3f})", flush=True)
    if args.only_logging:
        args.presets = []
    for name in args.presets:
        row = preset_throughput(name, args.steps, args.device)
        results["presets"].append(row)
        print(f"{name:22s} {row['steps_per_s']:7.2f} steps/s {row['tokens_per_s']:10.0f} tokens/s", flush=True)
    if not args.only_logging:
        sweep = sweep_ratio(args.sweep_steps, args.device, args.sweep_preset)
        results["sweep"] = sweep
        print(f"{sweep['preset']}, 8 diversities x {sweep['steps']} steps: one after another "
              f"{sweep['one_after_another_s']:.1f} s, batched {sweep['batched_s']:.1f} s, "
              f"speed-up {sweep['speedup']:.2f}x", flush=True)
        paper = paper_step_time(args.steps, args.device)
        results["paper_urns"] = paper
        print(f"urns paper preset: {paper['train_run_s_per_step'] * 1e3:.1f} ms/step through train_run, "
              f"{paper['plain_loop_s_per_step'] * 1e3:.1f} ms/step plain loop "
              f"(x{paper['overhead_ratio']:.2f})", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
