"""Task families as objects: one `FamilySpec` per family, in one registry (docs/model.md#task-families).

A family's knowledge lives in its spec: the task class that draws pools and sequences, what a
run logs (output kind and dims), which output rows are scored, its strategies (a module of
jitted kernels, or builders a user registers), the per-position loss of L̄, its K_data
convention, the cutoff quantile, the paper's starting point (α, β, γ), the NUTS target
acceptance, its metrics, and the read-in/read-out of its reference transformer. The stages
ask the spec; none of them branches on a family's name.

The built-in families (urns, regression, classification, markov) register their specs in
their strategy modules (`bayesicl/strategies/<family>.py`) with `register_family`, exactly
as a user's family does (examples/add_a_task_family.py). This module imports nothing else
from bayesicl but the errors, so every stage can import it.

>>> import bayesicl as bic
>>> spec = family_spec("regression")
>>> spec.output_kind, spec.output_dims, spec.cutoff_quantile
('predictions', ('position',), 0.1)
>>> family_spec(bic.task("urns", num_dims=2, context_length=3)).transformer
'tokens'
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from .errors import BayesiclError

#: The strategy kinds and their short names (docs/model.md#strategies).
KINDS: dict[str, str] = {"memorizing": "M", "generalizing": "G", "constant": "C"}

#: What a run logs per family: a log-distribution over the last output dim, or predictions.
OUTPUT_KINDS = ("log_probs", "predictions")

#: Read-in/read-out layouts of the reference transformer (bayesicl.transformers.model):
#: "tokens" token ids in, next-token logits out at every row (urns, markov); "pairs" x and y
#: interleaved as 2T vectors, the prediction read at each x (regression); "query" (x, one-hot
#: label, query flag) vectors, the query's label logits read at the last row (classification).
TRANSFORMER_LAYOUTS = ("tokens", "pairs", "query")

#: The paper's starting point (α, β, γ) of the urns fit, the default for a family without its own.
DEFAULT_START = (0.6, 0.2, 0.85)


@dataclasses.dataclass(frozen=True)
class StrategyBuilder:
    """One strategy of a family without a kernel module, as a user registers it.

    `build(task, pool)` returns the predictor, a callable batch → outputs (`pool` is None for
    G and C); `source` is the canonical source K_code measures, its text or a function whose
    source `inspect` reads (None: no complexity); `parameters(task, pool)` the prior
    parameters K_data measures (None: the pool, for M).
    """

    family: str
    kind: str
    build: Callable[[Any, Any], Callable[[Mapping[str, Any]], Any]]
    source: str | None = None
    parameters: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BayesiclError(f"unknown strategy kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.source is not None and not isinstance(self.source, str):
            try:
                text = textwrap.dedent(inspect.getsource(self.source))
            except (OSError, TypeError):
                raise BayesiclError(f"cannot read the source of {self.source!r}; pass the canonical "
                                    "source as a string") from None
            object.__setattr__(self, "source", text)


@dataclasses.dataclass(frozen=True, eq=False)
class FamilySpec:
    """Everything the stages need to know about one task family.

    - `name`, `task`: the family name and its `bayesicl.tasks.Task` subclass.
    - `kernels`: the module of jitted strategy kernels (`memorizing_prior`, `outputs`) of a
      built-in family; `strategies`: the `StrategyBuilder` per kind of a user's family.
    - `loss(task, outputs, batch)`: the loss of L̄ at every scored position (docs/model.md#strategy-loss),
      from a predictor's float64 log-probabilities (or predictions, for `output_kind`
      "predictions") on `batch`; `loss_sequences` the default number of loss sequences.
    - `prior_parameters(kind, task, pool, probabilities, order, paper_compatible)`: the array
      K_data compresses (docs/model.md#complexity); `paper_code_bits`: K_code per kind where
      the paper measured it.
    - `output_kind`, `output_dims`: what a run logs per sequence; `input_dims`, `pool_dims`:
      named dims of the evaluation inputs and the pool in the run format
      (docs/run-format.md); `first_scored_row`: output rows before it are never scored;
      `target_key`: the batch key of the targets the evidence keeps (predictions families).
    - `orders`, `default_order`: several M (or G) rules (markov: unigram 1, bigram 2);
      `default_strategies`, `weight_groups`: what a fit uses and reports.
    - `cutoff_quantile` (docs/model.md#cutoff), `paper_start` (α, β, γ), `target_accept` of
      NUTS (None: the fit's default), `metrics` per condition and `paper_metrics` the demo
      prints (None: the defaults), `demo_fit`: keyword overrides of the demo's fit.
    - `transformer`: the reference transformer's layout (`TRANSFORMER_LAYOUTS`; None: none).
    """

    name: str
    task: type
    kernels: ModuleType | None = None
    strategies: Mapping[str, StrategyBuilder] = dataclasses.field(default_factory=dict)
    loss: Callable[[Any, Any, Mapping[str, Any]], Any] | None = None
    loss_sequences: int = 10_000
    prior_parameters: Callable[..., Any] | None = None
    paper_code_bits: Mapping[str, float] = dataclasses.field(default_factory=dict)
    output_kind: str = "log_probs"
    output_dims: tuple[str, ...] = ("position", "token")
    input_dims: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    pool_dims: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    first_scored_row: int = 0
    target_key: str | None = None
    orders: tuple[int, ...] | None = None
    default_order: int | None = None
    default_strategies: tuple[str, ...] = ("memorizing", "generalizing")
    weight_groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    cutoff_quantile: float = 0.2
    paper_start: tuple[float, float, float] = DEFAULT_START
    target_accept: float | None = None
    metrics: tuple[str, ...] | None = None
    paper_metrics: tuple[str, ...] | None = None
    demo_fit: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    transformer: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise BayesiclError("a task family needs a non-empty name")
        if not isinstance(self.task, type) or getattr(self.task, "family", None) != self.name:
            raise BayesiclError(f"family {self.name!r}: task must be a Task subclass whose `family` "
                                f"is {self.name!r}")
        if self.output_kind not in OUTPUT_KINDS:
            raise BayesiclError(f"family {self.name!r}: output_kind must be one of {OUTPUT_KINDS}")
        if self.transformer is not None and self.transformer not in TRANSFORMER_LAYOUTS:
            raise BayesiclError(f"family {self.name!r}: transformer layout must be one of "
                                f"{TRANSFORMER_LAYOUTS} or None")

    @property
    def distribution(self) -> bool:
        """True if the family's outputs are distributions (every family but regression)."""
        return self.output_kind == "log_probs"

    @property
    def versioned(self) -> bool:
        """True for a family whose kernels (and loss) are bayesicl's own: the package version
        pins their code, so caches need no fingerprint of it."""
        return self.kernels is not None and self.kernels.__name__.startswith("bayesicl.")


#: The registered families by name; `register_family` adds one.
FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Register (or replace) the spec of a task family; the built-in families call this too.

    >>> import dataclasses, bayesicl as bic
    >>> @dataclasses.dataclass(frozen=True)
    ... class Dice(bic.tasks.Urns):          # urns under another family name
    ...     family = "dice_families"
    >>> spec = register_family(FamilySpec("dice_families", Dice))
    >>> bic.task("dice_families", num_dims=6).num_dims, family_spec("dice_families") is spec
    (6, True)
    """
    if not isinstance(spec, FamilySpec):
        raise BayesiclError(f"register_family() takes a FamilySpec, got {type(spec).__name__}")
    FAMILIES[spec.name] = spec
    return spec


def family_spec(family: Any) -> FamilySpec:
    """The spec of a family, given its name or a task of it.

    >>> family_spec("markov").first_scored_row
    1
    """
    name = family if isinstance(family, str) else getattr(family, "family", None)
    if name not in FAMILIES:
        raise BayesiclError(f"unknown task family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def paper_start(family: str) -> tuple[float, float, float]:
    """The paper's starting point (α, β, γ) for `family`; `DEFAULT_START` for an unregistered one.

    >>> paper_start("classification")
    (0.8, 0.12, 1.5)
    """
    spec = FAMILIES.get(family)
    return DEFAULT_START if spec is None else tuple(spec.paper_start)


def unregister_family(name: str) -> None:
    """Remove a family from the registry (tests use it to clean up)."""
    FAMILIES.pop(name, None)


__all__ = ["FamilySpec", "StrategyBuilder", "FAMILIES", "KINDS", "register_family", "family_spec",
           "paper_start", "unregister_family", "OUTPUT_KINDS", "TRANSFORMER_LAYOUTS", "DEFAULT_START"]
