"""Linear regression (docs/model.md#regression): y = w·x + ε with w ~ N(0, I), x ~ N(0, I), ε ~ N(0, σ²)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import BayesiclError
from .base import Batch, Task, check_array


@dataclasses.dataclass(frozen=True)
class Regression(Task):
    """Regression task; the noise variance defaults to the paper's σ² = d/256.

    >>> import bayesicl as bic
    >>> task = bic.task("regression", num_dims=8, context_length=16)
    >>> task.noise_variance
    0.03125
    """

    family: ClassVar[str] = "regression"
    input_keys: ClassVar[tuple[str, ...]] = ("x", "y")

    num_dims: int = 8
    context_length: int = 16
    noise_variance: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_variance is None:
            object.__setattr__(self, "noise_variance", self.num_dims / 256)
        if not (np.isfinite(self.noise_variance) and self.noise_variance > 0):
            raise BayesiclError(f"regression: noise variance must be > 0, got {self.noise_variance!r}")

    def _draw_pool(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.standard_normal((size, self.num_dims))

    def validate_pool(self, pool: Any) -> np.ndarray:
        pool = np.asarray(pool, dtype=np.float64)
        if pool.ndim != 2 or pool.shape[1] != self.num_dims or pool.shape[0] < 1:
            raise BayesiclError(f"regression pool has shape {pool.shape}, expected (D, {self.num_dims}) with D ≥ 1")
        if not np.all(np.isfinite(pool)):
            raise BayesiclError("regression pool contains NaN or infinite weights")
        return pool

    def _sample(self, pool: np.ndarray, rng: np.random.Generator, num_sequences: int,
                task_index: np.ndarray, probabilities: np.ndarray | None) -> Batch:
        w = pool[task_index]                                                  # (B, d)
        x = rng.standard_normal((num_sequences, self.context_length, self.num_dims))
        noise = rng.standard_normal((num_sequences, self.context_length)) * np.sqrt(self.noise_variance)
        y = np.einsum("btd,bd->bt", x, w) + noise
        return {"x": x, "y": y, "w": w, "task_index": task_index.astype(np.int64)}

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        x = check_array(batch, "x", (None, self.context_length, self.num_dims), family="regression")
        check_array(batch, "y", (x.shape[0], self.context_length), family="regression")
