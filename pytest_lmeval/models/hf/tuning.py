"""What the transformers path asks of the device it runs on, answered for a GPU.

The decoder, the scorer and the generation loop are written once for every device. Where the
fastest choice depends on the hardware (how large a batch, how much memory the KV cache may
take, whether a shared prefix is worth its own forward pass) they ask a `Tuning`. This class
gives the answers for a GPU, or any accelerator: big batches, a budget from the device's free
memory, and nothing done to the model. A CPU gets `cpu.CpuTuning`, which overrides these; the
choice between the two is made in `device.tuning_for` alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


class Tuning:
    """Device-dependent numbers and hooks of the transformers path (the GPU's answers)."""

    # What one more forward pass costs on its own, in tokens' worth of compute. A GPU runs a
    # small pass in about the time of a large one (launch latency): measured on an H100,
    # per-question prefix reuse on ARC-Easy 0-shot ran 17x slower than plain batches. A cached
    # prefix must save at least this many tokens, (rows - 1) x its length (prefix_plan.plan),
    # and a prompt-lookup draft is weighed against it (decode.Decoder._cut_drafts).
    pass_cost: int = 16384
    # Rows decoding together when the batch size is `auto`; the KV budget may allow fewer.
    decode_rows: int = 256
    # A scoring batch's padded tokens under `auto`: where the budget starts, and the most it
    # grows to (it doubles after each batch that fits, until an out-of-memory error).
    batch_tokens: int = 16384
    max_batch_tokens: int = 1 << 20

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def kv_budget(self) -> int:
        """Bytes the KV cache of a decoding batch may take: half of what the accelerator has
        free, leaving the rest to a pass's activations; on one that shares the host's memory
        and cannot tell what is free (Apple's mps), a quarter of the host's available RAM."""
        mem_get_info = getattr(getattr(torch, self.device.type, None), "mem_get_info", None)
        if mem_get_info is None:
            return host_kv_budget()
        free, _total = mem_get_info(self.device)
        return int(free * 0.5)

    def batch_sizes(self, tokens: int, widths: list[int], own: list[int]) -> list[int]:
        """Rows of the next scoring batch, for rows sorted longest first, as many as `tokens`
        holds of `widths` (what each row holds in memory). One batch only: the budget may
        grow after it. `own` (the tokens each row runs) matters where padding costs time."""
        return [max(1, min(len(widths), tokens // max(widths[0], 1)))]

    def merge_bytes(self, width: int) -> int:
        """KV-cache bytes that batches of sibling prefixes `width` tokens wide may hold at
        once, so that the leaves of all of them score in the same batches. Zero: each batch of
        prefixes scores its own leaves, which on a GPU are batch enough."""
        return 0

    def prepare(self, model: torch.nn.Module, *, packed_linear: bool) -> None:
        """Adapt a model this backend placed on the device (a GPU's model stays as loaded)."""

    def before_scoring(self) -> None:
        """Called before log-likelihood requests run."""

    def before_generating(self) -> None:
        """Called before generation requests run."""

    @contextlib.contextmanager
    def decoding(self, model: torch.nn.Module) -> Iterator[None]:
        """Around a decoding loop over `model`."""
        yield


KV_CAP = 4 << 30  # bytes of KV cache a decoding batch takes at most


def available_ram() -> int:
    """MemAvailable from Linux's /proc/meminfo, else the free pages sysconf reports."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return available


def host_kv_budget() -> int:
    """A quarter of the RAM the host has available, at most KV_CAP."""
    return min(KV_CAP, available_ram() // 4)
