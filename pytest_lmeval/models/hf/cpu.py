"""The transformers path tuned for a CPU (a laptop, or this project's 2-core test machine).

On a CPU a forward pass costs about what its tokens cost: every weight is read once per pass,
and small products are slow in the BLAS. So batches are cut to pad as little as possible,
prefix reuse pays off early, memory comes from the host's RAM, and the linear layers run on
oneDNN's packed weights while generating (cpu_kernels.py). Every number here was measured on
SmolLM2-135M with one or two threads; none of it applies to a GPU (tuning.Tuning).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from . import cpu_kernels
from .tuning import Tuning, host_kv_budget

# Sibling prefixes whose caches are held together so their leaves batch together: up to this
# many bytes, and only short prefixes (a zero-shot question). Merging long ones (a 25-shot
# context, an MMLU subject's block under each question) copies more cache than it saves passes.
MERGE_BYTES = 512 << 20
MERGE_WIDTH = 256
# The output projection of a decoding step has one row per running sequence. MKL takes two or
# three rows several times slower than four (SmolLM2's 49152 x 576 head, one thread: 1 row
# 11.7 ms, 2 rows 28.2, 3 rows 43.3, 4 rows 20.0), so such a product gets blank rows up to
# four, cut off again after it. A head packed for oneDNN needs none.
SMALL_PRODUCTS = (2, 3)
PADDED_ROWS = 4


class CpuTuning(Tuning):
    """The CPU's answers to what tuning.Tuning asks, and the model's kernel state."""

    # A pass of 1 token takes 64 ms, large batches run 300 tokens a second: a pass on its own
    # is worth about 32 tokens.
    pass_cost = 32
    decode_rows = 32
    # 2048 padded tokens a batch; bigger batches run no faster per token, so it never grows
    batch_tokens = max_batch_tokens = 2048

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.kernels: cpu_kernels.Kernels | None = None

    def kv_budget(self) -> int:
        """A quarter of the RAM the host has available, at most KV_CAP."""
        return host_kv_budget()

    def batch_sizes(self, tokens: int, widths: list[int], own: list[int]) -> list[int]:
        """All the batches at once, cut where they cost least: a batch runs its rows padded to
        its first row's `own` width, plus a pass cost, and holds at most `tokens` of `own` and
        four times that of `widths`."""
        n = len(widths)

        def cap(i: int) -> int:
            rows = min(tokens // max(own[i], 1), 4 * tokens // max(widths[i], 1))
            return max(1, min(n - i, rows))

        # Cutting a batch inside a run of equal widths never helps, so each batch ends where
        # the width drops, or where it is full: dynamic programming over those ends.
        drops = [j for j in range(1, n) if own[j] < own[j - 1]]
        best = [0] * (n + 1)
        end = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            last = i + cap(i)
            k = bisect.bisect_right(drops, i)
            cost, stop = (last - i) * own[i] + self.pass_cost + best[last], last
            while k < len(drops) and drops[k] < last:
                j = drops[k]
                c = (j - i) * own[i] + self.pass_cost + best[j]
                if c < cost:
                    cost, stop = c, j
                k += 1
            best[i], end[i] = cost, stop
        out, i = [], 0
        while i < n:
            out.append(end[i] - i)
            i = end[i]
        return out

    def merge_bytes(self, width: int) -> int:
        """One row of a few tokens a pass is several times slower per token than a batch: the
        leaves of many short prefixes are batched together."""
        return MERGE_BYTES if width <= MERGE_WIDTH else 0

    def prepare(self, model: torch.nn.Module, *, packed_linear: bool) -> None:
        """Grouped-query attention without copied heads; packed linears for generation
        unless `packed_linear` is false."""
        cpu_kernels.group_attention(model)
        self.kernels = cpu_kernels.Kernels(model, packed_linear)

    def before_scoring(self) -> None:
        """Plain weights: packed ones move log-likelihoods by float rounding."""
        if self.kernels is not None:
            self.kernels.scoring()

    def before_generating(self) -> None:
        if self.kernels is not None:
            self.kernels.generating()

    @contextlib.contextmanager
    def decoding(self, model: torch.nn.Module) -> Iterator[None]:
        """Pads the output projection's small products (SMALL_PRODUCTS) while decoding."""
        head = model.get_output_embeddings()
        hooks = [] if head is None or isinstance(head, cpu_kernels.PackedLinear) else _pad_small_products(head)
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def _pad_small_products(head: torch.nn.Module) -> list[Any]:
    padded: list[int] = []

    def before(_module: Any, args: tuple) -> tuple | None:
        x = args[0]
        rows = x.shape[0]
        if x.dim() < 2 or x[..., 0].numel() != rows or rows not in SMALL_PRODUCTS:
            return None
        padded.append(rows)
        return (torch.cat([x, x.new_zeros((PADDED_ROWS - rows, *x.shape[1:]))]), *args[1:])

    def after(_module: Any, _args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        return out[: padded.pop()] if padded else None

    return [head.register_forward_pre_hook(before), head.register_forward_hook(after)]
