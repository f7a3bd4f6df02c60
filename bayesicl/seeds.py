"""Seed streams: one independent NumPy random stream per purpose.

Every random draw in bayesicl comes from `stream(seed, purpose)`, which is
``numpy.random.default_rng([*seed, PURPOSES[purpose]])``. Distinct purpose codes mean that,
for example, the pool and the ID evaluation sequences never share draws even when the user
passes the same integer seed to both (docs/model.md#randomness).

>>> a = stream(1, "pool").standard_normal(3)
>>> b = stream(1, "pool").standard_normal(3)
>>> bool((a == b).all())
True
>>> bool((stream(1, "pool").standard_normal(3) == stream(1, "id_sequences").standard_normal(3)).any())
False
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import BayesiclError

#: Purpose codes. Never renumber one: that would change every number a seed produces.
PURPOSES: dict[str, int] = {
    "pool": 1,
    "id_sequences": 2,
    "ood_pool": 3,
    "ood_sequences": 4,
    "loss_sequences": 5,
    "train_batches": 6,
    "iwl_sequences": 7,
    "init": 8,
    "median_of_means": 9,
    "sequences": 10,
    "random_weights": 11,
    "synthetic": 12,
    "fit": 13,
}

Seed = int | Sequence[int]


def seed_tuple(seed: Seed) -> tuple[int, ...]:
    """Normalize an int or a sequence of non-negative ints to a tuple of ints."""
    parts = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not parts:
        raise BayesiclError("seed is empty: give a non-negative integer")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (int, np.integer)) or part < 0:
            raise BayesiclError(f"seed {seed!r} is not a non-negative integer (or a sequence of them)")
    return tuple(int(p) for p in parts)


def stream(seed: Seed, purpose: str) -> np.random.Generator:
    """The random generator for `purpose` under `seed` (an int or a tuple such as (seed, step))."""
    if purpose not in PURPOSES:
        raise BayesiclError(f"unknown random-stream purpose {purpose!r}; known: {sorted(PURPOSES)}")
    return np.random.default_rng([*seed_tuple(seed), PURPOSES[purpose]])
