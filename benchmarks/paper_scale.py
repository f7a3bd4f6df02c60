"""A planted-truth benchmark at the paper's urns size: memory and time of evidence and fits.

Writes a synthetic store through `RunWriter` at the paper's urns setting (d = 8, T = 128,
11 diversities 4…4096, 100 √-spaced checkpoints up to step 100 000, 500 ID + 500 OOD
sequences; `--scale s` multiplies the checkpoints and sequences by s). Each run's
"transformer" outputs are log(w·M + (1 − w)·G) of the real strategies on the run's own
evaluation inputs, with w from known (α, β, γ) (`bayesicl.rational.log_weights`, on the same
L̄ and K the fit uses) plus a per-run effect and per-checkpoint noise on the log-odds. Then,
each in a fresh process: the store writing, the evidence build (cold cache: strategies, L̄,
K, distances, objective), a MAP fit and a NUTS fit of that evidence, with wall time and peak
RSS of each (the stage process's own VmHWM: ru_maxrss would count the parent's peak too), and
the recovered parameters against the truth. The write stage also times L̄ and K alone
(``terms_s``, the slow part of a cold evidence build).

    python benchmarks/paper_scale.py --scale 0.25 [--out benchmarks/results/paper_scale-0.25.json]

(On a shared machine lower its priority: `echo 19 > /proc/$PID/autogroup`; the stages inherit it.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRUTH = {"alpha": 0.55, "beta": 0.2, "gamma": 1.5}
DIVERSITIES = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
STEPS, CHECKPOINTS, SEQUENCES, CONTEXT = 100_000, 100, 500, 128
RUN_EFFECT_SD, NOISE_SD = 0.3, 0.2


def sizes(scale: float) -> dict:
    return {"checkpoints": max(2, round(CHECKPOINTS * scale)), "sequences": max(8, round(SEQUENCES * scale)),
            "diversities": DIVERSITIES, "context_length": CONTEXT, "steps": STEPS}


def write_store(store: Path, scale: float, seed: int = 0, loss_sequences: int | None = None) -> dict:
    """The synthetic store (see the module docstring); returns what was planted."""
    import numpy as np

    import bayesicl as bic
    from bayesicl import rational
    from bayesicl.evidence.terms import make_strategy, terms_table
    from bayesicl.runs import RunWriter
    from bayesicl.seeds import stream
    from bayesicl.strategies import default_strategies
    from bayesicl.transformers.train import checkpoint_steps

    size = sizes(scale)
    task = bic.task("urns", num_dims=8, context_length=size["context_length"])
    strategies = default_strategies(task)
    steps = np.asarray(checkpoint_steps(size["steps"], size["checkpoints"]), dtype=np.float64)
    pools = {(d, seed): task.pool(d, seed=seed) for d in size["diversities"]}
    began = time.perf_counter()
    terms = terms_table(task, strategies, pools, num_sequences=loss_sequences)   # the L̄, K the fit uses
    terms_s = time.perf_counter() - began
    rng = stream((seed, 12), "synthetic")
    effects = rng.normal(0.0, RUN_EFFECT_SD, len(size["diversities"]))
    for r, diversity in enumerate(size["diversities"]):
        pool = pools[(diversity, seed)]
        evals = task.eval_sets(pool, seed=seed, num_sequences=size["sequences"])
        m, g = (make_strategy(task, kind, pool) for kind in strategies)
        pair = {split: (m(batch), g(batch)) for split, batch in evals.items()}
        loss = np.broadcast_to(terms.loss.loc[diversity].to_numpy(), (steps.size, 2))
        complexity = np.broadcast_to(terms.complexity.loc[diversity].to_numpy(), (steps.size, 2))
        log_w, _ = rational.log_weights((TRUTH["alpha"], TRUTH["beta"], TRUTH["gamma"]), loss, complexity, steps)
        logit = np.asarray(log_w)[:, 0] - np.asarray(log_w)[:, 1] + effects[r] + rng.normal(0.0, NOISE_SD, steps.size)
        weight = 1.0 / (1.0 + np.exp(-logit))
        writer = RunWriter(store / f"urns-D{diversity:04d}", task, pool, evals, seed=seed, dtype="float16",
                           config={"benchmark": "paper_scale", "scale": scale})
        for step, w in zip(steps.astype(int), weight):
            writer.log(int(step), {s: np.log(w * pm + (1 - w) * pg) for s, (pm, pg) in pair.items()}, loss=1.0)
        writer.finish(wall_time_s=0.0)
    return {"truth": TRUTH, "run_effects": effects.tolist(), "noise_sd": NOISE_SD, "terms_s": terms_s, **size}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM (Linux), else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, store: Path, scale: float, cache: Path, loss_sequences: int | None = None,
          draws: int = 500, seed: int = 0, compare_metrics: bool = False) -> dict:
    """One stage in this process: write, evidence, map or nuts."""
    os.environ["BAYESICL_CACHE_DIR"] = str(cache)
    began = time.perf_counter()
    out: dict = {}
    if name == "write":
        out["planted"] = write_store(store, scale, seed=seed, loss_sequences=loss_sequences)
    else:
        from bayesicl.evidence import build_evidence

        evidence = build_evidence(store, loss_sequences=loss_sequences)
        out["conditions"] = evidence.num_conditions
        if name in ("map", "nuts"):
            from bayesicl.inference import fit

            fit_began = time.perf_counter()
            result = fit(evidence, method=name, num_chains=2, num_samples=draws, num_warmup=draws)
            out["fit_s"] = time.perf_counter() - fit_began
            out["fit_peak_rss_mb"] = peak_rss_mb()          # before any comparison below
            out["params"] = result.report["params"]
            out["objective"] = result.report["objective"]["map_exact"]
            out["metrics_fit_id"] = result.report["metrics"]["fit"]["id"]
            if compare_metrics and name == "nuts":     # the tabulated metrics against the tokens
                import numpy as np

                from bayesicl import metrics

                table = result.conditions[result.conditions["split"] == "id"].sort_values("condition")
                w = table["predicted_weight"].to_numpy()
                weights = np.stack([w, 1 - w], axis=1)
                token_began = time.perf_counter()
                tokens = metrics.condition_metrics(evidence, weights, from_tokens=True)
                out["token_pass_s"] = time.perf_counter() - token_began
                tabulated = metrics.condition_metrics(evidence, weights)
                out["metrics_vs_tokens"] = {
                    name: {"max_abs_difference": float(np.nanmax(np.abs(tabulated[name] - tokens[name]))),
                           "mean_tabulated": float(np.nanmean(tabulated[name])),
                           "mean_tokens": float(np.nanmean(tokens[name]))}
                    for name in metrics.metric_names(evidence)}
    out["wall_s"] = time.perf_counter() - began
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's checkpoints and sequences")
    parser.add_argument("--store", default=None, help="folder for the store (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/paper_scale-SCALE.json)")
    parser.add_argument("--loss-sequences", type=int, default=None,
                        help="loss sequences per pool for L̄ (default: the package's; fewer for a smoke run)")
    parser.add_argument("--draws", type=int, default=500, help="NUTS warm-up and draws per chain (2 chains)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the pools, evaluation sets, planted run effects and noise (default: 0)")
    parser.add_argument("--chain-devices", type=int, default=None,
                        help="run the 2 NUTS chains on this many CPU devices (BAYESICL_CHAIN_DEVICES; default: 1)")
    parser.add_argument("--compare-metrics", action="store_true",
                        help="after the fits, also compute their metrics from the tokens and report the differences")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(stage(args.stage, Path(args.store), args.scale, Path(args.cache), args.loss_sequences,
                               args.draws, args.seed, args.compare_metrics)))
        return 0
    suffix = f"-seed{args.seed}" if args.seed else ""
    out = Path(args.out or Path(__file__).parent / "results" / f"paper_scale-{args.scale:g}{suffix}.json")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store or Path(tmp) / "store")
        results = {"scale": args.scale, "seed": args.seed, "loss_sequences": args.loss_sequences, "draws": args.draws,
                   "chain_devices": args.chain_devices or 1, "load_average": os.getloadavg(), "stages": {}}
        environment = dict(os.environ)
        if args.chain_devices:
            environment["BAYESICL_CHAIN_DEVICES"] = str(args.chain_devices)
        # The store is written with its own cache, so that the evidence build starts cold.
        caches = {"write": Path(tmp) / "write-cache", "evidence": Path(tmp) / "cache",
                  "map": Path(tmp) / "cache", "nuts": Path(tmp) / "cache"}
        for name in ("write", "evidence", "map", "nuts"):
            extra = ["--loss-sequences", str(args.loss_sequences)] if args.loss_sequences else []
            extra += ["--compare-metrics"] if args.compare_metrics else []
            done = subprocess.run([sys.executable, __file__, "--stage", name, "--store", str(store),
                                   "--scale", str(args.scale), "--cache", str(caches[name]),
                                   "--draws", str(args.draws), "--seed", str(args.seed), *extra],
                                  capture_output=True, text=True, env=environment)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            results["stages"][name] = json.loads(done.stdout.strip().splitlines()[-1])
            row = results["stages"][name]
            fit = f"  (fit {row['fit_s']:.1f} s)" if "fit_s" in row else ""
            print(f"{name:9s} {row['wall_s']:8.1f} s  peak RSS {row['peak_rss_mb']:7.0f} MB{fit}", flush=True)
        results["store_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2 ** 20
    nuts = results["stages"]["nuts"]["params"]
    results["recovered"] = {k: {"truth": TRUTH[k], **{q: nuts[k].get(q) for q in nuts[k]}} for k in TRUTH}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results["recovered"], indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
