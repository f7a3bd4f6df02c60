"""Few-shot classification (docs/model.md#classification): noisy copies of labelled exemplars, query last."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..errors import BayesiclError
from ..seeds import Seed, stream
from .base import EVAL_SEQUENCES, Batch, Task, check_array


class LabelledPool(NamedTuple):
    """Classification pool: exemplar means μ (D, d) and their labels ℓ (D,)."""

    means: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Classification(Task):
    """Classification task with L labels and within-class variance ε.

    The context holds T − 1 labelled items and the query is the T-th item (label −1).

    >>> import bayesicl as bic
    >>> task = bic.task("classification", num_dims=8, context_length=16)
    >>> batch = task.sample(task.pool(8, seed=1), num_sequences=2, seed=3)
    >>> batch["x"].shape, batch["labels"][:, -1].tolist()
    ((2, 16, 8), [-1, -1])
    """

    family: ClassVar[str] = "classification"
    input_keys: ClassVar[tuple[str, ...]] = ("x", "labels")
    splits: ClassVar[tuple[str, ...]] = ("id", "ood", "iwl")

    num_dims: int = 8
    context_length: int = 128
    num_labels: int = 2
    within_class_variance: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_length < 2:
            raise BayesiclError("classification: context_length must be ≥ 2 (context items + query)")
        if self.num_labels < 2:
            raise BayesiclError(f"classification: num_labels must be ≥ 2, got {self.num_labels!r}")
        if not (np.isfinite(self.within_class_variance) and self.within_class_variance > 0):
            raise BayesiclError("classification: within-class variance ε must be > 0")

    def pool_size(self, pool: Any) -> int:
        return int(np.shape(pool[0])[0])

    def _draw_pool(self, rng: np.random.Generator, size: int) -> LabelledPool:
        means = rng.standard_normal((size, self.num_dims)) * np.sqrt(1.0 / self.num_dims)
        labels = rng.integers(0, self.num_labels, size=size)
        return LabelledPool(means, labels.astype(np.int64))

    def _slice_pool(self, pool: LabelledPool, size: int) -> LabelledPool:
        return LabelledPool(pool.means[:size], pool.labels[:size])

    def validate_pool(self, pool: Any) -> LabelledPool:
        try:
            means, labels = pool
        except (TypeError, ValueError):
            raise BayesiclError("classification pool must be (means (D, d), labels (D,))") from None
        means = np.asarray(means, dtype=np.float64)
        labels = np.asarray(labels)
        if means.ndim != 2 or means.shape[1] != self.num_dims or means.shape[0] < 1:
            raise BayesiclError(f"classification pool means have shape {means.shape}, expected (D, {self.num_dims})")
        if labels.shape != (means.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise BayesiclError(f"classification pool labels must be integers of shape ({means.shape[0]},)")
        if not np.all(np.isfinite(means)):
            raise BayesiclError("classification pool means contain NaN or infinite values")
        if np.any(labels < 0) or np.any(labels >= self.num_labels):
            raise BayesiclError(f"classification pool labels must lie in 0..{self.num_labels - 1}")
        return LabelledPool(means, labels.astype(np.int64))

    def _noisy_copies(self, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        eps = self.within_class_variance
        noise = rng.standard_normal(means.shape) * np.sqrt(1.0 / self.num_dims)
        return (means + np.sqrt(eps) * noise) / np.sqrt(1.0 + eps)

    def _assemble(self, pool: LabelledPool, rng: np.random.Generator, context: np.ndarray,
                  query: np.ndarray) -> Batch:
        num_sequences = context.shape[0]
        x = np.empty((num_sequences, self.context_length, self.num_dims))
        x[:, :-1] = self._noisy_copies(pool.means[context], rng)
        x[:, -1] = self._noisy_copies(pool.means[query], rng)
        labels = np.empty((num_sequences, self.context_length), dtype=np.int64)
        labels[:, :-1] = pool.labels[context]
        labels[:, -1] = -1
        return {"x": x, "labels": labels, "target": pool.labels[query].astype(np.int64),
                "task_index": query.astype(np.int64), "context_index": context.astype(np.int64)}

    def _sample(self, pool: LabelledPool, rng: np.random.Generator, num_sequences: int,
                task_index: np.ndarray, probabilities: np.ndarray | None) -> Batch:
        # ICL: T−1 context exemplars drawn from the pool (task_indices draws the first one,
        # so the Zipf option applies to every context item); the query copies one of them.
        size = self.pool_size(pool)
        rest = rng.choice(size, size=(num_sequences, self.context_length - 2),
                          p=probabilities)
        context = np.concatenate([task_index[:, None], rest], axis=1)
        position = rng.integers(0, self.context_length - 1, size=num_sequences)
        query = context[np.arange(num_sequences), position]
        return self._assemble(pool, rng, context, query)

    def iwl_sample(self, pool: Any, num_sequences: int, seed: Seed = 0) -> Batch:
        """In-weights probe: the query's exemplar never appears in the context (needs D ≥ 2)."""
        pool = self.validate_pool(pool)
        size = self.pool_size(pool)
        if size < 2:
            raise BayesiclError("classification IWL probe needs a pool of at least 2 exemplars")
        rng = stream(seed, "iwl_sequences")
        query = rng.integers(0, size, size=num_sequences)
        # Uniform over the other D−1 items: draw from 0..D−2 and skip the query's index.
        context = rng.integers(0, size - 1, size=(num_sequences, self.context_length - 1))
        context = context + (context >= query[:, None])
        return self._assemble(pool, rng, context, query)

    def eval_sets(self, pool: Any, seed: Seed = 0,
                  num_sequences: int = EVAL_SEQUENCES) -> dict[str, Batch]:
        sets = super().eval_sets(pool, seed, num_sequences)
        if self.pool_size(self.validate_pool(pool)) >= 2:
            sets["iwl"] = self.iwl_sample(pool, num_sequences, seed)
        return sets

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        x = check_array(batch, "x", (None, self.context_length, self.num_dims), family="classification")
        labels = check_array(batch, "labels", (x.shape[0], self.context_length), integer=True,
                             family="classification")
        if np.any(labels[:, -1] != -1):
            raise BayesiclError("classification batch['labels'] must end with the query sentinel −1")
        body = labels[:, :-1]
        if np.any(body < 0) or np.any(body >= self.num_labels):
            raise BayesiclError(f"classification batch['labels'] has labels outside 0..{self.num_labels - 1}")
