"""Strategy loss L̄_s(D) (docs/model.md#strategy-loss): the average per-token loss on the training distribution.

Per scored position (all T rows for urns and regression, the query for classification):

- urns: KL(θ ‖ p̂_t) = Σ_v θ_v (log θ_v − log p̂_t[v])   (θ from batch["theta"]);
- regression: (ŷ_t − w·x_t)² / (2σ²) + ½, the lower-variance form of the squared error
  (y_t − ŷ_t)²/(2σ²) with the same expectation (w from batch["w"]);
- classification: −log p̂[target], with the clamped probabilities of docs/model.md#classification-strategies;
- markov: KL(P[x_t] ‖ p̂_t) on rows 1..T−1;
- a family added with `bayesicl.tasks.register`: the loss given to `register_loss`.

Each family's loss is the `loss` of its spec (`bayesicl.families`), in its own module.

L̄ is a median of means over sequences drawn with `task.sample(pool, n, seed,
purpose="loss_sequences")`, the same sequences for every strategy (common random numbers).
`paired_losses` evaluates several strategies on one draw of those sequences and adds what
the difference between two separately taken medians of means cannot give precisely: the
paired difference ΔL̄_s = L̄_s − L̄_ref, one median of means of the per-sequence difference,
and Monte-Carlo standard errors (`median_of_means_se`).

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=4, context_length=8)
>>> pool = task.pool(4, seed=0)
>>> strategies = bic.strategies.for_task(task, pool)
>>> losses = {n: loss(task, s, pool, num_sequences=400) for n, s in strategies.items()}
>>> losses["memorizing"] < losses["generalizing"]      # four tasks are easy to tell apart
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import BayesiclError
from ..seeds import Seed, stream
from ..families import family_spec
from ..tasks import Task
from .base import Strategy

#: Sequences evaluated at a time, so that outputs of 50 000 sequences never sit in memory.
_SEQUENCES_PER_STEP = 2_000


def per_position_loss(task: Task, strategy: Strategy | Callable[[Mapping], Any],
                      batch: Mapping[str, Any]) -> np.ndarray:
    """Loss at every scored position: (n, T) for urns and regression, (n,) for classification.

    `strategy` is a `Strategy` or any callable with the same output layout (a transformer's
    outputs, for instance). The family's spec gives the loss, from the float64 log-probabilities
    (distribution families) or predictions. float64.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=2, context_length=3)
    >>> batch = {"tokens": [[2, 0, 0, 1]], "theta": [[0.5, 0.5]]}
    >>> per_position_loss(task, bic.strategies.constant(task), batch).tolist()   # KL(θ‖uniform)
    [[0.0, 0.0, 0.0]]
    """
    if not isinstance(batch, Mapping):
        raise BayesiclError(f"per_position_loss takes a batch mapping, got {type(batch).__name__}")
    task.validate_batch(batch)
    spec = family_spec(task)
    if spec.loss is None:
        raise BayesiclError(f"no strategy loss is defined for task family {task.family!r} "
                            "(register one with bayesicl.strategies.register_loss)")
    if spec.distribution:
        outputs = _log_probs(strategy, batch)
    else:
        outputs = np.asarray(strategy(batch), dtype=np.float64)
    values = np.asarray(spec.loss(task, outputs, batch), dtype=np.float64)
    if values.ndim < 1 or values.shape[0] != outputs.shape[0]:
        raise BayesiclError(f"the {task.family} loss returned shape {values.shape}, "
                            f"expected ({outputs.shape[0]}, ...) losses per scored position")
    return values


def median_of_means(losses: np.ndarray, seed: Seed = 0) -> float:
    """Median over ⌈√n⌉ blocks of the mean loss of each block's sequences (all positions).

    The n sequences (axis 0 of `losses`) are permuted with the `median_of_means` stream of
    `seed`, then split into ⌈√n⌉ contiguous blocks of near-equal size.

    >>> median_of_means(np.array([1.0, 1.0, 1.0, 1.0, 100.0]), seed=0)
    1.0
    """
    return float(np.median(_block_means(losses, seed)))


def median_of_means_se(losses: np.ndarray, seed: Seed = 0) -> float:
    """Monte-Carlo standard error of `median_of_means(losses, seed)`, from its own blocks.

    With k = ⌈√n⌉ blocks, each block mean is close to normal (it averages √n sequences), and
    the median of k normal values with standard deviation σ_b has standard error
    √(π/2)·σ_b/√k. σ_b is estimated robustly, as 1.4826 × the median absolute deviation of
    the block means, so that the few outlying blocks the median of means guards against do
    not inflate it. One block (n ≤ 1) gives 0.

    >>> rng = np.random.default_rng(0)
    >>> se = median_of_means_se(rng.standard_normal(10_000), seed=0)   # σ/√n = 0.01
    >>> 0.008 < se < 0.018          # √(π/2) = 1.25 × the SE of a plain mean
    True
    """
    block_means = _block_means(np.asarray(losses, dtype=np.float64), seed)
    spread = 1.4826 * float(np.median(np.abs(block_means - np.median(block_means))))
    return math.sqrt(math.pi / 2) * spread / math.sqrt(block_means.size)


def _block_means(losses: np.ndarray, seed: Seed) -> np.ndarray:
    """The ⌈√n⌉ block means of the median of means (blocks of a seeded permutation)."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim < 1 or losses.shape[0] < 1:
        raise BayesiclError("median_of_means needs at least one sequence")
    if not np.all(np.isfinite(losses)):
        raise BayesiclError("median_of_means got NaN or infinite losses")
    n = losses.shape[0]
    order = stream(seed, "median_of_means").permutation(n)
    blocks = np.array_split(order, math.ceil(math.sqrt(n)))
    per_sequence = losses.reshape(n, -1).mean(axis=1)                # equal positions per sequence
    return np.array([per_sequence[block].mean() for block in blocks])


