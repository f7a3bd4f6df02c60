"""The `bayesicl train` and `bayesicl sweep` verbs (README.md#command-line).

The argument definitions import nothing heavy (the top-level parser builds them for every
verb); torch is imported when a verb runs.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_train_arguments(parser)
>>> args = parser.parse_args(["urns", "--diversity", "8", "512", "--out", "runs", "--preset", "urns-small"])
>>> args.diversity, args.preset, args.set
([8, 512], 'urns-small', [])
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import BayesiclError
from ..families import FAMILIES
from . import sweep as sweeping
from .presets import load_recipe, parse_overrides


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bayesicl train TASK --diversity D [D ...] --out RUNS`."""
    parser.add_argument("task", choices=[name for name, spec in FAMILIES.items() if spec.transformer],
                        help="task family")
    parser.add_argument("--diversity", "-D", type=int, nargs="+", required=True, metavar="D",
                        help="task diversities: one run per D (required)")
    parser.add_argument("--out", required=True, help="folder of runs, one subfolder per run (required)")
    parser.add_argument("--preset", default=None, metavar="NAME|PATH",
                        help="recipe in models/ (default: TASK-small on a CPU, the paper recipe TASK with CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the preset's)")
    parser.add_argument("--checkpoints", type=int, default=None,
                        help="number of logged checkpoints (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of pool, data and init (default: the preset's, 0)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the preset's, cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any preset field (repeatable), e.g. --set learning_rate=1e-3 (default: none)")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs from their last checkpoint; finished runs are kept")
    parser.add_argument("--batched", action="store_true",
                        help="train the diversities as one stacked ensemble in this process (same results)")
    _add_execution_arguments(parser)


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bayesicl sweep CONFIG --out RUNS`."""
    parser.add_argument("config", help="sweep YAML (preset, diversities, mlp_widths, context_lengths, seeds, set)")
    parser.add_argument("--out", required=True, help="folder of runs (required)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps of every job, e.g. to shrink a sweep (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset field for every job (repeatable), after the config's own "
                             "`set` (default: none)")
    parser.add_argument("--engine", choices=["local", "batched", "ray"], default=None,
                        help="local: one run after another; batched: each group as one ensemble; "
                             "ray: Ray tasks (default: the config's engine, else local)")
    parser.add_argument("--address", default=None,
                        help="address of an existing Ray cluster, engine ray (default: start a local instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    parser.add_argument("--device", default=None, help="cpu or cuda for every job (default: each preset's)")
    parser.add_argument("--resume", action="store_true",
                        help="accepted for symmetry: a sweep always skips finished runs and resumes interrupted ones")
    _add_execution_arguments(parser)


def _add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _prepare_torch(args: argparse.Namespace) -> None:
    # OpenMP threads that spin while waiting collapse throughput on a shared, busy CPU (measured
    # 6x slower at 2 threads); passive waiting costs little when the CPU is idle. Must be set
    # before torch loads OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise BayesiclError(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = getattr(args, "device", None)
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise BayesiclError(f"--device {device}: CUDA is not available on this machine")


def default_preset(task: str, device: str | None) -> str:
    """The preset `train` takes without --preset: the paper recipe only where it can run.

    The paper recipes are GPU-sized (100 000 steps); on a CPU, TASK-small. The choice is
    printed, so that a run's scale is never a surprise.
    """
    import torch

    cuda = device.startswith("cuda") if device else torch.cuda.is_available()
    name = task if cuda else f"{task}-small"
    why = "CUDA is available" if cuda else "no GPU (--device cpu or no CUDA)"
    other = f"{task}-small" if cuda else task
    print(f"bayesicl train: no --preset given; {why}, so using the preset {name} "
          f"(pass --preset {other} for the other scale)", file=sys.stderr)
    return name


def warn_long_warmup(recipe) -> None:
    """Warn when the learning-rate warm-up takes half the training or more (e.g. a preset's
    500-step warm-up kept under --steps 600)."""
    if recipe.warmup_steps and recipe.warmup_steps * 2 >= recipe.steps:
        print(f"bayesicl: WARNING: the warm-up takes {recipe.warmup_steps} of the {recipe.steps} training steps "
              f"(the preset's warmup_steps); pass --set warmup_steps=N to shorten it", file=sys.stderr)


def train_main(args: argparse.Namespace) -> int:
    """`bayesicl train`: one logged run per diversity under --out; prints the run folders."""
    _prepare_torch(args)
    from .train import train_runs        # torch: after _prepare_torch

    overrides = list(args.set)
    for flag in ("steps", "checkpoints", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{flag}={value}")
    recipe = load_recipe(args.preset or default_preset(args.task, args.device), overrides)
    if recipe.task != args.task:
        raise BayesiclError(f"--preset {args.preset}: it is a {recipe.task!r} recipe, not {args.task!r}")
    warn_long_warmup(recipe)
    for diversity in args.diversity:
        if diversity < 1:
            raise BayesiclError(f"--diversity {diversity}: must be a positive integer")
    paths = train_runs(recipe, args.diversity, args.out, resume=args.resume, batched=args.batched,
                       progress=not args.quiet)
    for path in paths:
        print(path)
    return 0


def sweep_main(args: argparse.Namespace) -> int:
    """`bayesicl sweep`: every job of the grid; prints how many were trained and skipped."""
    _prepare_torch(args)
    config = args.config
    if args.steps is not None or args.set:
        data, _ = sweeping.read_sweep_config(args.config)
        changes = parse_overrides(list(args.set) + ([f"steps={args.steps}"] if args.steps is not None else []))
        config = {**data, "set": {**data.get("set", {}), **changes}}
        warn_long_warmup(sweeping.sweep_jobs(config)[0].recipe)
    summary = sweeping.sweep(config, args.out, engine=args.engine, address=args.address, num_cpus=args.num_cpus,
                    device=args.device, progress=not args.quiet)
    print(f"{len(summary['runs'])} runs in {args.out}: {summary['trained']} trained or resumed, "
          f"{summary['skipped']} already finished")
    return 0
