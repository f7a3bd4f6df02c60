"""Add a task family to bayesicl and fit the rational model to it, end to end.

The family is balls and urns over a Zipfian vocabulary: d colours whose base rates fall off
as a Zipf law, π_v ∝ (v + 1)^(−s), and a task is an urn θ ~ Dirichlet(c·π) (concentration c,
so colour v has prior mean π_v). A sequence is a start token (id d), then x_1..x_T i.i.d. ~
Categorical(θ); output row t predicts x_{t+1} from x_1..x_t and every row is scored. The
built-in urns family is the special case s = 0, c = d (docs/model.md#urns); here the prior is
skewed, so its generalizing strategy is not the built-in one.

What the library needs from a new family, and what it then does by itself:

1. the task: a frozen dataclass that draws pools and sequences;
2. its strategies: memorizing M (a posterior over the D training urns) and generalizing G
   (the Dirichlet(c·π) posterior mean (c_v(t) + c·π_v) / (t + c)), each with a short
   canonical reference implementation whose compressed source is K_code, and its prior
   parameters (the pool for M, the d concentrations c·π for G) whose compressed bytes are K_data;
3. its loss for L̄: KL(θ ‖ p̂_t) per row;
4. one `bayesicl.families.FamilySpec` that names them, registered with `register_family`,
   the path the built-in families take too (`bayesicl/strategies/urns.py`).

Then `bayesicl.strategies.loss` and `complexity` give L̄_s(D) and K_s(D), a synthetic
"transformer" behaves as the rational model says at known (α, β, γ), with a little noise,
`bayesicl.evidence.evidence_from_arrays` measures it, and `bayesicl.inference.fit` recovers the
parameters.

    python examples/add_a_task_family.py --out example-out/zipfian-urns
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
from bayesicl.families import FamilySpec, StrategyBuilder, register_family
from bayesicl.seeds import stream

FAMILY = "zipfian_urns"
#: The parameters the synthetic transformer follows; the fit must find them again.
TRUE_PARAMS = {"alpha": 0.5, "beta": 0.3, "gamma": 1.0}


# -- 1. the task family ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ZipfianUrns(bic.tasks.Task):
    """Urns over a Zipfian vocabulary: θ ~ Dirichlet(c·π), π_v ∝ (v + 1)^(−s). A pool is (D, d)."""

    family: ClassVar[str] = FAMILY
    input_keys: ClassVar[tuple[str, ...]] = ("tokens",)

    num_dims: int = 8
    context_length: int = 32
    exponent: float = 1.0          # s
    concentration: float = 8.0     # c = Σ_v of the Dirichlet parameters

    @property
    def prior_concentrations(self) -> np.ndarray:
        """The Dirichlet parameters c·π, (d,)."""
        base = np.arange(1, self.num_dims + 1, dtype=np.float64) ** -self.exponent
        return self.concentration * base / base.sum()

    def _draw_pool(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.dirichlet(self.prior_concentrations, size=size)                     # (size, d)

    def validate_pool(self, pool: Any) -> np.ndarray:
        pool = np.asarray(pool, dtype=np.float64)
        if pool.ndim != 2 or pool.shape[1] != self.num_dims or pool.shape[0] < 1:
            raise BayesiclError(f"{FAMILY} pool has shape {pool.shape}, expected (D, {self.num_dims})")
        if np.any(pool < 0) or not np.allclose(pool.sum(-1), 1.0, atol=1e-6):
            raise BayesiclError(f"{FAMILY} pool rows must be probability vectors")
        return pool

    def _sample(self, pool, rng, num_sequences, task_index, probabilities) -> dict[str, np.ndarray]:
        theta = pool[task_index]                                                        # (B, d)
        cdf = np.cumsum(theta, axis=1)
        u = rng.random((num_sequences, self.context_length))
        draws = np.minimum((u[:, :, None] >= cdf[:, None, :]).sum(2), self.num_dims - 1)  # inverse CDF
        tokens = np.concatenate([np.full((num_sequences, 1), self.num_dims), draws], axis=1).astype(np.int32)
        # The true urn travels with the batch: the loss needs θ, strategies ignore it.
        return {"tokens": tokens, "theta": theta, "task_index": task_index.astype(np.int64)}

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        tokens = np.asarray(batch["tokens"]) if "tokens" in batch else None
        if tokens is None or tokens.ndim != 2 or tokens.shape[1] != self.context_length + 1:
            raise BayesiclError(f"{FAMILY} batch needs tokens (B, {self.context_length + 1})")
        if np.any(tokens[:, 0] != self.num_dims) or np.any(tokens[:, 1:] < 0) \
                or np.any(tokens[:, 1:] >= self.num_dims):
            raise BayesiclError(f"{FAMILY} tokens must be the start token {self.num_dims}, then colours")


# -- 2. canonical reference implementations: what K_code measures -------------------------------
# One sequence at a time, loops allowed, leading arguments = the prior parameters K_data
# measures. Docstrings and comments are free: the normalization drops them.

def memorizing_reference(pool, tokens):
    """M: posterior over the pool's urns from the colours seen; mix their distributions."""
    log_posterior = [0.0] * len(pool)
    rows = []
    for colour in tokens[1:]:
        top = max(log_posterior)
        weight = [math.exp(lp - top) for lp in log_posterior]
        total = sum(weight)
        rows.append([sum(w * theta[v] for w, theta in zip(weight, pool)) / total for v in range(len(pool[0]))])
        log_posterior = [lp + math.log(theta[colour]) for lp, theta in zip(log_posterior, pool)]
    return rows