def loss(task: Task, strategy: Strategy | Callable[[Mapping], Any], pool: Any,
         num_sequences: int | None = None, seed: Seed = 0, *, zipf: float | None = None) -> float:
    """L̄_s: median of means of `per_position_loss` on fresh training-distribution sequences.

    Sequences: `task.sample(pool, num_sequences, seed, purpose="loss_sequences", zipf=zipf)`
    (default 10 000; 50 000 for classification); pass the `zipf` exponent the transformer was
    trained with. The blocks come from `median_of_means(…, seed)`.

    >>> import bayesicl as bic
    >>> task = bic.task("regression", num_dims=4, context_length=8)
    >>> pool = task.pool(16, seed=0)
    >>> strategies = bic.strategies.for_task(task, pool, names=("M", "G", "C"))
    >>> {n: round(loss(task, s, pool, num_sequences=100), 1) for n, s in strategies.items()}
    {'M': 21.4, 'G': 46.6, 'C': 130.5}
    """
    return median_of_means(sequence_losses(task, [strategy], pool, num_sequences, seed, zipf=zipf)[:, 0], seed)


def sequence_losses(task: Task, strategies, pool: Any, num_sequences: int | None = None,
                    seed: Seed = 0, *, zipf: float | None = None) -> np.ndarray:
    """Per-sequence mean loss of each strategy on one draw of the loss sequences, (n, S).

    Column s holds, for each of the n sequences of `task.sample(pool, n, seed,
    purpose="loss_sequences", zipf=zipf)`, the mean of `per_position_loss` over its scored
    positions for `strategies[s]`: the same sequences for every strategy, so the columns
    can be differenced sequence by sequence. float64.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=4, context_length=8)
    >>> pool = task.pool(4, seed=0)
    >>> sequence_losses(task, [bic.strategies.memorizing(task, pool)], pool, 30).shape
    (30, 1)
    """
    if num_sequences is None:
        num_sequences = family_spec(task).loss_sequences
    strategies = list(strategies)
    batch = task.sample(pool, num_sequences, seed, purpose="loss_sequences", zipf=zipf)
    columns = []
    for strategy in strategies:
        per_position = np.concatenate([
            per_position_loss(task, strategy, {k: v[start:start + _SEQUENCES_PER_STEP] for k, v in batch.items()})
            for start in range(0, num_sequences, _SEQUENCES_PER_STEP)])
        columns.append(per_position.reshape(num_sequences, -1).mean(axis=1))
    return np.stack(columns, axis=1) if columns else np.empty((num_sequences, 0))


