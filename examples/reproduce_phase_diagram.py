"""Reproduce the phase diagram from scratch: train, observe, fit, draw.

The paper's whole path at a scale a laptop finishes:

1. train one small reference transformer per task diversity D on balls and urns (the
   `urns-small` preset, as a sweep over D: resumable, one run folder per D, each logging its
   outputs on fixed ID and OOD sequences at checkpoints spaced evenly in √N);
2. build the evidence: run the memorizing and generalizing strategies on the runs' own
   evaluation inputs, measure how far the network is from each (observed M-weight), and
   compute L̄_s(D) and K_s(D);
3. fit (α, β, γ) of the rational strategy model (MAP, or NUTS with `--method nuts`);
4. draw the phase diagram: observed and predicted M-weight over D × N, with N*(D).

The defaults (4 diversities × 4000 steps) take about 15 minutes on two CPU cores, and more
steps show more of the transition; `--set key=value` changes any preset field, for example
`--steps 400 --set width=32 mlp_width=64 context_length=32 batch_size=32` for a one-minute
smoke run (the fit then has little to explain, but every stage runs).

    python examples/reproduce_phase_diagram.py --out example-out/phase
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bayesicl.atomic import atomic_path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary one); "
                        "runs go to OUT/runs, the fit to OUT/fit")
    parser.add_argument("--preset", default="urns-small", help="reference-transformer preset (models/)")
    parser.add_argument("--diversities", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps per run")
    parser.add_argument("--checkpoints", type=int, default=30, help="logged checkpoints per run")
    parser.add_argument("--eval-sequences", type=int, default=128, help="ID and OOD sequences per run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other preset fields, e.g. width=32 learning_rate=3e-3")
    parser.add_argument("--engine", choices=("local", "batched"), default="local",
                        help="train the runs one after another, or as one stacked ensemble")
    parser.add_argument("--method", choices=("map", "nuts"), default="map")
    parser.add_argument("--loss-sequences", type=int, default=None,
                        help="sequences for each L̄_s(D) (default: 10 000, docs/model.md#strategy-loss)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no training progress bars")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bayesicl-phase-"))
    clock = time.perf_counter()

    # Spinning OpenMP threads collapse throughput on a shared CPU; set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from bayesicl.evidence import build_evidence
    from bayesicl.inference import fit
    from bayesicl.plot import phase_diagram
    from bayesicl.transformers.presets import parse_overrides
    from bayesicl.transformers.sweep import sweep

    # -- 1. train: a sweep over D (finished runs are skipped, interrupted ones resumed) ---------
    overrides = parse_overrides(args.set)                        # values read as YAML scalars
    config = {"preset": args.preset, "diversities": args.diversities, "seeds": [args.seed],
              "set": {"steps": args.steps, "checkpoints": args.checkpoints,
                      "eval_sequences": args.eval_sequences, **overrides}}
    trained = sweep(config, out / "runs", engine=args.engine, progress=not args.quiet)
    print(f"{len(trained['runs'])} runs in {out / 'runs'} ({trained['trained']} trained, "
          f"{trained['skipped']} already there) after {time.perf_counter() - clock:.0f} s")

    # -- 2. evidence: the network against the strategies, per run × checkpoint ------------------
    evidence = build_evidence(out / "runs", loss_sequences=args.loss_sequences, cache=False)
    print(f"evidence: {evidence.num_conditions} conditions, cutoff N_0 = {evidence.cutoff_step} "
          f"({int(evidence.conditions['modeled'].sum())} modeled)")
    observed = evidence.sel(split="id")["observed_weight"].to_series().groupby("diversity")
    print(observed.agg(["first", "last"])
          .rename(columns={"first": "w̃_M at the first checkpoint", "last": "at the last"}).round(3).to_string())

    # -- 3. fit the rational model ---------------------------------------------------------------
    result = fit(evidence, method=args.method, seed=args.seed)
    summary = result.summary()
    print("  " + "   ".join(f"{k} = {summary['params'][k]['mean']:.4g}" for k in ("alpha", "beta", "gamma")))
    correlation = summary["metrics"]["all"]["id"].get("correlation")
    print("correlation of predicted and observed M-weight (ID, all conditions): "
          + ("n/a" if correlation is None else f"{correlation:.3f}"))
    for warning in result.guards:
        print(f"WARNING: {warning}")

    # -- 4. the phase diagram --------------------------------------------------------------------
    result.save(out / "fit")
    with atomic_path(out / "phase_diagram.png") as tmp:
        phase_diagram(result).savefig(tmp, dpi=110, format="png")
    print(f"wrote {out / 'phase_diagram.png'} ({time.perf_counter() - clock:.0f} s)")
    return {"runs": trained["runs"], "evidence": evidence, "result": result, "out": out}


if __name__ == "__main__":
    main()
