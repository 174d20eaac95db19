"""Faster CPU kernels for a transformers model: oneDNN linear layers on packed weights while
it generates, and grouped-query attention without copied KV heads.

PyTorch runs `nn.Linear` on the CPU through MKL's sgemm, which lays the weight out for its
kernel again on every call and is slow on the few rows of a decoding step. oneDNN's matmul
with the weight packed ahead of time into its blocked layout (the kernel PyTorch's own
compiler uses for frozen CPU models) does neither. Measured on SmolLM2-135M's shapes, one
thread of this project's 2-core machine: the 30 layers' projections of one decoding step with
3 rows 83 -> 35 ms, 6 rows 66 -> 38 ms; the 49152-wide output projection for 3 rows
47 -> 10.5 ms.

It sums the products in another order. Texts are greedy choices and stay the same, but
log-likelihoods moved by up to 1.2e-4 from lm-eval's on piqa (lm-eval's own batch sizes 1
and 16 differ by 3e-5) and lambada's perplexity moved in its fourth decimal, so scoring runs
on PyTorch's kernel and plain weights: `Kernels.generating()` packs the weights (and frees
the plain ones) before a generation call, `Kernels.scoring()` unpacks them, to the same
values, before a log-likelihood call. Each switch is a copy of the weights (0.3 s for
SmolLM2), made only when the kind of request changes. A weight another module holds too (an
input embedding tied to the output projection) stays, beside its packed copy.
`--model-args packed_linear=false` keeps PyTorch's kernel throughout.

transformers maps a safetensors file into memory and its weights are views of that mapping,
which stays while any of them lives. A weight freed for its packed copy would still leave its
pages resident, on top of that copy, to the end of the run (SmolLM2: 1447 MiB resident after
packing, against 444 loaded); they are handed back to the kernel as each weight is packed
(1044 MiB).

`group_attention(model)` hands grouped-query attention (SmolLM2: 9 query heads on 3 KV heads)
to PyTorch's CPU attention kernel as it is (`enable_gqa`). transformers' "sdpa" attention does
that only without a mask; with one, as every padded batch, cached prefix and decoding step has,
it copies each layer's keys and values once per query head group first (`repeat_kv`). The
kernel's results are the same to the bit; six rows of five queries on 900 cached positions,
one layer: 15.1 -> 4.7 ms.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
from collections import Counter
from collections.abc import Callable

import torch


class PackedLinear(torch.nn.Linear):
    """An `nn.Linear` whose product runs on its packed weight (`packed`). `weight` is a
    zero-stride stand-in of the same shape and dtype when `freed`."""

    packed: torch.Tensor
    freed: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return super().extra_repr() + ", packed=oneDNN"


@functools.cache
def available() -> bool:
    """Whether this PyTorch has oneDNN's packed linear, and it computes what F.linear does."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        weight, x = torch.randn(24, 40), torch.randn(3, 40)
        bias = torch.randn(24)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        got = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        back = packed.to_dense()
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    want = torch.nn.functional.linear(x, weight, bias)
    return bool(torch.equal(back, weight) and torch.allclose(got, want, atol=1e-4))


def pack(model: torch.nn.Module) -> int:
    """Swap every float32 `nn.Linear` on the CPU for a `PackedLinear`; returns how many."""
    if not available():
        return 0
    holders = Counter(id(param) for _, param in model.named_parameters(remove_duplicate=False))
    swapped = 0
    mapped = _file_mappings()
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if type(module) is not torch.nn.Linear or weight is None:
                continue
            if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 2:
                continue
            module.__class__ = PackedLinear
            module.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
            module.freed = holders[id(weight)] == 1
            if module.freed:
                _release_pages(weight, mapped)
                stand_in = torch.empty((), dtype=weight.dtype).expand(weight.shape)
                module.weight = torch.nn.Parameter(stand_in, requires_grad=False)
            swapped += 1
    return swapped


