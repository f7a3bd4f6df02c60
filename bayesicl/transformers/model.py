"""The reference transformer: a small GPT (pre-norm, learned absolute positions) with one
read-in and one read-out per layout, which each family's spec names (`FamilySpec.transformer`;
docs/model.md#reference-transformers).

    tokens (urns, markov)
                    tokens s, x_1..x_{T-1} (ids)  -> token + position embedding
                    -> blocks -> logits over the d+1 vocabulary at every position; the
                    start-token logit is dropped and a log-softmax over the d colours gives
                    row t = log p(x_{t+1} | s, x_1..x_t), shape (B, T, d).
    pairs (regression)
                    interleaved x_0, (y_0, 0..0), x_1, (y_1, 0..0), ... (2T tokens of size d)
                    -> linear read-in + position -> blocks -> a scalar at every x token:
                    entry t predicts y_t from x_t and the pairs before it, shape (B, T).
    query (classification)
                    (x_k, onehot(label_k), 0) for the T-1 context items, (x_q, 0, 1) for the
                    query (the last slot flags it) -> linear read-in + position -> blocks ->
                    L logits at the query, log-softmaxed, shape (B, L).

The model takes a batch (docs/model.md#batches) as torch tensors (`inputs_from_batch`) and returns what a
run logs (`Transformer.forward`) and the training loss (`Transformer.loss`). Parameters are
plain tensors of fixed names, so several models can be stacked and run as one ensemble with
`torch.func` (see ensemble.py).

>>> import torch, bayesicl as bic
>>> task = bic.task("urns", num_dims=4, context_length=8)
>>> model = Transformer(ModelConfig.for_task(task, width=16, mlp_width=32))
>>> batch = task.sample(task.pool(2, seed=0), 3, seed=1)
>>> model(inputs_from_batch(task, batch)).shape
torch.Size([3, 8, 4])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..seeds import Seed, stream
from ..tasks import Task
from ..families import family_spec
from .batches import input_array, target_array
from .config import ModelConfig


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position i sees positions ≤ i."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = self.qkv(h).split(C, dim=2)
        # (B, nh, T, hs)
        q, k, v = (a.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for a in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        return self.proj(out)


class MLP(nn.Module):
    """Position-wise feed-forward layer width → mlp_width → width with a GELU."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.width, config.mlp_width)
        self.down = nn.Linear(config.mlp_width, config.width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(h)))


class Block(nn.Module):
    """Pre-norm residual block: h + attention(norm(h)), then + MLP(norm(h))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attention = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class Transformer(nn.Module):
    """GPT body with the family's read-in and read-out (module docstring)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.layout == "tokens":
            self.read_in = nn.Embedding(config.read_in_size, config.width)
        else:
            self.read_in = nn.Linear(config.read_in_size, config.width)
        self.position = nn.Embedding(config.num_positions, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.width)
        self.read_out = nn.Linear(config.width, config.read_out_size)

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """What a run logs, from `inputs` as made by `inputs_from_batch`: urns (B, T, d)
        log-probabilities, regression (B, T) predictions, classification (B, L) log-probs."""
        head = self.head(inputs)
        layout = self.config.layout
        if layout == "tokens":
            return head[..., : self.config.num_dims].log_softmax(dim=-1)
        if layout == "pairs":
            return head[:, 0::2, 0]                       # the x tokens: entry t predicts y_t
        return head[:, -1].log_softmax(dim=-1)            # the query, last

    def head(self, inputs: torch.Tensor) -> torch.Tensor:
        """Read-out at every position, (B, positions, read_out_size)."""
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        h = self.read_in(inputs) + self.position(positions)      # (B, positions, width)
        for block in self.blocks:
            h = block(h)
        return self.read_out(self.norm(h))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss on a batch: next-token cross-entropy (urns, averaged over the T rows),
        MSE (regression, over the T entries) or the query's cross-entropy (classification)."""
        return output_loss(self.config.family, self(inputs), targets)


def output_loss(family: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss from a model's outputs (`Transformer.forward`) and the targets
    (`targets_from_batch`): MSE for predictions (layout "pairs"), mean −log p(target) otherwise."""
    if family_spec(family).transformer == "pairs":
        return ((outputs - targets) ** 2).mean()
    return -outputs.gather(-1, targets.unsqueeze(-1)).mean()    # outputs are log-probs


def init_parameters(model: Transformer, seed: Seed) -> Transformer:
    """Initialize `model` in place from `seed` alone (the "init" stream): weights ~ N(0, 0.02²)
    (residual projections 0.02/√(2·layers), as GPT-2), biases 0, LayerNorm gains 1.

    >>> import torch
    >>> config = ModelConfig("urns", num_dims=4, context_length=8, width=16, mlp_width=32)
    >>> a, b = init_parameters(Transformer(config), 3), init_parameters(Transformer(config), 3)
    >>> all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    True
    """
    generator = torch.Generator().manual_seed(int(stream(seed, "init").integers(2**62)))
    residual_std = 0.02 / math.sqrt(2 * model.config.num_layers)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 1:                   # LayerNorm gain
                parameter.fill_(1.0)
            else:
                std = residual_std if name.endswith(("proj.weight", "down.weight")) else 0.02
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
                parameter.copy_(values.to(parameter.device, parameter.dtype))
    return model


def inputs_from_batch(task: Task, batch: Mapping[str, Any], device: str | torch.device = "cpu") -> torch.Tensor:
    """`input_array` as a torch tensor on `device`."""
    return torch.as_tensor(input_array(task, batch), device=device)


def targets_from_batch(task: Task, batch: Mapping[str, Any], device: str | torch.device = "cpu") -> torch.Tensor:
    """`target_array` as a torch tensor on `device`."""
    return torch.as_tensor(target_array(task, batch), device=device)
