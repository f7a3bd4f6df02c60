"""Synthetic recovery of the population model across configurations (issue 16).

For each of 5 random populations (seeds 0 … 4): synthetic urns evidence (d = 4; 4 diversities
4 … 32 × 5 log-spaced steps 100 … 10 000; 8 sequences, 128 loss sequences) for the 9
configurations mlp_width ∈ {16, 32, 64} × context_length ∈ {8, 16, 32}, drawn through
`bayesicl.inference.synthetic.synthetic_population` from a known population (covariate slopes,
between-configuration sd τ) with run effects: a per-run log-odds offset (sd 0.5), an AR(1)
deviation (sd 0.2, lag-1 correlation 0.5) and independent log-odds noise (sd 0.2). The centre configuration (mlp_width 32,
context_length 16) is held out; the other 8 are fitted with partial pooling (NUTS,
effects run+trend, no OOD stage). Checks:

- the 90% intervals of μ (3), B (3 × 2) and τ (3) cover the truth (12 checks per
  population, 60 in all; target ≥ 80%);
- the held-out configuration's true N*(D) lies inside its predicted 90% interval
  (`PopulationResult.predict`, L̄ and K computed from its task) for ≥ 80% of diversities.

    nice python benchmarks/population.py [--chains 2] [--draws 400] [--warmup 400] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import bayesicl as bic
from bayesicl.inference.population import fit_population
from bayesicl.inference.synthetic import synthetic_population

GRID = {"mlp_width": [16, 32, 64], "context_length": [8, 16, 32]}
HELD_OUT = {"mlp_width": 32, "context_length": 16}
DIVERSITIES = [4, 8, 16, 32]
STEPS = np.unique(np.geomspace(100, 10_000, 5).astype(np.int64))
LOSS_SEQUENCES = 128


def one_population(seed: int, chains: int, draws: int, warmup: int) -> dict:
    clock = time.perf_counter()
    task = bic.task("urns", num_dims=4, context_length=16)
    population = synthetic_population(task, GRID, DIVERSITIES, STEPS, num_sequences=8,
                                      loss_sequences=LOSS_SEQUENCES, run_sd=0.5, trend_sd=0.2, trend_corr=0.5,
                                      noise_sd=0.2, seed=seed)
    held = population.settings.index(HELD_OUT)
    train = [e for j, e in enumerate(population.evidence) if j != held]
    built = time.perf_counter() - clock
    result = fit_population(train, pool="partial", num_chains=chains, num_samples=draws, num_warmup=warmup,
                            seed=seed, ood_stage=False, loss_sequences=LOSS_SEQUENCES)
    truth = population.truth(result.state["covariates"])
    checks = []
    for k, name in enumerate(result.population["parameters"]):
        for key, value, entry in (("mu", truth["mu"][k], result.population["mu"][name]),
                                  ("tau", truth["tau"][k], result.population["tau"][name])):
            checks.append({"parameter": f"{key}[{name}]", "truth": float(value), "low": entry["low"],
                           "high": entry["high"], "covered": bool(entry["low"] <= value <= entry["high"])})
        for p, covariate in enumerate(result.state["covariates"].names):
            entry = result.population["B"][name][covariate]
            value = truth["B"][k, p]
            checks.append({"parameter": f"B[{name},{covariate}]", "truth": float(value), "low": entry["low"],
                           "high": entry["high"], "covered": bool(entry["low"] <= value <= entry["high"])})
    prediction = result.predict(DIVERSITIES, [float(np.median(STEPS))], HELD_OUT, seed=seed)
    alpha, beta, gamma = population.params[held]
    loss, bits = population.evidence[held].loss, population.evidence[held].complexity
    heldout = []
    for row in prediction.transitions.to_dict(orient="records"):
        d = int(row["diversity"])
        true = float(bic.rational.transition_step(alpha, beta, gamma, loss.loc[d].iloc[0], loss.loc[d].iloc[1],
                                                  bits.loc[d].iloc[0], bits.loc[d].iloc[1]))
        inside = row["low"] <= true <= row["high"] or (math.isinf(true) and math.isinf(row["high"]))
        heldout.append({"diversity": d, "true": true, "median": float(row["transition_step"]),
                        "low": float(row["low"]), "high": float(row["high"]), "inside": bool(inside)})
    return {"seed": seed, "checks": checks, "heldout": heldout, "diagnostics": result.report["diagnostics"],
            "evidence_s": built, "fit_s": result.report["runtime_s"], "true_theta": population.theta.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=5, help="random populations (default: %(default)s)")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=400, help="NUTS draws per chain (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=400, help="NUTS warm-up per chain (default: %(default)s)")
    parser.add_argument("--out", default=None, help="write the rows as JSON (default: print only)")
    args = parser.parse_args()
    rows = []
    for seed in range(args.populations):
        row = one_population(seed, args.chains, args.draws, args.warmup)
        rows.append(row)
        covered = sum(c["covered"] for c in row["checks"])
        inside = sum(h["inside"] for h in row["heldout"])
        d = row["diagnostics"]
        print(f"population {seed}: {covered}/{len(row['checks'])} population checks covered, held-out N* inside "
              f"{inside}/{len(row['heldout'])}; r_hat {d['r_hat_max']:.3f}, divergences {d['divergences']}, "
              f"fit {row['fit_s']:.0f} s", flush=True)
        if args.out:
            _write(args.out, rows, args)
    checks = [c["covered"] for r in rows for c in r["checks"]]
    inside = [h["inside"] for r in rows for h in r["heldout"]]
    print(f"population parameters covered: {sum(checks)}/{len(checks)} = {np.mean(checks):.2f} (target >= 0.80)")
    print(f"held-out N*(D) inside 90% interval: {sum(inside)}/{len(inside)} = {np.mean(inside):.2f} (target >= 0.80)")
    if args.out:
        _write(args.out, rows, args)


def _write(path: str, rows: list, args) -> None:
    checks = [c["covered"] for r in rows for c in r["checks"]]
    inside = [h["inside"] for r in rows for h in r["heldout"]]
    with open(path, "w") as handle:
        json.dump({"settings": {"grid": GRID, "held_out": HELD_OUT, "diversities": DIVERSITIES,
                                "steps": STEPS.tolist(), "chains": args.chains, "draws": args.draws,
                                "warmup": args.warmup, "run_sd": 0.5, "trend_sd": 0.2, "trend_corr": 0.5,
                                "noise_sd": 0.2},
                   "coverage": float(np.mean(checks)) if checks else None, "checks": len(checks),
                   "heldout_inside": float(np.mean(inside)) if inside else None, "heldout_checks": len(inside),
                   "populations": rows}, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
