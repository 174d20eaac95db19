"""KV caches as the scorer and the decoder hold them, and what transformers versions disagree on.

A cache is a list of layer (keys, values) tensors, [rows, KV heads, positions, head dim].
The scorer keeps one per set of cached prefixes (`Past`), the decoder one growing cache for
its running rows (`buffered` layers).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def cache_argument(model: torch.nn.Module) -> str:
    """The name forward takes a KV cache by: transformers 5.2x renamed `past_key_values` to
    `cache` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def kv_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes one token's keys and values take in the cache, over all layers: what sizes a
    batch by memory."""
    config = model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layers = int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    dtype = next(model.parameters()).dtype
    return 2 * layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def _buffered_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class Buffered(DynamicLayer):
        """A cache layer whose keys and values sit in a buffer with room to grow: a decoding
        step writes its one token in place instead of copying the whole cache (a DynamicLayer
        concatenates, which took 40% of a step at 8 rows of 350 tokens on a CPU)."""

        def fill(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
            b, h, t, d = keys.shape
            self.buffers = [keys.new_empty((b, h, t + room, d)), values.new_empty((b, h, t + room, values.shape[-1]))]
            self.buffers[0][:, :, :t] = keys
            self.buffers[1][:, :, :t] = values
            self.length = t
            self.keys, self.values = self.buffers[0][:, :, :t], self.buffers[1][:, :, :t]
            self.is_initialized = True
            self.device = keys.device

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            n = key_states.shape[-2]
            if self.length + n > self.buffers[0].shape[-2]:
                self.fill(self.keys, self.values, max(n, 64))
            self.buffers[0][:, :, self.length : self.length + n] = key_states
            self.buffers[1][:, :, self.length : self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.buffers[0][:, :, : self.length], self.buffers[1][:, :, : self.length]
            return self.keys, self.values

    return Buffered


_BUFFERED: list[type] = []  # the class, made on first use (transformers imports late)


def buffered(keys: torch.Tensor, values: torch.Tensor, room: int) -> Any:
    """A cache layer holding `keys` and `values`, with room for `room` more positions."""
    if not _BUFFERED:
        _BUFFERED.append(_buffered_layer_class())
    layer = _BUFFERED[0]()
    layer.fill(keys, values, room)
    return layer


@dataclass
class Past:
    """A KV cache of several rows: layer (keys, values) of shape [rows, heads, width, dim]; row
    k's first `lengths[k]` positions are its prefix, the rest padding."""

    layers: Layers
    lengths: list[int]

    @property
    def width(self) -> int:
        return self.layers[0][0].shape[2]

    @staticmethod
    def merged(parts: list[Past]) -> Past:
        """The rows of several caches as one, each padded to the widest."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.width for p in parts)
        layers = []
        for i in range(len(parts[0].layers)):
            keys = [F.pad(p.layers[i][0], (0, 0, 0, width - p.width)) for p in parts]
            values = [F.pad(p.layers[i][1], (0, 0, 0, width - p.width)) for p in parts]
            layers.append((torch.cat(keys), torch.cat(values)))
        return Past(layers, [n for p in parts for n in p.lengths])

    def row(self, k: int) -> Past:
        n = self.lengths[k]
        return Past([(key[k : k + 1, :, :n], value[k : k + 1, :, :n]) for key, value in self.layers], [n])

    def expanded(self, rows: int) -> Layers:
        """A one-row cache seen as `rows` rows (no copy)."""
        return [(key.expand(rows, -1, -1, -1), value.expand(rows, -1, -1, -1)) for key, value in self.layers]

    def gathered(self, ks: list[int], device: torch.device) -> Layers:
        """Row ks[r] as row r."""
        if len(self.lengths) == 1:
            return self.expanded(len(ks))
        index = torch.tensor(ks, dtype=torch.long, device=device)
        return [(key.index_select(0, index), value.index_select(0, index)) for key, value in self.layers]
