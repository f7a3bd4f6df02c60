"""The `bayesicl train` and `bayesicl sweep` verbs (SPEC §14).

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

from ..errors import BayesiclError


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bayesicl train TASK --diversity D [D ...] --out RUNS`."""
    parser.add_argument("task", choices=["urns", "regression", "classification"], help="task family")
    parser.add_argument("--diversity", "-D", type=int, nargs="+", required=True, metavar="D",
                        help="task diversities: one run per D")
    parser.add_argument("--out", required=True, help="folder of runs (one subfolder per run)")
    parser.add_argument("--preset", default=None, metavar="NAME|PATH",
                        help="recipe in models/ (default: the paper recipe of TASK; *-small for CPU)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--checkpoints", type=int, default=None, help="number of logged checkpoints")
    parser.add_argument("--seed", type=int, default=None, help="seed of pool, data and init")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the preset's, cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any preset field (repeatable), e.g. --set learning_rate=1e-3")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs from their last checkpoint; finished runs are kept")
    parser.add_argument("--batched", action="store_true",
                        help="train the diversities as one stacked ensemble in this process (same results)")
    _add_execution_arguments(parser)


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bayesicl sweep CONFIG --out RUNS`."""
    parser.add_argument("config", help="sweep YAML (preset, diversities, mlp_widths, context_lengths, seeds, set)")
    parser.add_argument("--out", required=True, help="folder of runs")
    parser.add_argument("--engine", choices=["local", "batched", "ray"], default=None,
                        help="local: one run after another; batched: each group as one ensemble; "
                             "ray: Ray tasks (default: the config's engine, else local)")
    parser.add_argument("--address", default=None, help="address of an existing Ray cluster (engine ray)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    parser.add_argument("--device", default=None, help="cpu or cuda for every job")
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


def train_main(args: argparse.Namespace) -> int:
    """`bayesicl train`: one logged run per diversity under --out; prints the run folders."""
    _prepare_torch(args)
    from .presets import load_recipe
    from .train import train_runs

    overrides = list(args.set)
    for flag in ("steps", "checkpoints", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{flag}={value}")
    recipe = load_recipe(args.preset or args.task, overrides)
    if recipe.task != args.task:
        raise BayesiclError(f"--preset {args.preset}: it is a {recipe.task!r} recipe, not {args.task!r}")
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
    from .sweep import sweep

    summary = sweep(args.config, args.out, engine=args.engine, address=args.address, num_cpus=args.num_cpus,
                    device=args.device, progress=not args.quiet)
    print(f"{len(summary['runs'])} runs in {args.out}: {summary['trained']} trained or resumed, "
          f"{summary['skipped']} already finished")
    return 0
