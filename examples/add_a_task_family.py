"""Add a task family to bayesicl and fit the rational model to it, end to end.

The family is the Markov chains of SPEC §2.4: a task is a V-state transition matrix P with
independent rows P[u] ~ Dirichlet(1), a sequence is a start token (id V), x_1 ~ Uniform(V),
then x_{k+1} ~ P[x_k]. Output row t predicts x_{t+1} from x_1..x_t; row 0 has no previous
state, so it is uniform for every strategy and never scored.

What the library needs from a new family, and what it then does by itself:

1. the task (`bayesicl.tasks.register`): a frozen dataclass that draws pools and sequences;
2. its strategies (`bayesicl.strategies.register`): here the bigram pair of SPEC §3.4,
   memorizing M (a posterior over the D training chains) and generalizing G (Dirichlet
   counts of the transitions out of the current state), each with a short canonical
   reference implementation whose compressed source is K_code, and its prior parameters
   (the pool for M, the Dirichlet concentrations for G) whose compressed bytes are K_data;
3. its loss for L̄ (`bayesicl.strategies.register_loss`): KL(P[x_t] ‖ p̂_t) per scored row.

Then `bayesicl.strategies.loss` and `complexity` give L̄_s(D) and K_s(D), a synthetic
"transformer" behaves as the rational model says at known (α, β, γ), with a little noise,
`bayesicl.evidence.evidence_from_arrays` measures it, and `bayesicl.fit.fit` recovers the
parameters.

    python examples/add_a_task_family.py --out example-out/markov
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import xlogy

import bayesicl as bic
from bayesicl import rational
from bayesicl.atomic import atomic_path
from bayesicl.errors import BayesiclError
from bayesicl.evidence import evidence_from_arrays
from bayesicl.seeds import stream

FAMILY = "markov_chains"
#: The parameters the synthetic transformer follows; the fit must find them again.
TRUE_PARAMS = {"alpha": 0.5, "beta": 0.3, "gamma": 1.0}


# -- 1. the task family ---------------------------------------------------------------------------

@bic.tasks.register
@dataclasses.dataclass(frozen=True)
class MarkovChains(bic.tasks.Task):
    """V-state Markov chains (SPEC §2.4); `num_dims` is V. A pool is (D, V, V) row-stochastic."""

    family: ClassVar[str] = FAMILY
    input_keys: ClassVar[tuple[str, ...]] = ("tokens",)

    num_dims: int = 4
    context_length: int = 32

    def _draw_pool(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.dirichlet(np.ones(self.num_dims), size=(size, self.num_dims))     # (size, V, V)

    def validate_pool(self, pool: Any) -> np.ndarray:
        pool = np.asarray(pool, dtype=np.float64)
        V = self.num_dims
        if pool.ndim != 3 or pool.shape[1:] != (V, V) or pool.shape[0] < 1:
            raise BayesiclError(f"{FAMILY} pool has shape {pool.shape}, expected (D, {V}, {V})")
        if np.any(pool < 0) or not np.allclose(pool.sum(-1), 1.0, atol=1e-6):
            raise BayesiclError(f"{FAMILY} pool rows must be probability vectors")
        return pool

    def _sample(self, pool, rng, num_sequences, task_index, probabilities) -> dict[str, np.ndarray]:
        P = pool[task_index]                                               # (B, V, V)
        rows = np.arange(num_sequences)
        x = np.empty((num_sequences, self.context_length), dtype=np.int32)
        x[:, 0] = rng.integers(self.num_dims, size=num_sequences)
        u = rng.random((num_sequences, self.context_length - 1))
        for k in range(self.context_length - 1):                           # inverse-CDF draws
            cdf = np.cumsum(P[rows, x[:, k]], axis=1)
            x[:, k + 1] = np.minimum((u[:, k, None] >= cdf).sum(1), self.num_dims - 1)
        tokens = np.concatenate([np.full((num_sequences, 1), self.num_dims, np.int32), x], axis=1)
        # The true chain travels with the batch: the loss needs P[x_t], strategies ignore it.
        return {"tokens": tokens, "transitions": P, "task_index": task_index.astype(np.int64)}

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        tokens = np.asarray(batch["tokens"]) if "tokens" in batch else None
        if tokens is None or tokens.ndim != 2 or tokens.shape[1] != self.context_length + 1:
            raise BayesiclError(f"{FAMILY} batch needs tokens (B, {self.context_length + 1})")
        if np.any(tokens[:, 0] != self.num_dims) or np.any(tokens[:, 1:] < 0) \
                or np.any(tokens[:, 1:] >= self.num_dims):
            raise BayesiclError(f"{FAMILY} tokens must be the start token {self.num_dims}, then states")


# -- 2. canonical reference implementations: what K_code measures -------------------------------
# One sequence at a time, loops allowed, leading arguments = the prior parameters K_data
# measures. Docstrings and comments are free: the normalization drops them.

def memorizing_reference(pool, tokens):
    """M: posterior over the pool's chains from the transitions seen; mix their next rows."""
    V = len(pool[0])
    x = tokens[1:]
    log_posterior = [0.0] * len(pool)
    rows = [[1 / V] * V]
    for t in range(1, len(x)):
        if t > 1:
            for i, P in enumerate(pool):
                log_posterior[i] += math.log(P[x[t - 2]][x[t - 1]])
        top = max(log_posterior)
        weight = [math.exp(lp - top) for lp in log_posterior]
        total = sum(weight)
        rows.append([sum(w * P[x[t - 1]][v] for w, P in zip(weight, pool)) / total for v in range(V)])
    return rows


