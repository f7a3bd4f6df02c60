"""Quickstart: tasks and strategies, then the rational model fitted to the shipped urns runs.

1. A balls-and-urns task (docs/model.md#urns), a pool of D training urns and a batch of sequences.
2. The memorizing (M) and generalizing (G) strategies on that batch, their losses L̄_s(D)
   (nats per token) and complexities K_s(D) (bits) at a few diversities: M fits the
   training distribution better, but costs more bits the more tasks it memorizes.
3. The fit of (α, β, γ) to the reference transformers shipped in data/runs/urns (MAP, the
   paper's objective, by default; `--method nuts` samples the posterior), its correlations
   between predicted and observed M-weights, the predicted transition steps N*(D), and the
   phase diagram.

    python examples/quickstart.py --out example-out/quickstart
    python examples/quickstart.py --method nuts --num-samples 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import bayesicl as bic
from bayesicl.atomic import atomic_path
from bayesicl.demo import demo_runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--runs", default=None, help="logged runs to fit (default: the shipped urns runs)")
    parser.add_argument("--method", choices=("map", "nuts"), default="map")
    parser.add_argument("--loss-sequences", type=int, default=None,
                        help="sequences for each L̄_s(D) (default: 10 000, docs/model.md#strategy-loss)")
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bayesicl-quickstart-"))
    clock = time.perf_counter()

    # -- 1. a task, a pool, a batch -------------------------------------------------------------
    task = bic.task("urns", num_dims=8, context_length=64)      # the setting of the shipped runs
    pool = task.pool(diversity=64, seed=1)                      # (64, 8): 64 urns over 8 colours
    batch = task.sample(pool, num_sequences=4, seed=2)          # tokens (4, 65), start token first
    print(f"task {task.settings}\npool {pool.shape}, batch tokens {batch['tokens'].shape}")

    # -- 2. strategies: outputs, losses, complexities -------------------------------------------
    m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
    probs_m, probs_g = m(batch), g(batch)                       # (4, 64, 8): row t predicts x_{t+1}
    print(f"{m} and {g}: outputs {probs_m.shape}; after 64 draws of sequence 0 they predict")
    print(f"  M {np.round(probs_m[0, -1], 3)}\n  G {np.round(probs_g[0, -1], 3)}")
    loss_sequences = args.loss_sequences or 2000
    print(f"\n{'D':>5} {'L̄_M':>8} {'L̄_G':>8} {'K_M (bits)':>11} {'K_G (bits)':>11}")
    for diversity in (4, 64, 1024):
        p = task.pool(diversity, seed=1)
        made = bic.strategies.for_task(task, p)                 # {"memorizing": M, "generalizing": G}
        losses = [bic.strategies.loss(task, s, p, num_sequences=loss_sequences, seed=0) for s in made.values()]
        bits = [bic.strategies.complexity(s) for s in made.values()]
        print(f"{diversity:>5} {losses[0]:8.4f} {losses[1]:8.4f} {bits[0]:11.0f} {bits[1]:11.0f}")

    # -- 3. fit the rational model to logged transformer runs -----------------------------------
    from bayesicl.inference import fit
    from bayesicl.plot import phase_diagram

    runs = Path(args.runs) if args.runs else demo_runs("urns")
    print(f"\nfitting {args.method.upper()} to the runs in {runs} ...")
    result = fit(runs, method=args.method, seed=args.seed, loss_sequences=args.loss_sequences,
                 num_chains=args.num_chains, num_samples=args.num_samples, num_warmup=args.num_warmup)
    summary = result.summary()
    for name in ("alpha", "beta", "gamma"):
        p = summary["params"][name]
        interval = "" if p["low"] is None else f"   90% interval [{p['low']:.4g}, {p['high']:.4g}]"
        print(f"  {name:<5} = {p['mean']:.4g}{interval}")
    print("correlation of expected and observed M-weight (Pearson, over conditions):")
    for part in ("fit", "heldout", "all"):
        cells = [summary["metrics"].get(part, {}).get(split, {}).get("correlation") for split in ("id", "ood")]
        print(f"  {part:<8}" + "".join(f"  {s.upper()} " + ("n/a" if c is None else f"{c:.3f}")
                                       for s, c in zip(("id", "ood"), cells)))
    steps = result.transition_steps()
    print("predicted transition step N*(D):",
          ", ".join(f"D={d}: {n:,.0f}" for d, n in zip(steps["diversity"], steps["transition_step"])))
    prediction = result.predict(diversity=2048, step=50_000)      # a diversity no run was trained at
    print(f"predicted w_M at D = 2048, N = 50 000: {float(prediction['predicted_weight'].iloc[0]):.3f}")

    result.save(out)                                              # summary.json, conditions.csv, …
    with atomic_path(out / "phase_diagram.png") as tmp:
        phase_diagram(result).savefig(tmp, dpi=110, format="png")
    print(f"wrote {out} ({time.perf_counter() - clock:.0f} s)")
    return {"result": result, "summary": summary, "out": out}


if __name__ == "__main__":
    main()
