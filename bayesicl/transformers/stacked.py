"""The reference transformer for E models at once, on parameters stacked along a leading
member axis: `parameters[name]` has shape (E, *shape of `Transformer.state_dict()[name]`).

This is model.py's forward written out on stacked tensors, so that E small models cost one
set of kernels: every linear layer is one batched matmul (`baddbmm`) over (E, tokens, width),
attention is one `scaled_dot_product_attention` over the E·B sequences, and every activation
is a contiguous (E, B, positions, width) tensor. Member e's outputs are those of
`Transformer` with member e's parameters, up to float rounding (tests/test_transformers.py).

Why not `torch.func.vmap(functional_call(...))`: on the CPU it gives the same numbers, but
its batching rules leave activations in strided layouts and split `addmm` into `bmm` + `add`,
which made a vmapped ensemble slower than training the members one after another.

>>> import torch
>>> from bayesicl.transformers.model import ModelConfig, Transformer, init_parameters
>>> config = ModelConfig("urns", num_dims=4, context_length=8, width=16, mlp_width=32)
>>> models = [init_parameters(Transformer(config), seed) for seed in (0, 1)]
>>> parameters = stack_parameters([m.state_dict() for m in models])
>>> inputs = torch.randint(0, 5, (2, 3, 8))                  # (E, B, T) token ids
>>> outputs = stacked_outputs(config, parameters, inputs)
>>> outputs.shape
torch.Size([2, 3, 8, 4])
>>> bool(torch.allclose(outputs[1], models[1](inputs[1]), atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..families import family_spec
from .model import ModelConfig

Parameters = Mapping[str, torch.Tensor]


def stack_parameters(members: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack E state dicts of the same architecture into one dict of (E, ...) tensors."""
    return {name: torch.stack([member[name] for member in members]) for name in members[0]}


def linear(parameters: Parameters, name: str, x: torch.Tensor) -> torch.Tensor:
    """Member-wise `nn.Linear` `name` on x (E, N, in) -> (E, N, out)."""
    weight, bias = parameters[f"{name}.weight"], parameters[f"{name}.bias"]     # (E, out, in), (E, out)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def layer_norm(parameters: Parameters, name: str, x: torch.Tensor) -> torch.Tensor:
    """Member-wise `nn.LayerNorm` `name` on x (E, N, width)."""
    weight, bias = parameters[f"{name}.weight"], parameters[f"{name}.bias"]     # (E, width)
    return torch.addcmul(bias.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), weight.unsqueeze(1))


def attention(config: ModelConfig, parameters: Parameters, name: str, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Member-wise causal self-attention on x (E, B·positions, width)."""
    E, N, C = x.shape
    heads, positions = config.num_heads, N // batch
    qkv = linear(parameters, f"{name}.qkv", x).view(E * batch, positions, 3, heads, C // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                      # (E·B, heads, positions, hs)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = out.transpose(1, 2).reshape(E, N, C)
    return linear(parameters, f"{name}.proj", out)


def stacked_head(config: ModelConfig, parameters: Parameters, inputs: torch.Tensor) -> torch.Tensor:
    """The read-out at every position, (E, B, positions, read_out_size), from `inputs` of
    shape (E, B, ...): member e's slice is as `inputs_from_batch` makes it."""
    E, B, positions = inputs.shape[:3]
    C = config.width
    if config.layout == "tokens":
        table = parameters["read_in.weight"]                              # (E, vocabulary, width)
        offsets = torch.arange(E, device=inputs.device).view(E, 1, 1) * table.shape[1]
        h = F.embedding(inputs + offsets, table.reshape(-1, C))           # (E, B, positions, width)
    else:
        h = linear(parameters, "read_in", inputs.reshape(E, B * positions, -1)).view(E, B, positions, C)
    h = (h + parameters["position.weight"][:, None, :positions]).view(E, B * positions, C)
    for i in range(config.num_layers):
        block = f"blocks.{i}"
        h = h + attention(config, parameters, f"{block}.attention", layer_norm(parameters, f"{block}.norm1", h), B)
        up = linear(parameters, f"{block}.mlp.up", layer_norm(parameters, f"{block}.norm2", h))
        h = h + linear(parameters, f"{block}.mlp.down", F.gelu(up))
    head = linear(parameters, "read_out", layer_norm(parameters, "norm", h))
    return head.view(E, B, positions, -1)


def stacked_outputs(config: ModelConfig, parameters: Parameters, inputs: torch.Tensor) -> torch.Tensor:
    """What each member's run logs (`Transformer.forward`), stacked: urns (E, B, T, d),
    regression (E, B, T), classification (E, B, L)."""
    head = stacked_head(config, parameters, inputs)
    if config.layout == "tokens":
        return head[..., : config.num_dims].log_softmax(dim=-1)
    if config.layout == "pairs":
        return head[:, :, 0::2, 0]
    return head[:, :, -1].log_softmax(dim=-1)


def stacked_loss(family: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's training loss (E,), as `model.output_loss` computes it for one member."""
    members = outputs.shape[0]
    if family_spec(family).transformer == "pairs":
        return ((outputs - targets) ** 2).reshape(members, -1).mean(dim=1)
    return -outputs.gather(-1, targets.unsqueeze(-1)).reshape(members, -1).mean(dim=1)