def generalizing_reference(concentrations, tokens):
    """G: Dirichlet posterior mean of the current state's transition row."""
    V = len(concentrations)
    x = tokens[1:]
    counts = [[0] * V for _ in range(V)]
    rows = [[1 / V] * V]
    for t in range(1, len(x)):
        if t > 1:
            counts[x[t - 2]][x[t - 1]] += 1
        row = counts[x[t - 1]]
        prior = concentrations[x[t - 1]]
        rows.append([(row[v] + prior[v]) / (sum(row) + sum(prior)) for v in range(V)])
    return rows


# -- 3. fast strategies: what the evidence and L̄ call --------------------------------------------

def memorizing(task: MarkovChains, pool: np.ndarray):
    """M on a batch: (B, T+1) tokens → (B, T, V); vectorized over sequences, rows and chains."""
    log_P = np.log(np.maximum(pool, 1e-300))                              # (D, V, V)
    rows_of_pool = pool.reshape(len(pool), -1)                             # (D, V·V)

    def predict(batch: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(batch["tokens"])[:, 1:]
        B, T, V = x.shape[0], task.context_length, task.num_dims
        out = np.full((B, T, V), 1.0 / V)
        for start in range(0, B, 256):                                     # bounded memory
            xs = x[start:start + 256]
            # log π_i before row t = Σ of log P_i over the t−1 transitions seen, (D, b, T−1)
            steps = log_P[:, xs[:, :-2], xs[:, 1:-1]]
            log_post = np.concatenate([np.zeros_like(steps[..., :1]), np.cumsum(steps, -1)], -1)
            weights = np.exp(log_post - log_post.max(0))
            weights /= weights.sum(0)
            mix = np.tensordot(weights, rows_of_pool, axes=(0, 0)).reshape(len(xs), T - 1, V, V)
            out[start:start + 256, 1:] = np.take_along_axis(mix, xs[:, :-1, None, None], axis=2)[:, :, 0]
        return out

    return predict


def generalizing(task: MarkovChains, pool: None):
    """G on a batch: (n(x_t→v) + 1) / (n(x_t→·) + V) from the transitions seen, (B, T, V)."""
    V = task.num_dims

    def predict(batch: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(batch["tokens"])[:, 1:]
        B, T = x.shape
        seen = np.zeros((B, T - 1, V * V))
        seen[:, 1:][np.arange(B)[:, None], np.arange(T - 2), x[:, :-2] * V + x[:, 1:-1]] = 1
        counts = np.cumsum(seen, axis=1).reshape(B, T - 1, V, V)           # before rows 1..T−1
        row = np.take_along_axis(counts, x[:, :-1, None, None], axis=2)[:, :, 0]
        out = np.full((B, T, V), 1.0 / V)
        out[:, 1:] = (row + 1) / (row.sum(-1, keepdims=True) + V)
        return out

    return predict


# -- 4. the family's loss: KL(P[x_t] ‖ p̂_t) at the scored rows 1..T−1 ----------------------------

def transition_kl(task: MarkovChains, log_probs: np.ndarray, batch: Mapping[str, Any]) -> np.ndarray:
    x = np.asarray(batch["tokens"])[:, 1:]
    P = np.asarray(batch["transitions"])
    truth = np.take_along_axis(P, x[:, :-1, None], axis=1)                 # (B, T−1, V) = P[x_t]
    return (xlogy(truth, truth) - truth * log_probs[:, 1:]).sum(-1)


bic.strategies.register(FAMILY, "memorizing", memorizing, source=memorizing_reference)
bic.strategies.register(FAMILY, "generalizing", generalizing, source=generalizing_reference,
                        parameters=lambda task, pool: np.ones((task.num_dims, task.num_dims)))
bic.strategies.register_loss(FAMILY, transition_kl)


# -- 5. a synthetic "transformer" that follows the rational model --------------------------------

def synthetic_transformer(m: np.ndarray, g: np.ndarray, weight_m: float, noise: float,
                          rng: np.random.Generator) -> np.ndarray:
    """log(w·M + (1 − w)·G) with Gaussian noise of scale `noise` on the logits, renormalized."""
    logits = np.log(weight_m * m + (1 - weight_m) * g) + noise * rng.standard_normal(m.shape)
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--states", type=int, default=4, help="V, the number of states")
    parser.add_argument("--context-length", type=int, default=32)
    parser.add_argument("--diversities", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--steps", type=int, nargs="+",
                        default=np.unique(np.geomspace(20, 200_000, 16).round()).astype(int).tolist())
    parser.add_argument("--eval-sequences", type=int, default=128)
    parser.add_argument("--loss-sequences", type=int, default=4000)
    parser.add_argument("--noise", type=float, default=0.05, help="logit noise of the synthetic transformer")
    parser.add_argument("--method", choices=("map", "nuts"), default="map")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bayesicl-markov-"))
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()

    task = bic.task(FAMILY, num_dims=args.states, context_length=args.context_length)
    strategies = ("memorizing", "generalizing")

    # The fast strategies must be the Bayes rules their canonical sources state.
    pool = task.pool(8, seed=args.seed)
    batch = task.sample(pool, 3, seed=args.seed)
    for fast, reference, prior in ((bic.strategies.memorizing(task, pool), memorizing_reference, pool),
                                   (bic.strategies.generalizing(task), generalizing_reference,
                                    np.ones((task.num_dims, task.num_dims)))):
        expected = np.array([reference(prior, list(tokens)) for tokens in batch["tokens"]])
        np.testing.assert_allclose(fast(batch), expected, atol=1e-10, err_msg=f"{fast.name} vs its reference")

    # L̄_s(D) and K_s(D), computed by the library for the new family.
    pools, loss, complexity = {}, {}, {}
    for D in args.diversities:
        pools[D] = task.pool(D, seed=args.seed)
        made = bic.strategies.for_task(task, pools[D], strategies)
        loss[D] = [bic.strategies.loss(task, made[s], pools[D], num_sequences=args.loss_sequences,
                                       seed=args.seed) for s in strategies]
        complexity[D] = [bic.strategies.complexity(made[s]) for s in strategies]
    loss = pd.DataFrame.from_dict(loss, orient="index", columns=list(strategies))
    complexity = pd.DataFrame.from_dict(complexity, orient="index", columns=list(strategies))
    print(f"{FAMILY}: V = {task.num_dims}, T = {task.context_length}")
    print(pd.concat({"L̄ (nats/token)": loss, "K (bits)": complexity}, axis=1).round(4).to_string())

    # Strategy outputs on each run's ID and OOD sets, and the synthetic transformer's at each
    # (D, N): the mixture with the rational model's weight w_M at TRUE_PARAMS, plus noise.
    diversity = np.repeat(args.diversities, len(args.steps))
    step = np.tile(args.steps, len(args.diversities))
    _, weights = rational.log_weights(TRUE_PARAMS, loss.loc[diversity].to_numpy(),
                                      complexity.loc[diversity].to_numpy(), step.astype(float))
    weight_m = np.asarray(weights)[:, 0]
    rng = stream(args.seed, "synthetic")
    strategy_outputs, transformer = [], []
    for r, D in enumerate(args.diversities):
        evals = task.eval_sets(pools[D], seed=args.seed, num_sequences=args.eval_sequences)
        m, g = bic.strategies.memorizing(task, pools[D]), bic.strategies.generalizing(task)
        per_split = [(m(evals[s]), g(evals[s])) for s in ("id", "ood")]
        strategy_outputs.append([[np.log(p) for p, _ in per_split], [np.log(q) for _, q in per_split]])
        for c in np.flatnonzero(diversity == D):
            transformer.append([synthetic_transformer(p, q, weight_m[c], args.noise, rng) for p, q in per_split])

    scored = np.arange(task.context_length) > 0                            # row 0 is not scored
    evidence = evidence_from_arrays(
        task, strategies, np.array(transformer), np.array(strategy_outputs), diversity=diversity,
        step=step, loss=loss, complexity=complexity, cutoff="all", scored=scored, cache=False)

    from bayesicl.fit import fit
    from bayesicl.plot import phase_diagram

    result = fit(evidence, method=args.method, seed=args.seed)
    result.save(out / "fit")
    with atomic_path(out / "phase_diagram.png") as tmp:
        phase_diagram(result).savefig(tmp, dpi=110, format="png")

    print(f"\n{'':>6} {'true':>8} {'fitted':>8}")
    for name, value in TRUE_PARAMS.items():
        print(f"{name:>6} {value:8.4f} {result.params[name]:8.4f}")
    correlation = result.summary()["metrics"]["all"]["id"]["correlation"]
    print(f"correlation of predicted vs observed w_M (ID, all conditions): {correlation:.4f}")
    print(f"wrote {out} ({time.perf_counter() - clock:.0f} s)")
    return {"params": dict(result.params), "true_params": dict(TRUE_PARAMS), "loss": loss,
            "complexity": complexity, "correlation": correlation, "result": result, "out": out}


if __name__ == "__main__":
    main()
