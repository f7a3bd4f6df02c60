"""Strategy loss L̄_s(D) (SPEC §4): the average per-token loss on the training distribution.

Per scored position (all T rows for urns and regression, the query for classification):

- urns: KL(θ ‖ p̂_t) = Σ_v θ_v (log θ_v − log p̂_t[v])   (θ from batch["theta"]);
- regression: (ŷ_t − w·x_t)² / (2σ²) + ½, the lower-variance form of the squared error
  (y_t − ŷ_t)²/(2σ²) with the same expectation (w from batch["w"]);
- classification: −log p̂[target], with the clamped probabilities of SPEC §3.3;
- a family added with `bayesicl.tasks.register`: the loss given to `register_loss`.

L̄ is a median of means over sequences drawn with `task.sample(pool, n, seed,
purpose="loss_sequences")`, the same sequences for every strategy (common random numbers).

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=4, context_length=8)
>>> pool = task.pool(4, seed=0)
>>> strategies = bic.strategies.for_task(task, pool)
>>> losses = {n: loss(task, s, pool, num_sequences=400) for n, s in strategies.items()}
>>> losses["memorizing"] < losses["generalizing"]      # four tasks are easy to tell apart
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.special import xlogy

from ..errors import BayesiclError
from ..seeds import Seed, stream
from ..tasks import Task
from .base import Strategy

#: SPEC §4: at least this many loss sequences (classification has one scored position each).
DEFAULT_SEQUENCES = {"classification": 50_000}
DEFAULT_SEQUENCES_OTHER = 10_000

#: Sequences evaluated at a time, so that outputs of 50 000 sequences never sit in memory.
_SEQUENCES_PER_STEP = 2_000

#: Per-position losses of user-registered task families; `register_loss` adds them.
FAMILY_LOSSES: dict[str, Callable[[Task, np.ndarray, Mapping[str, Any]], Any]] = {}


def register_loss(family: str, per_position: Callable[[Task, np.ndarray, Mapping[str, Any]], Any]) -> None:
    """Register the per-position loss of L̄ (SPEC §4) for a family added by `tasks.register`.

    `per_position(task, log_probs, batch)` gets a strategy's (or any predictor's) natural-log
    probabilities on `batch` as float64, floored so that they are finite, in the layout the
    strategy returns, and the batch itself, with the generating parameters the family's
    sampler stores in it (the θ of each sequence, say). It returns the loss at every scored
    position, (n, P) or (n,), typically KL(true next-token distribution ‖ prediction).
    Registering a family again replaces its loss.

    >>> import dataclasses, numpy as np, bayesicl as bic
    >>> @bic.tasks.register
    ... @dataclasses.dataclass(frozen=True)
    ... class Dice(bic.tasks.Urns):          # urns under another family name
    ...     family = "dice"
    >>> def kl(task, log_probs, batch):       # KL(θ ‖ p̂_t) at every row t
    ...     theta = np.asarray(batch["theta"])[:, None, :]
    ...     return (theta * (np.log(theta) - log_probs)).sum(-1)
    >>> register_loss("dice", kl)
    >>> task = bic.task("dice", num_dims=2, context_length=3)
    >>> fair = lambda batch: np.full((len(batch["tokens"]), 3, 2), 0.5)
    >>> per_position_loss(task, fair, {"tokens": [[2, 0, 0, 1]], "theta": [[0.5, 0.5]]}).tolist()
    [[0.0, 0.0, 0.0]]
    """
    from ..tasks import FAMILIES

    if family in ("urns", "regression", "classification"):
        raise BayesiclError(f"task family {family!r} has a built-in loss; register a new family")
    if family not in FAMILIES:
        raise BayesiclError(f"unknown task family {family!r}: register it first with bayesicl.tasks.register")
    if not callable(per_position):
        raise BayesiclError("register_loss() takes a callable per_position(task, log_probs, batch)")
    FAMILY_LOSSES[family] = per_position


def per_position_loss(task: Task, strategy: Strategy | Callable[[Mapping], Any],
                      batch: Mapping[str, Any]) -> np.ndarray:
    """Loss at every scored position: (n, T) for urns and regression, (n,) for classification.

    `strategy` is a `Strategy` or any callable with the same output layout (a transformer's
    outputs, for instance). float64.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=2, context_length=3)
    >>> batch = {"tokens": [[2, 0, 0, 1]], "theta": [[0.5, 0.5]]}
    >>> per_position_loss(task, bic.strategies.constant(task), batch).tolist()   # KL(θ‖uniform)
    [[0.0, 0.0, 0.0]]
    """
    if not isinstance(batch, Mapping):
        raise BayesiclError(f"per_position_loss takes a batch mapping, got {type(batch).__name__}")
    task.validate_batch(batch)
    family = task.family
    if family == "urns":
        theta = _parameters(batch, "theta", (None, task.num_dims), family)
        log_probs = _outputs(_log_probs(strategy, batch), (theta.shape[0], task.context_length, task.num_dims))
        entropy_term = xlogy(theta, theta).sum(-1)                   # Σ_v θ_v log θ_v, (n,)
        return entropy_term[:, None] - np.einsum("nv,ntv->nt", theta, log_probs)
    if family == "regression":
        w = _parameters(batch, "w", (None, task.num_dims), family)
        predictions = _outputs(np.asarray(strategy(batch), dtype=np.float64), (w.shape[0], task.context_length))
        x = np.asarray(batch["x"], dtype=np.float64)
        signal = np.einsum("ntd,nd->nt", x, w)
        return (predictions - signal) ** 2 / (2 * task.noise_variance) + 0.5
    if family == "classification":
        if "target" not in batch:
            raise BayesiclError("classification batch is missing key 'target' (the query label)")
        target = np.asarray(batch["target"])
        if target.ndim != 1 or not np.issubdtype(target.dtype, np.integer) \
                or np.any(target < 0) or np.any(target >= task.num_labels):
            raise BayesiclError(f"classification batch['target'] must be (B,) labels in 0..{task.num_labels - 1}")
        log_probs = _outputs(_log_probs(strategy, batch), (target.shape[0], task.num_labels))
        return -np.take_along_axis(log_probs, target[:, None].astype(np.int64), axis=1)[:, 0]
    if family in FAMILY_LOSSES:
        return _registered_loss(task, strategy, batch)
    raise BayesiclError(f"no strategy loss is defined for task family {family!r} "
                        "(register one with bayesicl.strategies.register_loss)")


def median_of_means(losses: np.ndarray, seed: Seed = 0) -> float:
    """Median over ⌈√n⌉ blocks of the mean loss of each block's sequences (all positions).

    The n sequences (axis 0 of `losses`) are permuted with the `median_of_means` stream of
    `seed`, then split into ⌈√n⌉ contiguous blocks of near-equal size.

    >>> median_of_means(np.array([1.0, 1.0, 1.0, 1.0, 100.0]), seed=0)
    1.0
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim < 1 or losses.shape[0] < 1:
        raise BayesiclError("median_of_means needs at least one sequence")
    if not np.all(np.isfinite(losses)):
        raise BayesiclError("median_of_means got NaN or infinite losses")
    n = losses.shape[0]
    order = stream(seed, "median_of_means").permutation(n)
    blocks = np.array_split(order, math.ceil(math.sqrt(n)))
    per_sequence = losses.reshape(n, -1).mean(axis=1)                # equal positions per sequence
    return float(np.median([per_sequence[block].mean() for block in blocks]))


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
    if num_sequences is None:
        num_sequences = DEFAULT_SEQUENCES.get(task.family, DEFAULT_SEQUENCES_OTHER)
    batch = task.sample(pool, num_sequences, seed, purpose="loss_sequences", zipf=zipf)
    per_position = [
        per_position_loss(task, strategy, {k: v[start:start + _SEQUENCES_PER_STEP] for k, v in batch.items()})
        for start in range(0, num_sequences, _SEQUENCES_PER_STEP)
    ]
    return median_of_means(np.concatenate(per_position), seed)


