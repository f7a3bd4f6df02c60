"""The urns paper sweep (data/sweeps/urns-paper.yaml: 11 diversities × 100 000 steps, one
stacked ensemble), run in resumable slices, and a small summary of what it has done.

Each call trains for at most `--time-limit` seconds (the sweep runs in a child process that
is stopped at the limit; the run store is crash-safe and the next call resumes from the last
checkpoint), then writes `--summary` (JSON): per run its D, last logged step, wall time,
seconds per step, its mean training loss over the last 500 steps, and its observed ID
M-weight w̃ (docs/model.md#observed-weights, SKL over all positions) at the checkpoints nearest 1k, 10k, 30k, 100k.

    python benchmarks/paper_sweep.py --out RUNS --device cuda --time-limit 540 --summary s.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "data" / "sweeps" / "urns-paper.yaml"


def train_slice(out: Path, device: str, limit: float, config: Path) -> dict:
    """Run (or resume) the sweep for at most `limit` seconds; says whether it finished."""
    command = [sys.executable, "-m", "bayesicl.cli", "sweep", str(config), "--out", str(out),
               "--device", device, "--quiet"]
    began = time.perf_counter()
    try:
        result = subprocess.run(command, timeout=limit)
        finished = result.returncode == 0
        if result.returncode != 0:
            raise SystemExit(f"sweep failed with exit code {result.returncode}")
    except subprocess.TimeoutExpired:
        finished = False
    return {"slice_seconds": time.perf_counter() - began, "finished": finished}


def observed_m_weights(run, wanted=(1_000, 10_000, 30_000, 100_000)) -> dict[str, float]:
    """w̃_M on the run's ID sequences at the logged steps nearest `wanted`."""
    import numpy as np

    import bayesicl as bic
    from bayesicl.observe import distances, observed_weight, relative_distance

    batch = run.inputs["id"]
    strategies = np.stack([bic.strategies.memorizing(run.task, run.pool).log_probs(batch),
                           bic.strategies.generalizing(run.task).log_probs(batch)], axis=-4)
    scored = np.ones(strategies.shape[-2], bool)
    steps = run.steps
    weights = {}
    for target in wanted:
        step = int(steps[np.abs(steps - target).argmin()])
        outputs = run.outputs.sel(step=step, split="id").values
        d_t, d_pair = distances(outputs, strategies, "log_probs", scored)
        weights[str(step)] = round(float(observed_weight(relative_distance(d_t[0], d_t[1], d_pair[0, 1]))), 4)
    return weights


def summarize(out: Path, weights: bool = True) -> list[dict]:
    """Per run: D, steps logged, wall time, s/step, final training loss and observed
    M-weights (from the run store)."""
    from bayesicl.runs import open_run

    rows = []
    for path in sorted(p for p in out.iterdir() if (p / "run.json").exists()):
        meta = json.loads((path / "run.json").read_text())
        if not weights:
            rows.append({"run": path.name, "diversity": meta.get("diversity"),
                         "complete": bool(meta.get("complete")), "wall_time_s": meta.get("wall_time_s")})
            continue
        try:
            run = open_run(path)
            steps = run.steps.tolist()
            loss = run.loss["loss"]
            final_loss = float(loss.iloc[-500:].mean()) if len(loss) else None
            weights = observed_m_weights(run) if steps else {}
        except Exception as error:  # an interrupted run may lack checkpoints; say so
            steps, final_loss, weights = [], f"unreadable: {error}", {}
        rows.append({"run": path.name, "diversity": meta.get("diversity"), "complete": bool(meta.get("complete")),
                     "last_step": steps[-1] if steps else 0, "checkpoints": len(steps),
                     "wall_time_s": meta.get("wall_time_s"), **{
                         key: (meta.get("extra") or {}).get(key) for key in ("seconds_per_step", "ensemble_members")},
                     "mean_training_loss_last_500_steps": final_loss, "observed_id_m_weight": weights})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of runs (kept between slices)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds of training in this call")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--summary", type=Path, default=None, help="write the summary JSON here")
    parser.add_argument("--no-weights", action="store_true",
                        help="skip the observed M-weights (which read every checkpoint back)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")     # the strategies of the summary; the GPU trains
    result = train_slice(args.out, args.device, args.time_limit, args.config)
    result["runs"] = summarize(args.out, weights=not args.no_weights)
    text = json.dumps(result, indent=2)
    print(text)
    if args.summary:
        args.summary.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
