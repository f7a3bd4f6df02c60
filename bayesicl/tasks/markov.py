"""Markov chains (docs/model.md, "Markov chains"): V-state chains with Dirichlet(1) rows.

A task is a transition matrix P (V × V) whose rows P[u] are independent Dirichlet(1_V)
draws. A sequence is the start token (id V), then x_1 ~ Uniform(V) and x_{k+1} ~ P[x_k] up
to x_T. Output row t (t = 0..T−1) predicts x_{t+1} from x_1..x_t; row 0 has no previous state,
is defined for shape only and is not scored (`scored_positions`).

The family's parameter is V (`num_states`, stored as `num_dims` like every family's size, so
presets, run names and the transformer's vocabulary V + 1 read it the same way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import BayesiclError
from .base import Batch, Task, check_array


@dataclasses.dataclass(frozen=True)
class Markov(Task):
    """Markov-chain task: V states plus a start token (id V); T states per sequence.

    A pool is (D, V, V), row-stochastic; batches carry `tokens` (B, T+1) and the generating
    chain `transitions` (B, V, V) (the loss needs P[x_t]; strategies ignore it).

    >>> import bayesicl as bic
    >>> task = bic.task("markov", num_states=4, context_length=32)
    >>> task.num_states, task.pool(diversity=16, seed=1).shape
    (4, (16, 4, 4))
    >>> task.sample(task.pool(16, seed=1), num_sequences=2, seed=2)["tokens"].shape
    (2, 33)
    """

    family: ClassVar[str] = "markov"
    input_keys: ClassVar[tuple[str, ...]] = ("tokens",)
    #: `bayesicl.task("markov", num_states=V)` is `num_dims=V`.
    parameter_aliases: ClassVar[dict[str, str]] = {"num_states": "num_dims"}

    num_dims: int = 8
    context_length: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_length < 2:
            raise BayesiclError("markov: context_length must be ≥ 2 (row 0 is not scored)")

    @property
    def num_states(self) -> int:
        """V, the number of states."""
        return self.num_dims

    @property
    def start_token(self) -> int:
        return self.num_dims

    def scored_positions(self) -> np.ndarray:
        """Rows 1..T−1 are scored; row 0 (no previous state) is not. Bool (T,).

        >>> import bayesicl as bic
        >>> bic.task("markov", num_states=2, context_length=3).scored_positions().tolist()
        [False, True, True]
        """
        scored = np.ones(self.context_length, dtype=bool)
        scored[0] = False
        return scored

    def _draw_pool(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.dirichlet(np.ones(self.num_dims), size=(size, self.num_dims))     # (size, V, V)

    def validate_pool(self, pool: Any) -> np.ndarray:
        pool = np.asarray(pool, dtype=np.float64)
        V = self.num_dims
        if pool.ndim != 3 or pool.shape[1:] != (V, V) or pool.shape[0] < 1:
            raise BayesiclError(f"markov pool has shape {pool.shape}, expected (D, {V}, {V}) with D ≥ 1")
        if not np.all(np.isfinite(pool)) or np.any(pool < 0):
            raise BayesiclError("markov pool contains NaN, infinite or negative probabilities")
        if not np.allclose(pool.sum(axis=2), 1.0, atol=1e-6):
            raise BayesiclError("markov pool rows P[u] must be probability vectors that sum to 1")
        return pool

    def _sample(self, pool: np.ndarray, rng: np.random.Generator, num_sequences: int,
                task_index: np.ndarray, probabilities: np.ndarray | None) -> Batch:
        P = pool[task_index]                                                # (B, V, V)
        cdf = np.cumsum(P, axis=2)
        cdf[:, :, -1] = 1.0
        rows = np.arange(num_sequences)
        # One uniform per state, drawn up front; x_1 uses u[:, 0] as an inverse-CDF draw of the
        # uniform start, x_{k+1} uses u[:, k] against the CDF of row P[x_k].
        u = rng.random((num_sequences, self.context_length))
        states = np.empty((num_sequences, self.context_length), dtype=np.int32)
        states[:, 0] = np.minimum((u[:, 0] * self.num_dims).astype(np.int32), self.num_dims - 1)
        for k in range(1, self.context_length):
            row_cdf = cdf[rows, states[:, k - 1]]                             # (B, V)
            states[:, k] = (u[:, k, None] >= row_cdf).sum(axis=1)
        tokens = np.empty((num_sequences, self.context_length + 1), dtype=np.int32)
        tokens[:, 0] = self.start_token
        tokens[:, 1:] = states
        return {"tokens": tokens, "transitions": P, "task_index": task_index.astype(np.int64)}

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        tokens = check_array(batch, "tokens", (None, self.context_length + 1), integer=True,
                             family="markov")
        if np.any(tokens[:, 0] != self.start_token):
            raise BayesiclError(f"markov batch['tokens'] must start with the start token {self.start_token}")
        body = tokens[:, 1:]
        if np.any(body < 0) or np.any(body >= self.num_dims):
            raise BayesiclError(f"markov batch['tokens'] has states outside 0..{self.num_dims - 1}")
