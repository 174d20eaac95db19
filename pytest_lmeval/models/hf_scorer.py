"""Batched log-likelihood scoring of (context tokens, continuation tokens) pairs on a causal LM.

Semantics are lm-eval's HFLM._loglikelihood_tokens: the model input is
(context + continuation)[-(max_length + 1):][:-1], right-padded, no attention mask; the score is
the sum of log-softmax at the continuation's positions, and "greedy" means every continuation
token is the argmax. Pairs with the same model input share one row.

On top of that, two speed-ups that keep scores within float rounding of the plain path:
- token-budget batches: rows are grouped longest first so that rows x padded width stays under
  a budget, which `auto` grows while batches fit and halves on out-of-memory (the failed batch
  is retried, nothing is lost);
- shared-prefix reuse (prefix_plan.py): a prefix shared by several rows is run once and its KV
  cache reused for all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .prefix_plan import MIN_SAVED, Node, Row, plan

OnDone = Callable[[list[int]], None]  # indices of the pairs just scored
REUSE_MAX_CONTINUATION = 24  # tokens; see Scorer.score


@dataclass(frozen=True)
class Pair:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


def rolling_windows(tokens: list[int], prefix_token: int, max_len: int) -> Iterator[tuple[list[int], list[int]]]:
    """lm-eval's get_rolling_token_windows(context_len=1) + make_disjoint_window."""
    if not tokens:
        return
    first = min(max_len, len(tokens))
    yield [prefix_token], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_len)
        end = predicted + n
        ctx = tokens[end - max_len - 1 : end - 1]
        yield ctx[: len(ctx) - (n - 1)], tokens[end - n : end]
        predicted += n