def generalizing_reference(concentrations, tokens):
    """G: Dirichlet posterior mean (counts + concentrations) / (t + their sum)."""
    counts = [0] * len(concentrations)
    rows = []
    for colour in tokens[1:]:
        rows.append([(counts[v] + a) / (sum(counts) + sum(concentrations)) for v, a in enumerate(concentrations)])
        counts[colour] += 1
    return rows


# -- 3. fast strategies: what the evidence and L̄ call --------------------------------------------

def memorizing(task: ZipfianUrns, pool: np.ndarray):
    """M on a batch: (B, T+1) tokens → (B, T, d); vectorized over sequences, rows and urns."""
    log_theta = np.log(np.maximum(pool, 1e-300))                          # (D, d)

    def predict(batch: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(batch["tokens"])[:, 1:]
        counts = np.cumsum(np.eye(task.num_dims)[x], axis=1)               # c(t + 1), (B, T, d)
        counts = np.concatenate([np.zeros_like(counts[:, :1]), counts[:, :-1]], axis=1)   # c(t)
        log_post = counts @ log_theta.T                                    # (B, T, D)
        weights = np.exp(log_post - log_post.max(-1, keepdims=True))
        return (weights @ pool) / weights.sum(-1, keepdims=True)

    return predict


def generalizing(task: ZipfianUrns, pool: None):
    """G on a batch: (c_v(t) + c·π_v) / (t + c), (B, T, d)."""
    prior = task.prior_concentrations

    def predict(batch: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(batch["tokens"])[:, 1:]
        counts = np.cumsum(np.eye(task.num_dims)[x], axis=1)
        counts = np.concatenate([np.zeros_like(counts[:, :1]), counts[:, :-1]], axis=1)
        return (counts + prior) / (counts.sum(-1, keepdims=True) + prior.sum())

    return predict


# -- 4. the family's loss: KL(θ ‖ p̂_t) at every row -------------------------------------------------

def urn_kl(task: ZipfianUrns, log_probs: np.ndarray, batch: Mapping[str, Any]) -> np.ndarray:
    theta = np.asarray(batch["theta"])[:, None, :]
    return (xlogy(theta, theta) - theta * log_probs).sum(-1)


# -- 5. the family's spec: everything the stages ask about it, registered as urns registers ---------

register_family(FamilySpec(
    FAMILY, ZipfianUrns, loss=urn_kl,
    strategies={"memorizing": StrategyBuilder(FAMILY, "memorizing", memorizing, source=memorizing_reference),
                "generalizing": StrategyBuilder(FAMILY, "generalizing", generalizing,
                                                source=generalizing_reference,
                                                parameters=lambda task, pool: task.prior_concentrations)},
    output_dims=("position", "token"), input_dims={"tokens": ("slot",), "theta": ("token",)}))


# -- 6. a synthetic "transformer" that follows the rational model --------------------------------

def synthetic_transformer(m: np.ndarray, g: np.ndarray, weight_m: float, noise: float,
                          rng: np.random.Generator) -> np.ndarray:
    """log(w·M + (1 − w)·G) with Gaussian noise of scale `noise` on the logits, renormalized."""
    logits = np.log(weight_m * m + (1 - weight_m) * g) + noise * rng.standard_normal(m.shape)
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--colours", type=int, default=8, help="d, the number of colours")
    parser.add_argument("--exponent", type=float, default=1.0, help="s of the Zipfian base rates")
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
    out = Path(args.out or tempfile.mkdtemp(prefix="bayesicl-zipfian-urns-"))
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()

    task = bic.task(FAMILY, num_dims=args.colours, context_length=args.context_length,
                    exponent=args.exponent)
    strategies = ("memorizing", "generalizing")

    # The fast strategies must be the Bayes rules their canonical sources state.
    pool = task.pool(8, seed=args.seed)
    batch = task.sample(pool, 3, seed=args.seed)
    for fast, reference, prior in ((bic.strategies.memorizing(task, pool), memorizing_reference, pool),
                                   (bic.strategies.generalizing(task), generalizing_reference,
                                    task.prior_concentrations)):
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
    print(f"{FAMILY}: d = {task.num_dims}, s = {task.exponent}, T = {task.context_length}")
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

    evidence = evidence_from_arrays(
        task, strategies, np.array(transformer), np.array(strategy_outputs), diversity=diversity,
        step=step, loss=loss, complexity=complexity, cutoff="all", cache=False)

    from bayesicl.inference import fit
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