@dataclasses.dataclass(frozen=True)
class PairedLosses:
    """L̄_s of several strategies on one set of loss sequences, with paired differences.

    ``loss[s]`` is L̄_s (equal to `loss(task, s, pool, n, seed)`), ``loss_se[s]`` its
    Monte-Carlo standard error; ``difference[s]`` is ΔL̄_s = L̄_s − L̄_ref, the median of
    means of the per-sequence difference (the same blocks), and ``difference_se[s]`` its
    standard error (0 for the reference itself). All keyed by the names given.
    """

    reference: str
    num_sequences: int
    loss: dict[str, float]
    loss_se: dict[str, float]
    difference: dict[str, float]
    difference_se: dict[str, float]

    def unresolved(self, z: float = 2.0) -> list[str]:
        """Strategies whose |ΔL̄_s| < z × its standard error: the sign of ΔL̄ is not known.

        >>> PairedLosses("G", 100, {}, {}, {"M": -0.01, "G": 0.0}, {"M": 0.02, "G": 0.0}).unresolved()
        ['M']
        """
        return [name for name, value in self.difference.items()
                if name != self.reference and abs(value) < z * self.difference_se[name]]


def paired_losses(task: Task, strategies: Mapping[str, Strategy | Callable[[Mapping], Any]], pool: Any,
                  num_sequences: int | None = None, seed: Seed = 0, *, reference: str = "generalizing",
                  zipf: float | None = None) -> PairedLosses:
    """L̄_s, ΔL̄_s = L̄_s − L̄_reference paired on common sequences, and their standard errors.

    `strategies` maps names to strategies (as `for_task` returns them); `reference` is one
    of the names, the strategy every other is compared with (the generalizing one in the
    paper's two-strategy model). The sequences and blocks are those of `loss`, so
    ``loss[s]`` equals `loss(task, strategies[s], pool, num_sequences, seed)`. The
    difference is ONE median of means of the per-sequence differences: the sequences that
    are hard for one strategy are hard for the other too, and differencing first removes
    that shared variation, where L̄_M − L̄_G of two separate medians of means keeps it (and
    each median may pick a different block). Standard errors: `median_of_means_se`.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=64)
    >>> pool = task.pool(64, seed=0)
    >>> paired = paired_losses(task, bic.strategies.for_task(task, pool), pool, num_sequences=400)
    >>> paired.difference["memorizing"] < 0 == paired.difference["generalizing"]
    True
    >>> unpaired_se = math.hypot(paired.loss_se["memorizing"], paired.loss_se["generalizing"])
    >>> paired.difference_se["memorizing"] < unpaired_se
    True
    """
    names = list(strategies)
    if reference not in strategies:
        raise BayesiclError(f"reference strategy {reference!r} is not among the strategies {names}")
    per_sequence = sequence_losses(task, [strategies[n] for n in names], pool, num_sequences, seed, zipf=zipf)
    ref = per_sequence[:, names.index(reference)]
    losses, loss_se, difference, difference_se = {}, {}, {}, {}
    for j, name in enumerate(names):
        losses[name] = median_of_means(per_sequence[:, j], seed)
        loss_se[name] = median_of_means_se(per_sequence[:, j], seed)
        delta = per_sequence[:, j] - ref
        difference[name] = median_of_means(delta, seed)
        difference_se[name] = median_of_means_se(delta, seed)
    return PairedLosses(reference=reference, num_sequences=per_sequence.shape[0], loss=losses,
                        loss_se=loss_se, difference=difference, difference_se=difference_se)


def batch_parameters(batch: Mapping[str, Any], key: str, shape: tuple, family: str) -> np.ndarray:
    if key not in batch:
        raise BayesiclError(f"{family} batch is missing key {key!r}, which the strategy loss needs "
                            f"(batches from task.sample carry it)")
    value = np.asarray(batch[key], dtype=np.float64)
    if value.ndim != 2 or value.shape[1] != shape[1]:
        raise BayesiclError(f"{family} batch[{key!r}] has shape {value.shape}, expected (B, {shape[1]})")
    return value


def checked_outputs(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.shape != shape:
        raise BayesiclError(f"strategy outputs have shape {values.shape}, expected {shape} for this batch")
    return values


def _log_probs(strategy: Any, batch: Mapping[str, Any]) -> np.ndarray:
    if isinstance(strategy, Strategy):
        return np.asarray(strategy.log_probs(batch), dtype=np.float64)
    probs = np.asarray(strategy(batch), dtype=np.float64)
    return np.log(np.maximum(probs, np.finfo(np.float64).tiny))
