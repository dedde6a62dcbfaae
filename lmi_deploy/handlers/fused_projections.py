"""option.fuse_projections: one matrix for the projections that read the same input.

At small batch every decode step is matrix-vector products, one weight read each: cuBLAS reads one wide matrix faster
than two or three narrow ones with the same bytes. q|k|v of self-attention and the two gated-FFN input projections
(T5's wi_0|wi_1, Llama's gate|up) are concatenated at load. The first projection called computes them all and hands
each sibling its slice; a sibling called with another input (or alone) computes its own from its view of the matrix,
so the model stays correct whatever order its code calls them in.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import gemv

# sibling Linear layers that a model's code calls with the same input, first-called first
_FUSABLE = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"), ("wi_0", "wi_1"), ("gate_proj", "up_proj"))
# attention modules whose keys and values read another sequence (the encoder's): never fused
_CROSS_ATTENTION = ("EncDecAttention", "encoder_attn", "crossattention", "cross_attn")


class _SlicedLinear(torch.nn.Module):  # type: ignore[misc]
    """A projection whose weight is a view of a fused matrix: takes the slice its first sibling computed."""

    def __init__(self, weight: Any, bias: Any) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.pending: Any = None

    def forward(self, x: Any) -> Any:
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] is x:
            return pending[1]
        return gemv.linear(x, self.weight, self.bias)


class _FusedLinear(_SlicedLinear):
    """The first projection of a group: one product with the fused matrix, the siblings' slices handed to them."""

    def __init__(self, weight: Any, bias: Any, fused: Any, fused_bias: Any, siblings: list[_SlicedLinear]) -> None:
        super().__init__(weight, bias)
        self.fused = fused  # a plain tensor, not a parameter: state_dict keeps the checkpoint's names
        self.fused_bias = fused_bias
        self.sizes = [weight.shape[0], *(s.weight.shape[0] for s in siblings)]
        self.__dict__["siblings"] = siblings  # not submodules: each is already its parent's child

    def forward(self, x: Any) -> Any:
        parts = gemv.linear(x, self.fused, self.fused_bias).split(self.sizes, dim=-1)
        for sibling, part in zip(self.__dict__["siblings"], parts[1:]):
            sibling.pending = (x, part)
        return parts[0]


def _fusable_groups(root: Any) -> list[tuple[Any, tuple[str, ...]]]:
    groups: list[tuple[Any, tuple[str, ...]]] = []
    for path, module in root.named_modules():
        if any(name in path.split(".")[-1:] for name in _CROSS_ATTENTION):
            continue
        for names in _FUSABLE:
            layers: list[Any] = [getattr(module, name, None) for name in names]
            if not all(type(layer) is torch.nn.Linear for layer in layers):
                continue
            if len({(layer.in_features, layer.weight.dtype, layer.weight.device) for layer in layers}) != 1:
                continue
            if len({layer.bias is None for layer in layers}) == 1:
                groups.append((module, names))
    return groups


def _lone_projections(root: Any) -> list[tuple[Any, str, Any]]:
    """The plain Linear layers left after fusing: (parent, attribute, layer)."""
    return [
        (module, name, child)
        for module in root.modules()
        for name, child in module.named_children()
        if type(child) is torch.nn.Linear
    ]


def matrices(model: Any, seq2seq: bool) -> dict[tuple[int, int], list[Any]]:
    """The matrices a fused decode step multiplies by (each fused one, each lone projection's), by shape."""
    modules = list((model.get_decoder() if seq2seq else model).modules())
    siblings = {id(s) for m in modules if isinstance(m, _FusedLinear) for s in m.__dict__["siblings"]}
    found: dict[tuple[int, int], list[Any]] = {}
    for module in modules:
        if isinstance(module, _FusedLinear):
            weight = module.fused
        elif isinstance(module, _SlicedLinear) and id(module) not in siblings:
            weight = module.weight
        else:
            continue
        found.setdefault((weight.shape[0], weight.shape[1]), []).append(weight)
    return found


def fuse_projections(model: Any, seq2seq: bool) -> Any:
    """Fuse the decoder's same-input projections in place; returns what undoes it (None when nothing was fused)."""
    root = model.get_decoder() if seq2seq else model
    groups = _fusable_groups(root)
    extra = sum(getattr(m, n).weight.nbytes for m, names in groups for n in names)
    device = model.device
    if not groups:
        return None
    if device.type == "cuda" and extra > 0.5 * torch.cuda.mem_get_info(device)[0]:
        logging.warning("fuse_projections: %.1f GB more does not fit beside the model; not fused", extra / 1e9)
        return None
    originals = [(module, name, getattr(module, name)) for module, names in groups for name in names]
    for module, names in groups:
        layers = [getattr(module, name) for name in names]
        fused = torch.cat([layer.weight.detach() for layer in layers])
        fused_bias = None if layers[0].bias is None else torch.cat([layer.bias.detach() for layer in layers])
        views, bias_views, start = [], [], 0
        for layer in layers:
            end = start + layer.out_features
            views.append(fused[start:end])
            bias_views.append(None if fused_bias is None else fused_bias[start:end])
            start = end
        siblings = [_SlicedLinear(w, b) for w, b in zip(views[1:], bias_views[1:])]
        setattr(module, names[0], _FusedLinear(views[0], bias_views[0], fused, fused_bias, siblings))
        for name, sibling in zip(names[1:], siblings):
            setattr(module, name, sibling)
    for module, name, layer in _lone_projections(root):  # through gemv.linear too, where it wins
        originals.append((module, name, layer))
        setattr(module, name, _SlicedLinear(layer.weight.detach(), None if layer.bias is None else layer.bias.detach()))
    logging.info("fuse_projections: %d groups of projections fused (%.1f GB)", len(groups), extra / 1e9)

    def restore() -> None:
        for module, name, layer in originals:
            setattr(module, name, layer)

    return restore
