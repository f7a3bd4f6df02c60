"""`FitOptions`: every choice of a single-configuration fit, in one validated, frozen dataclass.

The API (`bayesicl.inference.fit(runs, options, **changes)`), the command line (`bayesicl fit`,
`bayesicl.commands.fit.fit_options`) and the fit folder (fit.json ``info.options``, read back
as `FitResult.options`) share it. Fields, with the defaults of `fit`:

- method: "map" (the paper's objective, a point estimate) or "nuts" (the posterior);
- holdout: the extrapolation split (fraction of the largest diversities and last checkpoints);
- variant: the model variant, `bayesicl.rational.VARIANTS` ("full" for None);
- priors: prior overrides {"alpha": "Beta(2,2)", …} (`bayesicl.inference.model.resolve_priors`);
- complexity_override: K values {(kind, D): bits} or {kind: bits} or {kind: {D: bits}};
- seed; num_chains, num_samples, num_warmup, chain_method, effects, progress (NUTS);
- random_starts (MAP);
- strategies, cutoff, loss_sequences, paper_compatible: how evidence is built from runs
  (`bayesicl.evidence.build_evidence`); with an Evidence, strategies and paper_compatible
  must agree with it.

>>> options = FitOptions(method="map", seed=3)
>>> options.replace(holdout=0.0).holdout, FitOptions.from_dict(options.to_dict()) == options
(0.0, True)
>>> FitOptions(num_chains=0)
Traceback (most recent call last):
bayesicl.errors.BayesiclError: num_chains must be an integer ≥ 1, got 0
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import typing
from collections.abc import Mapping
from typing import Any

from .. import rational
from ..errors import BayesiclError
from ..evidence.table import check_cutoff
from .data import _override_items as override_items
from .map import RANDOM_STARTS
from .model import EFFECTS
from .nuts import CHAIN_METHOD, CHAIN_METHODS
from .split import check_holdout

METHODS = ("map", "nuts")


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """The options of one fit (see the module docstring); checked on construction."""

    method: str = "nuts"
    holdout: float = 0.2
    variant: str = "full"
    priors: Mapping[str, Any] | None = None
    complexity_override: Mapping | None = None
    seed: int = 0
    num_chains: int = 4
    num_samples: int = 1000
    num_warmup: int = 1000
    chain_method: str = CHAIN_METHOD
    random_starts: int = RANDOM_STARTS
    effects: str | None = None
    progress: bool = False
    strategies: tuple[str, ...] | None = None
    cutoff: str | int = "paper"
    loss_sequences: int | None = None
    paper_compatible: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BayesiclError(f"unknown fit method {self.method!r}; expected one of {METHODS}")
        object.__setattr__(self, "holdout", check_holdout(self.holdout))
        object.__setattr__(self, "variant", rational.check_variant(self.variant))
        for name, least in (("seed", 0), ("num_chains", 1), ("num_samples", 1), ("num_warmup", 0),
                            ("random_starts", 0)):
            object.__setattr__(self, name, _integer(name, getattr(self, name), least))
        if self.loss_sequences is not None:
            object.__setattr__(self, "loss_sequences", _integer("loss_sequences", self.loss_sequences, 1))
        if self.chain_method not in CHAIN_METHODS:
            raise BayesiclError(f"chain_method must be one of {CHAIN_METHODS}, got {self.chain_method!r}")
        if self.effects is not None and self.effects not in EFFECTS:
            raise BayesiclError(f"unknown effects {self.effects!r}; expected one of {', '.join(EFFECTS)}")
        check_cutoff(self.cutoff)
        if not isinstance(self.cutoff, str):
            object.__setattr__(self, "cutoff", int(self.cutoff))
        if self.paper_compatible not in (None, True, False):
            raise BayesiclError(f"paper_compatible must be True, False or None, got {self.paper_compatible!r}")
        if self.strategies is not None:
            if isinstance(self.strategies, str) or not all(isinstance(s, str) for s in self.strategies):
                raise BayesiclError(f"strategies must be a sequence of strategy kinds, got {self.strategies!r}")
            object.__setattr__(self, "strategies", tuple(self.strategies) or None)
        for name in ("priors", "complexity_override"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise BayesiclError(f"{name} must be a mapping, got {type(value).__name__}")
            object.__setattr__(self, name, dict(value) if value else None)
        object.__setattr__(self, "progress", bool(self.progress))

    def replace(self, **changes: Any) -> FitOptions:
        """A copy with some options changed (validated again); unknown names are refused."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise BayesiclError(f"unknown fit option {unknown[0]!r}; known: {', '.join(FIELDS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON values (fit.json ``info.options``); `from_dict` reads them back."""
        out = {name: getattr(self, name) for name in FIELDS}
        out["strategies"] = list(self.strategies) if self.strategies is not None else None
        if self.priors:
            out["priors"] = {k: v if isinstance(v, str) else [str(v[0]), [float(a) for a in v[1]]]
                             for k, v in self.priors.items()}
        if self.complexity_override:
            out["complexity_override"] = [[kind, diversity, bits]
                                          for kind, diversity, bits in override_items(self.complexity_override)]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitOptions:
        """The options `to_dict` wrote; names this version does not know are refused."""
        values = dict(data)
        override = values.get("complexity_override")
        if isinstance(override, list):
            values["complexity_override"] = {(kind if diversity is None else (kind, int(diversity))): float(bits)
                                             for kind, diversity, bits in override}
        if isinstance(values.get("priors"), Mapping):
            values["priors"] = {k: v if isinstance(v, str) else (str(v[0]), tuple(map(float, v[1])))
                                for k, v in values["priors"].items()}
        return cls().replace(**values)


FIELDS = tuple(field.name for field in dataclasses.fields(FitOptions))


def fit_options(options: FitOptions | None = None, changes: Mapping[str, Any] | None = None) -> FitOptions:
    """`options` (default `FitOptions()`) with the keyword `changes` applied.

    >>> fit_options(None, {"method": "map"}).method
    'map'
    """
    if options is not None and not isinstance(options, FitOptions):
        raise BayesiclError(f"fit options must be a FitOptions (or give them as keywords, e.g. method='map'), "
                            f"got {type(options).__name__}")
    options = options if options is not None else FitOptions()
    return options.replace(**changes) if changes else options


def signature_with_options(function) -> inspect.Signature:
    """`function`'s signature with its ``**changes`` replaced by every `FitOptions` field as a
    keyword-only parameter (with its default): what `help` and `inspect` show for
    `bayesicl.inference.fit`, whose keywords are validated by `FitOptions`."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    hints = typing.get_type_hints(FitOptions)
    options = [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                 annotation=hints[field.name])
               for field in dataclasses.fields(FitOptions)]
    return signature.replace(parameters=kept + options)


def _integer(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise BayesiclError(f"{name} must be an integer ≥ {least}, got {value!r}")
    return int(value)