def _registered_loss(task: Task, strategy: Any, batch: Mapping[str, Any]) -> np.ndarray:
    log_probs = _log_probs(strategy, batch)
    values = np.asarray(FAMILY_LOSSES[task.family](task, log_probs, batch), dtype=np.float64)
    if values.ndim < 1 or values.shape[0] != log_probs.shape[0]:
        raise BayesiclError(f"the registered {task.family} loss returned shape {values.shape}, "
                            f"expected ({log_probs.shape[0]}, ...) losses per scored position")
    return values


def _parameters(batch: Mapping[str, Any], key: str, shape: tuple, family: str) -> np.ndarray:
    if key not in batch:
        raise BayesiclError(f"{family} batch is missing key {key!r}, which the strategy loss needs "
                            f"(batches from task.sample carry it)")
    value = np.asarray(batch[key], dtype=np.float64)
    if value.ndim != 2 or value.shape[1] != shape[1]:
        raise BayesiclError(f"{family} batch[{key!r}] has shape {value.shape}, expected (B, {shape[1]})")
    return value


def _outputs(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.shape != shape:
        raise BayesiclError(f"strategy outputs have shape {values.shape}, expected {shape} for this batch")
    return values


def _log_probs(strategy: Any, batch: Mapping[str, Any]) -> np.ndarray:
    if isinstance(strategy, Strategy):
        return np.asarray(strategy.log_probs(batch), dtype=np.float64)
    probs = np.asarray(strategy(batch), dtype=np.float64)
    return np.log(np.maximum(probs, np.finfo(np.float64).tiny))
