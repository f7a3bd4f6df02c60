"""The `Strategy`: a closed-form Bayesian predictor called exactly like a transformer.

A strategy is a frozen description — which Bayes rule (`kind`), for which task, with which
prior (the pool for M, the task's own prior for G and C) — plus a call that maps a batch
(keys: docs/model.md#batches) to the outputs in the layout the logged transformer uses:

- urns: probabilities (B, T, d), row t predicting x_{t+1} from x_1..x_t;
- regression: predictions (B, T), entry t predicting y_t from x_t and the pairs before it;
- classification: probabilities (B, L) for the query, clamped to [1e-5, 1 − 1e-5].

The arithmetic lives in pure, jitted JAX functions of the family modules (the `kernels` of
each family's spec, `bayesicl.families`); this file validates inputs, evaluates them in chunks of
sequences so that memory stays bounded, and returns NumPy arrays.

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=3, context_length=4)
>>> g = Strategy("generalizing", task)
>>> g.name, g.output_kind
('G', 'probabilities')
>>> g({"tokens": [[3, 0, 0, 1, 2]]})[0, 2].round(3).tolist()   # (2 + 1, 0 + 1, 0 + 1) / (2 + 3)
[0.6, 0.2, 0.2]
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import marshal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import BayesiclError
from ..families import FAMILIES, KINDS, FamilySpec, family_spec
from ..tasks import Task


def code_fingerprint(family: str, kinds: Iterable[str]) -> str | None:
    """A digest of the user code behind the strategies `kinds` of a registered `family` and of
    its loss (None for a family whose code is bayesicl's own, pinned by the package version).

    Caches of L̄, K and evidence include it in their keys, so that editing a registered
    strategy's builder, canonical source or prior parameters, or the family's loss, makes
    them recompute rather than return values of the old code. Functions are identified by
    their bytecode with nested functions and constants (`marshal`), plus default arguments;
    helpers they call by name are not followed.
    """
    spec = FAMILIES.get(family)
    if spec is None or spec.versioned:
        return None
    digest = hashlib.sha256()
    for kind in sorted(kinds):
        entry = spec.strategies.get(kind)
        if entry is not None:
            digest.update(f"{kind}\0{entry.source}\0".encode())
            digest.update(_callable_digest(entry.build) + _callable_digest(entry.parameters))
    digest.update(_callable_digest(spec.loss))
    return digest.hexdigest()[:32]


def _callable_digest(function: Callable | None) -> bytes:
    if function is None:
        return b"none"
    code = getattr(function, "__code__", None)
    if code is None:                       # a class, a partial, a callable object
        try:
            return inspect.getsource(function).encode()
        except (OSError, TypeError):
            return repr(function).encode()
    return marshal.dumps(code) + repr(getattr(function, "__defaults__", None)).encode()


@dataclasses.dataclass(frozen=True, eq=False)
class Strategy:
    """One Bayes rule for one task: `kind` ∈ {"memorizing", "generalizing", "constant"}.

    `order` picks one of several M (or G) rules of a family whose kernel module declares
    `ORDERS` (markov: 1 = unigram, 2 = bigram; None means the module's `DEFAULT_ORDER`); it is
    None for every other family and for C. `pool` is the memorizing strategy's prior support
    (the D training tasks; None for G and C) and `probabilities` its prior weights over the
    pool: None means uniform, a Zipf sampling distribution p makes the prior p
    (docs/model.md#strategies). Both are validated on construction.

    >>> import bayesicl as bic
    >>> task = bic.task("regression", num_dims=2, context_length=3)
    >>> m = Strategy("memorizing", task, pool=[[1.0, 0.0], [0.0, 1.0]])
    >>> m.name, m.output_kind, m({"x": [[[1, 0], [0, 1], [1, 1]]], "y": [[1, 0, 1]]}).shape
    ('M', 'predictions', (1, 3))
    """

    kind: str
    task: Task
    pool: Any | None = None
    probabilities: np.ndarray | None = None
    order: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BayesiclError(f"unknown strategy kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not isinstance(self.task, Task):
            raise BayesiclError(f"strategy task must be a bayesicl Task, got {type(self.task).__name__}")
        spec = family_spec(self.task)
        object.__setattr__(self, "order", _check_order(spec, self.kind, self.order))
        if spec.kernels is None:
            if self.kind not in spec.strategies:
                have = list(spec.strategies)
                with_kernels = [name for name, other in FAMILIES.items() if other.kernels is not None]
                raise BayesiclError(f"no {self.kind} strategy for task family {self.task.family!r}; "
                                    + (f"registered: {', '.join(have)}" if have else
                                       f"built in: {', '.join(with_kernels)} (or use "
                                       "bayesicl.strategies.register)"))
            if self.probabilities is not None:
                raise BayesiclError(f"registered strategies of {self.task.family!r} take a uniform "
                                    "prior over the pool, not pool probabilities or a Zipf law")
        if self.kind != "memorizing":
            if self.pool is not None or self.probabilities is not None:
                raise BayesiclError(f"the {self.kind} strategy takes no pool or pool probabilities")
            return
        if self.pool is None:
            raise BayesiclError("the memorizing strategy needs the pool of training tasks")
        pool = self.task.validate_pool(self.pool)
        object.__setattr__(self, "pool", pool)
        if self.probabilities is not None:
            object.__setattr__(self, "probabilities",
                               _validate_probabilities(self.probabilities, self.task.pool_size(pool)))

    @property
    def name(self) -> str:
        """Short name: "M", "G" or "C", with the order where the family has several ("M2")."""
        return KINDS[self.kind] + ("" if self.order is None else str(self.order))

    @property
    def rule(self) -> str:
        """The kind with its order ("memorizing2"), as the canonical sources are named."""
        return self.kind + ("" if self.order is None else str(self.order))

    @property
    def output_kind(self) -> str:
        """"probabilities" for a family of distributions, else "predictions" (regression)."""
        return "probabilities" if self.spec.distribution else "predictions"

    @property
    def spec(self) -> FamilySpec:
        """The spec of the strategy's task family (`bayesicl.families`)."""
        return family_spec(self.task)

    @property
    def diversity(self) -> int | None:
        """D, the number of pool tasks (None for G and C)."""
        return None if self.pool is None else self.task.pool_size(self.pool)

    @functools.cached_property
    def _registered(self) -> Callable[[Mapping[str, Any]], Any]:
        # A registered strategy's predictor, built on the first call and kept with the strategy.
        return self.spec.strategies[self.kind].build(self.task, self.pool)

    @property
    def _family(self):
        return self.spec.kernels

    @functools.cached_property
    def _prior(self) -> Any:
        # The memorizing prior as the family's kernel takes it (JAX arrays of the pool and the
        # log prior weights), built once; cached_property writes to __dict__, frozen is kept.
        return self._family.memorizing_prior(self.task, self.pool, self.probabilities, **self._order)

    @property
    def _order(self) -> dict[str, int]:
        return {} if self.order is None else {"order": self.order}

    def __call__(self, batch: Mapping[str, Any], *, log: bool = False) -> np.ndarray:
        """Outputs on `batch` in the layout of docs/model.md#batches (see the module docstring).

        dtype: float32 for the urns memorizing strategy, float64 for every other one (see
        docs/decisions.md, "Strategy dtypes"), registered strategies included. With
        `log=True`, return `log_probs(batch)`.
        """
        if log:
            return self.log_probs(batch)
        if not isinstance(batch, Mapping):
            raise BayesiclError(f"a strategy takes a batch mapping (keys as in docs/model.md#batches), got {type(batch).__name__}")
        self.task.validate_batch(batch)
        if np.shape(batch[self.task.input_keys[0]])[0] == 0:
            raise BayesiclError(f"{self.task.family} batch holds no sequences")
        if self._family is None:
            return self._registered_outputs(batch)
        prior = self._prior if self.kind == "memorizing" else None
        return self._family.outputs(self.kind, self.task, prior, batch, **self._order)

    def _registered_outputs(self, batch: Mapping[str, Any]) -> np.ndarray:
        outputs = np.asarray(self._registered(batch))
        size = np.shape(batch[self.task.input_keys[0]])[0]
        if outputs.ndim < 1 or outputs.shape[0] != size or not np.issubdtype(outputs.dtype, np.number):
            raise BayesiclError(f"registered {self.kind} strategy of {self.task.family!r} returned "
                                f"shape {outputs.shape} {outputs.dtype}, expected ({size}, ...) numbers")
        outputs = outputs.astype(np.float64)
        if not np.all(np.isfinite(outputs)):
            raise BayesiclError(f"registered {self.kind} strategy of {self.task.family!r} returned "
                                "NaN or infinite outputs")
        return outputs

    def log_probs(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Natural-log probabilities, same layout as the call (distribution families only).

        float64 logs of the returned probabilities (also for the float32 M of urns), each
        floored at the smallest normal number of the probabilities' dtype, so the result is
        finite; classification logs its clamped probabilities (docs/model.md#classification-strategies).
        """
        if self.output_kind != "probabilities":
            raise BayesiclError(f"{self.task.family} strategies output predictions, not probabilities")
        probs = self(batch)
        return np.log(np.maximum(probs, np.finfo(probs.dtype).tiny).astype(np.float64))

    def __repr__(self) -> str:
        size = "" if self.pool is None else f", D={self.diversity}"
        size = size if self.order is None else f", order {self.order}{size}"
        prior = "" if self.probabilities is None else ", weighted prior"
        return f"Strategy({self.name}: {self.kind}, {self.task.family}{size}{prior})"


def _check_order(spec: FamilySpec, kind: str, order: Any) -> int | None:
    """The strategy's order: one of the family's `orders` for M and G, else None."""
    family, orders = spec.name, spec.orders
    if orders is None or kind == "constant":
        if order is not None:
            raise BayesiclError(f"the {family} {kind} strategy takes no order, got {order!r}")
        return None
    if order is None:
        return int(spec.default_order)
    if isinstance(order, bool) or order not in orders:
        raise BayesiclError(f"{family} strategies have order {' or '.join(map(str, orders))}, got {order!r}")
    return int(order)


def _validate_probabilities(probabilities: Any, size: int) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (size,):
        raise BayesiclError(f"pool probabilities have shape {p.shape}, expected ({size},), one per pool task")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise BayesiclError("pool probabilities contain NaN, infinite or negative values")
    if not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise BayesiclError(f"pool probabilities must sum to 1, they sum to {p.sum():.6g}")
    return p


def in_chunks(kernel: Callable[..., Any], arrays: tuple[np.ndarray, ...], chunk: int) -> np.ndarray:
    """Apply a jitted `kernel(*arrays)` to consecutive chunks of `chunk` sequences (axis 0).

    The last chunk is padded by repeating its final sequence, so every call has the same shape
    and the kernel compiles once; the padded rows are dropped. Returns a NumPy array.

    >>> import jax.numpy as jnp
    >>> in_chunks(lambda a: jnp.cumsum(a, axis=1), (np.ones((5, 2)),), chunk=2).tolist()
    [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    """
    size = arrays[0].shape[0]
    chunk = max(1, min(int(chunk), size))
    parts = []
    for start in range(0, size, chunk):
        piece = tuple(a[start:start + chunk] for a in arrays)
        missing = chunk - piece[0].shape[0]
        if missing:
            piece = tuple(np.concatenate([a, np.repeat(a[-1:], missing, axis=0)]) for a in piece)
        out = np.asarray(kernel(*piece))
        parts.append(out[:chunk - missing])
    return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
