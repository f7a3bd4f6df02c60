"""Sweeps: the grid diversities × MLP widths × context lengths × seeds of one preset, as
independent training jobs (README.md#command-line).

A sweep config is a YAML mapping:

    preset: urns-small                 # name in models/ or a path
    diversities: [4, 16, 64, 256]
    mlp_widths: [256]                  # optional, default: the preset's
    context_lengths: [64]              # optional, default: the preset's
    seeds: [0]                         # optional, default: the preset's
    set: {steps: 8000}                 # optional preset overrides for every job
    engine: batched                    # optional default engine: local | batched | ray

Every job is `train_run(..., resume=True)`: finished runs are skipped and interrupted ones
resumed, so re-running a sweep completes it. Engines: "local" runs jobs one after another;
"batched" trains the diversities of each (width, T, seed) group as one stacked ensemble
(ensemble.py); "ray" submits jobs as Ray tasks to a local Ray instance (`num_cpus`) or to the
cluster at `address` (with `batched: true` in the config, one task per group); on a cluster,
every node needs bayesicl installed and `out` on storage that all nodes share.

>>> import tempfile, pathlib
>>> config = {"preset": "urns-small", "diversities": [4, 8], "mlp_widths": [16],
...           "set": {"steps": 22, "checkpoints": 2, "eval_sequences": 4, "width": 8, "batch_size": 4}}
>>> [job.recipe.run_name(job.diversity) for job in sweep_jobs(config)]
['urns-d8-T64-D0004-w16-s0', 'urns-d8-T64-D0008-w16-s0']
>>> with tempfile.TemporaryDirectory() as tmp:
...     summary = sweep(config, tmp, engine="batched", progress=False)
...     summary["trained"], sweep(config, tmp, progress=False)["skipped"]
(2, 2)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..atomic import read_regular
from ..errors import BayesiclError
from .presets import Recipe, load_recipe, recipe_from_mapping

ENGINES = ("local", "batched", "ray")
SWEEP_FIELDS = ("preset", "diversities", "mlp_widths", "context_lengths", "seeds", "set", "engine", "batched")


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a sweep: a recipe and a diversity D."""

    recipe: Recipe
    diversity: int

    @property
    def group(self) -> tuple[int, int, int]:
        """Jobs of one (MLP width, T, seed) group can train as one ensemble."""
        return (self.recipe.model.mlp_width, self.recipe.model.context_length, self.recipe.seed)