def cache_argument(model: torch.nn.Module) -> str:
    """The name forward takes a KV cache by: transformers 5.2x renamed `past_key_values` to
    `cache` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TokenBudget:
    """Rows per batch from a budget of padded tokens; `auto` adapts to the device."""

    def __init__(self, batch_size: int | str, device: torch.device) -> None:
        self.fixed = None if batch_size == "auto" else int(batch_size)
        on_gpu = device.type == "cuda"
        self.tokens = 16384 if on_gpu else 2048
        self.ceiling = 1 << 20 if on_gpu else 2048
        self.grow = on_gpu
        self.hit_oom = False

    def take(self, widths: list[int], start: int) -> int:
        """How many rows from `start` (widths sorted longest first) form the next batch."""
        if self.fixed is not None:
            return min(self.fixed, len(widths) - start)
        width = widths[start]
        return max(1, min(len(widths) - start, self.tokens // max(width, 1)))

    def succeeded(self) -> None:
        if self.fixed is None and self.grow and not self.hit_oom and self.tokens < self.ceiling:
            self.tokens *= 2

    def shrink(self, rows: int) -> bool:
        """After an out-of-memory error; False when there is nothing left to shrink."""
        if self.fixed is not None or rows <= 1:
            return False
        self.hit_oom = True
        self.tokens = max(1, self.tokens // 2)
        return True


class Scorer:
    def __init__(
        self, model: torch.nn.Module, max_length: int, budget: TokenBudget, softmax_dtype, prefix_reuse: bool
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.budget = budget
        self.softmax_dtype = softmax_dtype
        self.prefix_reuse = prefix_reuse
        self.device = next(model.parameters()).device
        self._keep_supported = True
        self._cache_arg = cache_argument(model)
        self.tokens = 0  # tokens of the requests scored (each model input with its last token)
        self.forward_tokens = 0  # tokens actually run through the model (fewer with reuse)

    # -- public -------------------------------------------------------------------------------
    def score(self, pairs: list[Pair], on_done: OnDone) -> list[tuple[float, bool]]:
        rows: dict[Row, list[int]] = {}
        for i, pair in enumerate(pairs):
            whole = (pair.context + pair.continuation)[-(self.max_length + 1) :]
            rows.setdefault(whole[:-1], []).append(i)
            self.tokens += len(whole)
        first_scored = {
            row: len(row) - max(len(pairs[i].continuation) for i in members) for row, members in rows.items()
        }
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        plain = list(rows)
        if self.prefix_reuse and self._cache_is_plain():
            # A cached prefix shifts every scored logit by float rounding; over a long
            # continuation that adds up (PIQA: 1.07e-4 on a 190-nat answer), so only rows
            # with short continuations take the reuse path.
            short = [r for r in rows if len(r) - first_scored[r] <= REUSE_MAX_CONTINUATION]
            plain = [r for r in rows if len(r) - first_scored[r] > REUSE_MAX_CONTINUATION]
            if short:
                root = plan(short, first_scored, MIN_SAVED.get(self.device.type, MIN_SAVED["cuda"]))
                self._run_node(root, None, rows, pairs, results, on_done)
        if plain:
            self._run_leaves(plain, 0, None, rows, pairs, results, on_done)
        return results  # type: ignore[return-value]

    # -- internals ----------------------------------------------------------------------------
    def _cache_is_plain(self) -> bool:
        """Prefix reuse needs a cache of plain growing layers (no sliding windows, no SSM)."""
        config = getattr(self.model, "config", None)
        if config is None or getattr(config, "is_encoder_decoder", False):
            return False
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        layer_types = getattr(text, "layer_types", None)
        if layer_types and any(t != "full_attention" for t in layer_types):
            return False
        return not getattr(text, "sliding_window", None) or getattr(text, "use_sliding_window", True) is False

    @torch.no_grad()
    def _extend_cache(self, parent: list[tuple[torch.Tensor, torch.Tensor]] | None, tokens: Row):
        from transformers import DynamicCache

        past = DynamicCache(ddp_cache_data=parent) if parent else DynamicCache()
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        keep = {"logits_to_keep": 1} if self._keep_supported else {}
        out = self.model(ids, use_cache=True, **{self._cache_arg: past}, **keep)
        self.forward_tokens += len(tokens)
        cache = returned_cache(out)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _run_node(self, node: Node, parent, rows, pairs, results, on_done) -> None:
        cache = parent
        if node.end > node.start:
            sample = node.leaves[0] if node.leaves else _first_row(node)
            cache = self._extend_cache(parent, sample[node.start : node.end])
        if node.leaves:
            self._run_leaves(node.leaves, node.end, cache, rows, pairs, results, on_done)
        for child in node.children:
            self._run_node(child, cache, rows, pairs, results, on_done)

    def _run_leaves(self, leaves: list[Row], offset: int, cache, rows, pairs, results, on_done) -> None:
        order = sorted(leaves, key=lambda r: (-len(r), r))
        widths = [len(r) for r in order]  # a row's cost includes its cached prefix
        start = 0
        while start < len(order):
            n = self.budget.take(widths, start)
            batch = order[start : start + n]
            try:
                self._score_batch(batch, offset, cache, rows, pairs, results)
            except Exception as exc:
                if not (is_oom(exc) and self.budget.shrink(len(batch))):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue  # the same rows again, in a smaller batch
            self.budget.succeeded()
            start += len(batch)
            on_done([i for row in batch for i in rows[row]])

    @torch.no_grad()
    def _score_batch(self, batch: list[Row], offset: int, cache, rows, pairs, results) -> None:
        from transformers import DynamicCache

        width = len(batch[0]) - offset
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for r, row in enumerate(batch):
            ids[r, : len(row) - offset] = torch.tensor(row[offset:], dtype=torch.long)
        # Only the positions that predict continuation tokens are needed: keep that tail.
        first = min(len(row) - offset - max(len(pairs[i].continuation) for i in rows[row]) for row in batch)
        keep = width - max(first, 0)
        kwargs: dict = {}
        if cache is not None:
            b = len(batch)
            kwargs[self._cache_arg] = DynamicCache(
                ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in cache]
            )
            kwargs["use_cache"] = True
        if keep < width and self._keep_supported:
            kwargs["logits_to_keep"] = keep
        try:
            logits = self.model(ids.to(self.device), **kwargs).logits
        except TypeError:
            if "logits_to_keep" not in kwargs:
                raise
            self._keep_supported = False
            kwargs.pop("logits_to_keep")
            logits = self.model(ids.to(self.device), **kwargs).logits
        self.forward_tokens += len(batch) * width
        shift = width - logits.shape[1]
        for r, row in enumerate(batch):
            for i in rows[row]:
                cont = pairs[i].continuation
                n = len(cont)
                lo = len(row) - offset - n - shift
                logprobs = F.log_softmax(logits[r, lo : lo + n], dim=-1, dtype=self.softmax_dtype)
                target = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
                greedy = bool((logprobs.argmax(dim=-1) == target).all())
                results[i] = (float(logprobs.gather(-1, target.unsqueeze(-1)).sum()), greedy)


def _first_row(node: Node) -> Row:
    return node.leaves[0] if node.leaves else _first_row(node.children[0])
