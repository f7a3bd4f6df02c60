"""Balls and urns (docs/model.md#urns): categorical sequences from θ ~ Dirichlet(a·1) over d colours."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import BayesiclError
from .base import Batch, Task, check_array


@dataclasses.dataclass(frozen=True)
class Urns(Task):
    """Urns task: vocabulary d colours plus a start token (id d); T draws per sequence.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=128)
    >>> task.pool(diversity=64, seed=1).shape
    (64, 8)
    """

    family: ClassVar[str] = "urns"
    input_keys: ClassVar[tuple[str, ...]] = ("tokens",)

    num_dims: int = 8
    context_length: int = 128
    concentration: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.concentration) and self.concentration > 0):
            raise BayesiclError(f"urns: Dirichlet concentration must be > 0, got {self.concentration!r}")

    @property
    def start_token(self) -> int:
        return self.num_dims

    def _draw_pool(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.dirichlet(np.full(self.num_dims, self.concentration), size=size)

    def validate_pool(self, pool: Any) -> np.ndarray:
        pool = np.asarray(pool, dtype=np.float64)
        if pool.ndim != 2 or pool.shape[1] != self.num_dims or pool.shape[0] < 1:
            raise BayesiclError(f"urns pool has shape {pool.shape}, expected (D, {self.num_dims}) with D ≥ 1")
        if not np.all(np.isfinite(pool)) or np.any(pool < 0):
            raise BayesiclError("urns pool contains NaN, infinite or negative probabilities")
        if not np.allclose(pool.sum(axis=1), 1.0, atol=1e-6):
            raise BayesiclError("urns pool rows must be probability vectors that sum to 1")
        return pool

    def _sample(self, pool: np.ndarray, rng: np.random.Generator, num_sequences: int,
                task_index: np.ndarray, probabilities: np.ndarray | None) -> Batch:
        theta = pool[task_index]                                   # (B, d)
        # Inverse-CDF sampling: one uniform per draw, vectorized over the batch.
        cdf = np.cumsum(theta, axis=1)
        cdf[:, -1] = 1.0
        u = rng.random((num_sequences, self.context_length))
        draws = (u[:, :, None] >= cdf[:, None, :]).sum(axis=2)   # (B, T)
        tokens = np.empty((num_sequences, self.context_length + 1), dtype=np.int32)
        tokens[:, 0] = self.start_token
        tokens[:, 1:] = draws
        return {"tokens": tokens, "theta": theta, "task_index": task_index.astype(np.int64)}

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        tokens = check_array(batch, "tokens", (None, self.context_length + 1), integer=True,
                             family="urns")
        if np.any(tokens[:, 0] != self.start_token):
            raise BayesiclError(f"urns batch['tokens'] must start with the start token {self.start_token}")
        body = tokens[:, 1:]
        if np.any(body < 0) or np.any(body >= self.num_dims):
            raise BayesiclError(f"urns batch['tokens'] has colours outside 0..{self.num_dims - 1}")