def read_sweep_config(config: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The sweep config as a dict (from a YAML file or a mapping), checked field by field."""
    if isinstance(config, Mapping):
        data, where = dict(config), "sweep config"
    else:
        where = str(config)
        try:
            data = yaml.safe_load(read_regular(config, 1 << 20).decode())
        except FileNotFoundError:
            raise BayesiclError(f"{where}: sweep config not found") from None
        except UnicodeDecodeError as error:
            raise BayesiclError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except (OSError, yaml.YAMLError) as error:
            raise BayesiclError(f"{where}: unreadable YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise BayesiclError(f"{where}: a sweep config must be a YAML mapping")
    unknown = [k for k in data if k not in SWEEP_FIELDS]
    if unknown:
        raise BayesiclError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(SWEEP_FIELDS)}")
    for key in ("preset", "diversities"):
        if key not in data:
            raise BayesiclError(f"{where}: missing required field {key!r}")
    for key in ("diversities", "mlp_widths", "context_lengths", "seeds"):
        if key in data:
            values = data[key]
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= (0 if key == "seeds" else 1) for v in values):
                raise BayesiclError(f"{where}: {key} must be a non-empty list of positive integers, got {values!r}")
    if not isinstance(data.get("set", {}), dict):
        raise BayesiclError(f"{where}: set must be a mapping of preset fields")
    if data.get("engine", "local") not in ENGINES:
        raise BayesiclError(f"{where}: engine must be one of {list(ENGINES)}, got {data['engine']!r}")
    if config is not None and not isinstance(config, Mapping):
        data = {**data, "preset": _relative_preset(str(data["preset"]), Path(config).parent)}
    return data, where


def sweep_jobs(config: str | os.PathLike | Mapping[str, Any]) -> list[Job]:
    """The sweep's jobs, in grid order (seed, context length, MLP width, diversity)."""
    data, where = read_sweep_config(config)
    base = load_recipe(data["preset"], data.get("set", {}))
    jobs = []
    for seed, length, width in itertools.product(data.get("seeds", [base.seed]),
                                                 data.get("context_lengths", [base.model.context_length]),
                                                 data.get("mlp_widths", [base.model.mlp_width])):
        try:
            recipe = base.replace(seed=seed, context_length=length, mlp_width=width)
        except BayesiclError as error:
            raise BayesiclError(f"{where}: {error}") from None
        jobs.extend(Job(recipe, d) for d in dict.fromkeys(data["diversities"]))
    return jobs


def sweep(config: str | os.PathLike | Mapping[str, Any], out: str | os.PathLike, *,
          engine: str | None = None, address: str | None = None, num_cpus: int | None = None,
          device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every job of the sweep `config` under `out` (one folder per run) with `engine`
    (default: the config's, else "local"); returns {"runs": [paths], "trained", "skipped"}."""
    data, _ = read_sweep_config(config)
    engine = engine or data.get("engine", "local")
    if engine not in ENGINES:
        raise BayesiclError(f"sweep: engine must be one of {list(ENGINES)}, got {engine!r}")
    jobs = sweep_jobs(config)
    if device:
        jobs = [Job(job.recipe.replace(device=device), job.diversity) for job in jobs]
    out = Path(out)
    done = [job for job in jobs if _finished(job, out)]
    todo = [job for job in jobs if job not in done]
    units = _units(todo, batched=engine == "batched" or bool(data.get("batched")))
    if engine == "ray":
        _run_on_ray(units, out, address=address, num_cpus=num_cpus, progress=progress)
    else:
        for unit in units:
            _train_unit(unit, str(out), progress)
    return {"runs": [str(out / j.recipe.run_name(j.diversity)) for j in jobs],
            "trained": len(todo), "skipped": len(done)}


def _units(jobs: Sequence[Job], batched: bool) -> list[list[Job]]:
    """Jobs grouped for execution: one per job, or one per (width, T, seed) group."""
    if not batched:
        return [[job] for job in jobs]
    groups: dict[tuple[int, int, int], list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.group, []).append(job)
    return list(groups.values())


def _train_unit(unit: Sequence[Job], out: str, progress: bool) -> list[str]:
    from .train import train_runs        # torch, only where a job trains

    recipe = unit[0].recipe
    paths = train_runs(recipe, [job.diversity for job in unit], out, resume=True,
                       batched=len(unit) > 1, progress=progress)
    return [str(p) for p in paths]


def _run_on_ray(units: list[list[Job]], out: Path, *, address: str | None, num_cpus: int | None,
                progress: bool) -> None:
    import ray
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_ray_job)
        pending = [remote.remote([(j.recipe.to_dict(), j.diversity) for j in unit], str(out))
                   for unit in units]
        with tqdm(total=len(pending), disable=not progress, unit="job", desc="sweep") as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)        # re-raises a failed job's error
                bar.update(len(ready))
    finally:
        if started:
            ray.shutdown()


def _ray_job(unit: list[tuple[dict[str, Any], int]], out: str) -> list[str]:
    # One Ray task = one CPU: keep torch to one thread so that tasks do not oversubscribe.
    import torch

    torch.set_num_threads(1)
    jobs = [Job(recipe_from_mapping(r, "sweep job"), d) for r, d in unit]
    return _train_unit(jobs, out, progress=False)


def _finished(job: Job, out: Path) -> bool:
    """Whether the job's run is complete; a run on disk with another config, or one that
    another process (a sweep still running) is writing, is refused in one line."""
    if not (out / job.recipe.run_name(job.diversity) / "run.json").exists():
        return False
    from .checkpoints import open_training_run        # torch, only where a run exists

    run = open_training_run(job.recipe, job.diversity, out, resume=True)
    run.close()
    return run.complete


def _relative_preset(preset: str, folder: Path) -> str:
    # A preset path in a sweep file is relative to the sweep file; a bare name is a preset name.
    if (preset.endswith((".yaml", ".yml")) or os.sep in preset) and not Path(preset).is_absolute():
        candidate = folder / preset
        if candidate.is_file():
            return str(candidate)
    return preset
