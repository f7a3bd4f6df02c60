"""Time every closed-form strategy on paper-sized inputs (issue 2 acceptance; docs/model.md#strategies).

    python benchmarks/strategies.py            # < 5 min on 2 cores

500 sequences per call; markov M2 V = 8, T = 128 at D = 4096 (against a vectorized NumPy
float32 floor rather than a loop; `python benchmarks/strategies.py markov` runs only it); urns d = 8, T = 128; regression d = 8, T = 16; classification d = 8,
T = 128; memorizing at D ∈ {64, 1024, 4096}. For each strategy it reports the first call
(JIT compilation included) separately from the median of `REPEATS` warm calls, and the ratio
against a straightforward NumPy float64 implementation measured in the same run: a Python loop
over positions t that recomputes the posterior from the counts (or sufficient statistics) at
each t, vectorized over sequences and pool (classification, which has one query per sequence,
loops over sequences instead). The maximum absolute difference between the two is printed as a
sanity check. Targets: urns M at D = 4096 ≤ 0.5 s; regression M at D = 4096 ≤ 0.2 s.

Threads are set deliberately before JAX or NumPy load: XLA's CPU backend may use both cores
(Eigen thread pool, intra-op parallelism 2) and NumPy's BLAS is held to 2 threads, so the two
columns compete on equal terms. The machine may be shared: the load average is printed before
and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import bayesicl as bic  # noqa: E402

NUM_SEQUENCES = 500
DIVERSITIES = (64, 1024, 4096)
REPEATS = 5
SETTINGS = {
    "urns": dict(num_dims=8, context_length=128),
    "regression": dict(num_dims=8, context_length=16),
    "classification": dict(num_dims=8, context_length=128),
}


# -- straightforward NumPy float64 implementations (the comparison column) ----------------

def _softmax_rows(logits):
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def loop_urns(task, kind, pool, batch):
    x = batch["tokens"][:, 1:]
    num, length, d = x.shape[0], task.context_length, task.num_dims
    out = np.empty((num, length, d))
    log_pool = np.log(pool) if pool is not None else None
    for t in range(length):
        counts = np.stack([np.bincount(row[:t], minlength=d) for row in x]).astype(np.float64)
        if kind == "memorizing":
            out[:, t] = _softmax_rows(counts @ log_pool.T) @ pool
        elif kind == "generalizing":
            out[:, t] = (counts + task.concentration) / (t + d * task.concentration)
        else:
            out[:, t] = 1.0 / d
    return out


def loop_regression(task, kind, pool, batch):
    x, y = batch["x"], batch["y"]
    num, length, d = x.shape
    variance = task.noise_variance
    out = np.zeros((num, length))
    for t in range(length):
        if kind == "memorizing":
            residuals = y[:, :t, None] - np.einsum("bkd,id->bki", x[:, :t], pool)
            weights = _softmax_rows(-(residuals**2).sum(axis=1) / (2 * variance))
            out[:, t] = (weights * (x[:, t] @ pool.T)).sum(axis=1)
        elif kind == "generalizing":
            gram = np.einsum("bki,bkj->bij", x[:, :t], x[:, :t]) + variance * np.eye(d)
            w_hat = np.linalg.solve(gram, np.einsum("bki,bk->bi", x[:, :t], y[:, :t])[..., None])[..., 0]
            out[:, t] = (w_hat * x[:, t]).sum(axis=1)
    return out


def loop_classification(task, kind, pool, batch):
    x, labels = batch["x"], batch["labels"]
    num, _, d = x.shape
    eps, num_labels = task.within_class_variance, task.num_labels
    out = np.full((num, num_labels), 1.0 / num_labels)
    for b in range(num):
        if kind == "memorizing":
            query = np.sqrt(1 + eps) * x[b, -1]
            weights = _softmax_rows(-d / (2 * eps) * ((query - pool.means) ** 2).sum(axis=1))
            out[b] = weights @ np.eye(num_labels)[pool.labels]
        elif kind == "generalizing":
            scale = d * (1 + eps) ** 2 / (2 * eps * (2 + eps))
            weights = _softmax_rows(-scale * ((x[b, -1] - x[b, :-1] / (1 + eps)) ** 2).sum(axis=1))
            out[b] = weights @ np.eye(num_labels)[labels[b, :-1]]
    return np.clip(out, 1e-5, 1 - 1e-5)


LOOPS = {"urns": loop_urns, "regression": loop_regression, "classification": loop_classification}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# -- markov M2: the JAX scan against a vectorized NumPy floor -----------------------------------

MARKOV = dict(num_states=8, context_length=128)
MARKOV_DIVERSITY = 4096


def numpy_bigram_memorizing(pool, tokens, chunk=8):
    """M2 as plain vectorized NumPy float32, the floor a straightforward implementation reaches:
    per chunk of sequences one gather of log P_i[x_k, x_{k+1}] (D, b, T−2), one cumsum over
    positions, one exp, and one matmul of the posteriors with the flattened chains (D, V·V)."""
    x = tokens[:, 1:]
    num, length = x.shape
    D, V = pool.shape[:2]
    log_pool = np.log(pool).astype(np.float32)
    pool_rows = pool.reshape(D, V * V).astype(np.float32)
    out = np.full((num, length, V), 1.0 / V, dtype=np.float32)
    for start in range(0, num, chunk):
        xs = x[start:start + chunk]
        b = xs.shape[0]
        steps = log_pool[:, xs[:, :-2], xs[:, 1:-1]]                       # (D, b, T − 2)
        log_post = np.concatenate([np.zeros((D, b, 1), np.float32), np.cumsum(steps, axis=-1)], axis=-1)
        post = np.exp(log_post - log_post.max(axis=0))
        post /= post.sum(axis=0)                                            # (D, b, T − 1)
        mixture = (post.reshape(D, -1).T @ pool_rows).reshape(b, length - 1, V, V)
        out[start:start + b, 1:] = np.take_along_axis(mixture, xs[:, :-1, None, None], axis=2)[:, :, 0]
    return out


def markov_case() -> None:
    task = bic.task("markov", **MARKOV)
    pool = task.pool(MARKOV_DIVERSITY, seed=0)
    batch = task.sample(pool, NUM_SEQUENCES, seed=1, purpose="id_sequences")
    strategy = bic.strategies.memorizing(task, pool, order=2)
    first, _ = timed(lambda: strategy(batch), 1)
    warm, out = timed(lambda: strategy(batch), REPEATS)
    floor, reference = timed(lambda: numpy_bigram_memorizing(pool, batch["tokens"]), 3)
    print(f"{'markov V=8 T=128':15} {'M2':9} {MARKOV_DIVERSITY:>5} {first:10.3f}s {warm:11.4f}s "
          f"{floor:10.3f}s {floor / warm:8.1f}x {np.abs(out - reference).max():11.1e}   "
          "(baseline: vectorized NumPy float32 floor, not a loop)", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["markov"]:                   # only the markov case: python benchmarks/strategies.py markov
        print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
        markov_case()
        print(f"load average after: {os.getloadavg()}")
        return 0
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}; "
          f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}")
    header = f"{'family':15} {'strategy':9} {'D':>5} {'first call':>11} {'warm median':>12} " \
             f"{'numpy loop':>11} {'speed-up':>9} {'max |diff|':>11}"
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for family, params in SETTINGS.items():
        task = bic.task(family, **params)
        full_pool = task.pool(max(DIVERSITIES), seed=0)
        batch = task.sample(full_pool, NUM_SEQUENCES, seed=1, purpose="id_sequences")
        cases = [("memorizing", diversity) for diversity in DIVERSITIES] + [("generalizing", None), ("constant", None)]
        for kind, diversity in cases:
            pool = task.pool(diversity, seed=0) if diversity else None
            strategy = (bic.strategies.memorizing(task, pool) if kind == "memorizing"
                        else bic.strategies.Strategy(kind, task))
            first, _ = timed(lambda: strategy(batch), 1)
            warm, out = timed(lambda: strategy(batch), REPEATS)
            loop_repeats = 1 if diversity and diversity >= 1024 else 3      # seconds each
            loop_time, reference = timed(lambda: LOOPS[family](task, kind, pool, batch), loop_repeats)
            print(f"{family:15} {strategy.name:9} {diversity or '-':>5} {first:10.3f}s {warm:11.4f}s "
                  f"{loop_time:10.3f}s {loop_time / warm:8.1f}x {np.abs(out - reference).max():11.1e}",
                  flush=True)
    markov_case()
    print(f"total {time.perf_counter() - started:.0f} s; load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
