"""Time the MAP and NUTS fits on a paper-sized evidence table (issue 4; docs/model.md#map, docs/model.md#nuts).

    python benchmarks/fit.py            # a few minutes on 2 cores

Evidence: 9 diversities (4 … 1024) × 40 checkpoints (log-spaced 20 … 100 000) × 2 splits ×
200 sequences × 64 positions × 8 tokens — urns, d = 8, T = 64, whose "transformer" is the
mixture of the REAL memorizing and generalizing strategies on each run's inputs with weights
from (α, β, γ) = (0.6, 0.2, 0.85) and log-odds noise of sd 0.1 per condition.

Reported separately: building the evidence (distances; the evidence stage, not the fit), the
one-off token-level tabulation of the objective and of the relative-distance curves, MAP
(8 starts, Newton polish on the exact objective; first call including JIT compilation and a
warm second call), NUTS with 4 chains × 1000 draws after 1000 warm-up steps for both chain
methods (cold: compiled from scratch into an empty JAX cache; warm: the compiled program
reused), and the whole `bayesicl.inference.fit` call including metrics, baselines and predictions.
Targets on 2 CPU cores: MAP ≤ 10 s, NUTS ≤ 90 s. The machine may be shared: the load average
is printed before and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bayesicl as bic  # noqa: E402
from bayesicl.inference import fit  # noqa: E402
from bayesicl.inference.data import fit_data  # noqa: E402
from bayesicl.inference.map import fit_map  # noqa: E402
from bayesicl.inference.model import resolve_priors  # noqa: E402
from bayesicl.inference.nuts import fit_nuts  # noqa: E402
from bayesicl.inference.split import fit_split  # noqa: E402
from bayesicl.inference.synthetic import strategy_outputs, synthetic_evidence, synthetic_terms  # noqa: E402

MG = ("memorizing", "generalizing")
DIVERSITIES = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEPS = np.unique(np.geomspace(20, 100_000, 40).astype(np.int64))
TRUTH = (0.6, 0.2, 0.85)


def clock(what: str, action):
    start = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - start
    print(f"  {what:<58s} {seconds:8.2f} s", flush=True)
    return value, seconds


def main() -> None:
    # An empty JAX cache, so that "cold" means compiled here and now.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="bayesicl-bench-jax-"))
    print(f"load average before: {os.getloadavg()}")
    task = bic.task("urns", num_dims=8, context_length=64)
    print(f"evidence: {len(DIVERSITIES)} diversities x {len(STEPS)} checkpoints x 2 splits x 200 sequences "
          f"x 64 positions x 8 tokens")
    (outputs, pools), _ = clock("strategies on the runs' inputs (setup)",
                                lambda: strategy_outputs(task, MG, DIVERSITIES, num_sequences=200, seed=0))
    terms, _ = clock("strategy losses and complexities, 1000 loss sequences (setup)",
                     lambda: synthetic_terms(task, MG, pools, loss_sequences=1000))

    def weights(loss, complexity, diversity, step):
        alpha, beta, gamma = TRUTH
        lm, lg = (loss.loc[diversity, k].to_numpy() for k in MG)
        km, kg = (complexity.loc[diversity, k].to_numpy() for k in MG)
        z = -gamma * step.astype(float) ** (1 - alpha) * (lm - lg) - math.log(2) * (km ** beta - kg ** beta)
        return 1 / (1 + np.exp(-(z + 0.1 * np.random.default_rng(0).standard_normal(z.size))))

    evidence, _ = clock("evidence table (distances, observed weights)",
                        lambda: synthetic_evidence(task, DIVERSITIES, STEPS, weights=weights,
                                                   outputs=(outputs, pools), terms=terms))
    in_fit = fit_split(evidence.conditions, 0.2)
    print(f"fit conditions: {int(in_fit.sum())} of {evidence.num_conditions}")
    data, tabulation = clock("tabulation: objective tables + relative-distance curves",
                             lambda: fit_data(evidence, in_fit))
    print(f"    of which the objective's token-level tables: {data.objective.tabulation_s:.2f} s")
    (result, map_cold) = clock("MAP, first call (8 starts, JIT compilation included)",
                               lambda: fit_map(data, "urns", seed=0))
    _, map_warm = clock("MAP, second call (warm)", lambda: fit_map(data, "urns", seed=0))
    print(f"    MAP: {result.params}, exact objective {result.objective:.6g}, "
          f"{result.newton_iterations} Newton steps")
    priors = resolve_priors("urns")
    timings = {}
    for method in ("vectorized", "sequential"):
        nuts, cold = clock(f"NUTS {method}, 4 chains x (1000 warm-up + 1000 draws), cold",
                           lambda: fit_nuts(data, priors, result, seed=0, chain_method=method))
        _, warm = clock(f"NUTS {method}, same again, warm (compiled program reused)",
                        lambda: fit_nuts(data, priors, result, seed=1, chain_method=method))
        timings[method] = (cold, warm)
        d = nuts.diagnostics
        print(f"    r_hat max {d['r_hat_max']:.4f}, ESS bulk min {d['ess_bulk_min']:.0f}, "
              f"divergences {d['divergences']}, "
              + ", ".join(f"{k} {np.mean(v):.4g}" for k, v in nuts.draws.items()))
    _, whole = clock("bayesicl.inference.fit(method='nuts'), everything, warm",
                     lambda: fit(evidence, method="nuts", seed=0))
    print()
    print(f"MAP: {map_cold:.1f} s cold, {map_warm:.1f} s warm (target ≤ 10 s); tabulation {tabulation:.1f} s")
    for method, (cold, warm) in timings.items():
        print(f"NUTS {method}: {cold:.1f} s cold, {warm:.1f} s warm (target ≤ 90 s)")
    print(f"whole fit (NUTS, with metrics and predictions): {whole:.1f} s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
