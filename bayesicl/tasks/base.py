"""What every task family provides: a prior, pools, sequences and the evaluation sets.

A task is a frozen dataclass of its family parameters (d, T and the prior's constants). It
turns seeds into data; it holds no state. Batches are plain ``dict[str, numpy.ndarray]``
with the keys of docs/model.md#batches plus the generating parameters (``task_index`` and, where the loss
needs them, ``theta`` or ``w``) that strategies ignore.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import BayesiclError
from ..seeds import Seed, seed_tuple, stream

#: Pools are nested: pool(D, seed) is the first D rows of one draw of at least this many tasks.
POOL_DRAW = 4096
#: The paper's evaluation-set size (ID and OOD, 500 sequences each) and OOD pool size.
EVAL_SEQUENCES = 500
OOD_POOL_SIZE = 500

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of the task families; see `bayesicl.task` for construction."""

    family: ClassVar[str] = ""
    #: Keys a batch must carry for strategies and transformers (beyond generating parameters).
    input_keys: ClassVar[tuple[str, ...]] = ()
    #: Evaluation splits logged by a run (classification adds the in-weights probe "iwl").
    splits: ClassVar[tuple[str, ...]] = ("id", "ood")

    num_dims: int
    context_length: int

    def __post_init__(self) -> None:
        for name in ("num_dims", "context_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise BayesiclError(f"{self.family}: {name} must be a positive integer, got {value!r}")

    # -- the family-specific part ------------------------------------------------------------
    def _draw_pool(self, rng: np.random.Generator, size: int) -> Any:
        raise NotImplementedError

    def _slice_pool(self, pool: Any, size: int) -> Any:
        return pool[:size]

    def pool_size(self, pool: Any) -> int:
        return int(np.shape(pool)[0])

    def validate_pool(self, pool: Any) -> Any:
        raise NotImplementedError

    def _sample(self, pool: Any, rng: np.random.Generator, num_sequences: int,
                task_index: np.ndarray, probabilities: np.ndarray | None) -> Batch:
        raise NotImplementedError

    def validate_batch(self, batch: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """Family and its parameters, JSON-serializable; two runs are comparable iff equal."""
        out = {"task": self.family}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return out

    def pool(self, diversity: int, seed: Seed = 0) -> Any:
        """The D training tasks (D = `diversity`); the first D rows of a single seeded draw.

        >>> import bayesicl as bic
        >>> task = bic.task("urns", num_dims=8, context_length=16)
        >>> bool((task.pool(4, seed=1) == task.pool(64, seed=1)[:4]).all())
        True
        """
        diversity = _positive_int(diversity, f"{self.family}: diversity D")
        full = self._draw_pool(stream(seed, "pool"), max(diversity, POOL_DRAW))
        return self._slice_pool(full, diversity)

    def ood_pool(self, seed: Seed = 0, size: int = OOD_POOL_SIZE) -> Any:
        """`size` fresh tasks from the prior, on a stream no training pool uses (OOD set)."""
        size = _positive_int(size, f"{self.family}: OOD pool size")
        return self._draw_pool(stream(seed, "ood_pool"), size)


    def sample(self, pool: Any, num_sequences: int, seed: Seed = 0, *,
               purpose: str = "sequences", zipf: float | None = None) -> Batch:
        """`num_sequences` sequences from tasks of `pool` (batch layout: docs/model.md#batches).

        The draws come from the stream (`seed`, `purpose`); the evaluation sets, the loss
        sequences and the training batches each use their own purpose.

        >>> import bayesicl as bic
        >>> task = bic.task("urns", num_dims=8, context_length=16)
        >>> task.sample(task.pool(4, seed=1), num_sequences=3, seed=2)["tokens"].shape
        (3, 17)
        """
        pool = self.validate_pool(pool)
        num_sequences = _positive_int(num_sequences, f"{self.family}: num_sequences")
        rng = stream(seed, purpose)
        probabilities = sampling_probabilities(self.pool_size(pool), zipf)
        index = rng.choice(self.pool_size(pool), size=num_sequences, p=probabilities)
        return self._sample(pool, rng, num_sequences, index, probabilities)

    def eval_sets(self, pool: Any, seed: Seed = 0,
                  num_sequences: int = EVAL_SEQUENCES) -> dict[str, Batch]:
        """The fixed evaluation sets of a run: ID (from `pool`) and OOD (a fresh prior pool)."""
        return {
            "id": self.sample(pool, num_sequences, seed, purpose="id_sequences"),
            "ood": self.sample(self.ood_pool(seed), num_sequences, seed, purpose="ood_sequences"),
        }

    def training_batch(self, pool: Any, batch_size: int, seed: Seed, step: int,
                       zipf: float | None = None) -> Batch:
        """The batch for optimizer step `step`: a pure function of (seed, step)."""
        return self.sample(pool, batch_size, (*seed_tuple(seed), int(step)),
                           purpose="train_batches", zipf=zipf)


def sampling_probabilities(size: int, zipf: float | None) -> np.ndarray | None:
    """Task-sampling distribution over a pool: None (uniform) or Zipf p_i ∝ (i+1)^(−z)."""
    if zipf is None or zipf == 0:
        return None
    if not np.isfinite(zipf) or zipf < 0:
        raise BayesiclError(f"Zipf exponent must be finite and ≥ 0, got {zipf!r}")
    weights = np.arange(1, size + 1, dtype=np.float64) ** (-float(zipf))
    return weights / weights.sum()


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BayesiclError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_array(batch: Mapping[str, Any], key: str, shape: tuple, *, integer: bool = False,
                family: str = "") -> np.ndarray:
    """Fetch batch[key] as a NumPy array and check its shape (None = any) and finiteness."""
    if key not in batch:
        raise BayesiclError(f"{family} batch is missing key {key!r}")
    value = np.asarray(batch[key])
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
        raise BayesiclError(f"{family} batch[{key!r}] has shape {value.shape}, expected {want}")
    if integer and not np.issubdtype(value.dtype, np.integer):
        raise BayesiclError(f"{family} batch[{key!r}] must hold integers, got {value.dtype}")
    if not integer and not np.all(np.isfinite(value)):
        raise BayesiclError(f"{family} batch[{key!r}] contains NaN or infinite values")
    return value