def _file_mappings() -> list[tuple[int, int]]:
    """The address ranges this process maps from files (Linux's /proc; none elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    out = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    low, high = fields[0].split("-")
                    out.append((int(low, 16), int(high, 16)))
    except OSError:
        return []
    return out


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    try:
        call = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_MADV_DONTNEED = 4  # Linux


def _sole_storage_user(weight: torch.Tensor) -> bool:
    """Whether no other tensor shares the weight's storage (as a fresh tensor's use count)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return False
    fresh = torch.empty(1)
    storages = weight.untyped_storage(), fresh.untyped_storage()  # held while counted
    return count(storages[0]._cdata) <= count(storages[1]._cdata)


def _release_pages(weight: torch.Tensor, mapped: list[tuple[int, int]]) -> None:
    """Hand the kernel back the resident pages of a weight about to be freed that lives in a
    file mapping: the pages wholly inside it, when it has its storage to itself. They can be
    dropped without writing anything back: the mapping is the file's, copy-on-write, and
    nothing reads them again."""
    madvise = _madvise()
    start = weight.data_ptr()
    end = start + weight.numel() * weight.element_size()
    if madvise is None or not weight.is_contiguous() or weight.untyped_storage().nbytes() != end - start:
        return
    if not any(low <= start and end <= high for low, high in mapped) or not _sole_storage_user(weight):
        return
    first, last = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        madvise(first, last - first, _MADV_DONTNEED)  # a refusal leaves the pages resident, nothing worse


def unpack(model: torch.nn.Module) -> int:
    """Undo `pack`: plain `nn.Linear`s with their weights as they were; returns how many."""
    restored = 0
    with torch.no_grad():
        for module in model.modules():
            if type(module) is not PackedLinear:
                continue
            if module.freed:
                module.weight = torch.nn.Parameter(module.packed.to_dense(), requires_grad=False)
            del module.packed, module.freed
            module.__class__ = torch.nn.Linear
            restored += 1
    return restored


class Kernels:
    """Which kernel a CPU model's linear layers run on: packed for generation, plain for
    scoring (see the module's docstring). `enabled` false: always plain."""

    def __init__(self, model: torch.nn.Module, enabled: bool) -> None:
        self.model = model
        self.enabled = enabled and available()
        self.packed = False

    def generating(self) -> None:
        if self.enabled and not self.packed:
            pack(self.model)
            self.packed = True

    def scoring(self) -> None:
        if self.packed:
            unpack(self.model)
            self.packed = False


GROUPED_SDPA = "lmeval_grouped_sdpa"


def _grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' "sdpa" attention, with the key/value heads of grouped-query attention
    given to the kernel unrepeated."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    special = kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
    special = special or bool(kwargs.get("output_attentions"))
    if getattr(module, "num_key_value_groups", 1) == 1 or special:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    q_length = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_length > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_length:  # an empty static cache's prefill: only the first positions are real
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _sdpa_takes_groups() -> bool:
    """Whether this PyTorch's attention takes grouped KV heads (`enable_gqa`, PyTorch 2.5)."""
    q, kv = torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 3, 4)
    try:
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv, attn_mask=torch.zeros(1, 1, 1, 3), enable_gqa=True)
    except (TypeError, RuntimeError):
        return False
    return True


def group_attention(model: torch.nn.Module) -> bool:
    """Switch a model on the CPU that uses transformers' "sdpa" attention to `_grouped_sdpa`
    (with sdpa's masks); returns whether it did."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:  # a transformers before attention interfaces
        return False
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    if not _sdpa_takes_groups():
        return False
    AttentionInterface.register(GROUPED_SDPA, _grouped_sdpa)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)
    try:
        model.set_attn_implementation(GROUPED_SDPA)
    except (ValueError, ImportError):  # a model that checks its implementation against a fixed list
        model.set_attn_implementation("sdpa")
        return False
    return config._attn_implementation == GROUPED_SDPA
