"""`ModelConfig`: the architecture of one reference transformer, torch-free.

A leaf of `bayesicl.transformers`: the model (`bayesicl.transformers.model`) is built from it,
and a training recipe (`bayesicl.transformers.presets.Recipe`) holds one, without importing torch.

>>> config = ModelConfig("urns", num_dims=4, context_length=8, width=16, mlp_width=32)
>>> config.layout, config.read_in_size, config.read_out_size
('tokens', 5, 5)
"""

from __future__ import annotations

import dataclasses

from ..errors import BayesiclError
from ..families import FAMILIES, family_spec
from ..tasks import Task


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of one reference transformer; `family`, `num_dims`, `context_length` and
    `num_labels` fix the read-in and read-out, the rest is the GPT body."""

    family: str
    num_dims: int
    context_length: int
    num_labels: int = 2
    num_layers: int = 1
    num_heads: int = 1
    width: int = 64
    mlp_width: int = 256

    def __post_init__(self) -> None:
        if self.family not in FAMILIES or FAMILIES[self.family].transformer is None:
            known = [name for name, spec in FAMILIES.items() if spec.transformer is not None]
            raise BayesiclError(f"ModelConfig: no transformer for task {self.family!r}; known: {known}")
        for name in ("num_dims", "context_length", "num_labels", "num_layers", "num_heads", "width", "mlp_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BayesiclError(f"ModelConfig: {name} must be a positive integer, got {value!r}")
        if self.width % self.num_heads:
            raise BayesiclError(f"ModelConfig: width {self.width} is not divisible by num_heads {self.num_heads}")

    @classmethod
    def for_task(cls, task: Task, **architecture: int) -> ModelConfig:
        """The config whose read-in/read-out fit `task` (a bayesicl Task)."""
        return cls(family=task.family, num_dims=task.num_dims, context_length=task.context_length,
                   num_labels=getattr(task, "num_labels", 2), **architecture)

    @property
    def layout(self) -> str:
        """The family's read-in/read-out: "tokens", "pairs" or "query" (module docstring)."""
        return family_spec(self.family).transformer

    @property
    def num_positions(self) -> int:
        """Tokens in one input sequence: T ("tokens", "query") or 2T ("pairs")."""
        return 2 * self.context_length if self.layout == "pairs" else self.context_length

    @property
    def read_in_size(self) -> int:
        """Vocabulary d+1 ("tokens") or the size of one input vector ("pairs" d, "query" d+L+1)."""
        return {"tokens": self.num_dims + 1, "pairs": self.num_dims,
                "query": self.num_dims + self.num_labels + 1}[self.layout]

    @property
    def read_out_size(self) -> int:
        """Logits over the d+1 vocabulary ("tokens"), 1 prediction ("pairs") or L logits ("query")."""
        return {"tokens": self.num_dims + 1, "pairs": 1, "query": self.num_labels}[self.layout]
