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
How big a batch is and which prefixes are worth a pass of their own depend on the device: the
scorer asks its budget's `tuning.Tuning` (a CPU's is cpu.CpuTuning), and nothing else here
knows what it runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .kv_cache import Past, cache_argument, kv_bytes_per_token, returned_cache
from .prefix_plan import Node, Row, plan
from .tuning import Tuning

OnDone = Callable[[list[int], list[Any]], None]  # the pairs just scored (indices) and all results so far
REUSE_MAX_CONTINUATION = 48  # tokens; see Scorer.score


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


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TokenBudget:
    """Rows per scoring batch from a budget of padded tokens. A fixed batch size is that many
    rows; `auto` starts at the device's `batch_tokens`, doubles after each batch that fits (up
    to `max_batch_tokens`) and halves on out-of-memory, never to grow again."""

    def __init__(self, batch_size: int | str, tuning: Tuning) -> None:
        self.fixed = None if batch_size == "auto" else int(batch_size)
        self.tuning = tuning
        self.tokens = tuning.batch_tokens
        self.hit_oom = False

    def sizes(self, widths: list[int], own: list[int] | None = None) -> list[int]:
        """Sizes of the next batches, for rows sorted longest first. `widths[i]` is what row i
        holds in memory (its tokens and the cached prefix it attends to), `own[i]` the tokens
        it runs (default: the same); the device's tuning cuts them (Tuning.batch_sizes)."""
        own = widths if own is None else own
        if self.fixed is not None:
            n = len(widths)
            return [min(self.fixed, n - i) for i in range(0, n, self.fixed)]
        return self.tuning.batch_sizes(self.tokens, widths, own)

    def succeeded(self) -> None:
        if self.fixed is None and not self.hit_oom and self.tokens < self.tuning.max_batch_tokens:
            self.tokens *= 2

    def shrink(self, rows: int) -> bool:
        """After an out-of-memory error; False when there is nothing left to shrink."""
        if self.fixed is not None or rows <= 1:
            return False
        self.hit_oom = True
        self.tokens = max(1, self.tokens // 2)
        return True


class Scorer:
    """Log-likelihoods of pairs, batched and with shared prefixes reused as the device's
    tuning (the budget's) finds worth it."""

    def __init__(
        self, model: torch.nn.Module, max_length: int, budget: TokenBudget, softmax_dtype, prefix_reuse: bool
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.budget = budget
        self.tuning = budget.tuning
        self.softmax_dtype = softmax_dtype
        self.prefix_reuse = prefix_reuse
        self.device = next(model.parameters()).device
        self._keep_supported = True
        self._cache_arg = cache_argument(model)
        self._kv_bytes: int | None = None
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
            # with continuations of up to 48 tokens take the reuse path (PIQA then 6.1e-5,
            # HellaSwag 5.3e-5 against lm-eval, SmolLM2, 40 documents each).
            short = [r for r in rows if len(r) - first_scored[r] <= REUSE_MAX_CONTINUATION]
            plain = [r for r in rows if len(r) - first_scored[r] > REUSE_MAX_CONTINUATION]
            if short:
                root = plan(short, first_scored, self.tuning.pass_cost)
                self._run_node(root, None, rows, pairs, results, on_done)
        if plain:
            self._run_leaves([(row, 0) for row in plain], None, rows, pairs, results, on_done)
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

    def _run_node(self, node: Node, parent: Past | None, rows, pairs, results, on_done) -> None:
        """Score everything under `node`; `parent` caches its rows' tokens [0, node.start)."""
        past = self._extend(parent, [node]) if node.end > node.start else parent
        if node.leaves:
            self._run_leaves([(row, 0) for row in node.leaves], past, rows, pairs, results, on_done)
        self._run_children(node, past, rows, pairs, results, on_done)

    def _run_children(self, node: Node, past: Past | None, rows, pairs, results, on_done) -> None:
        """Score everything under `node`'s children; `past` caches [0, node.end). Sibling
        prefixes (one per question, or one few-shot block per subject) run together in
        token-budget batches, and so do all their leaves. Where the tuning says so
        (Tuning.merge_bytes), the caches of several batches of prefixes are held together, so
        that the leaves of all of them batch together too."""
        children = sorted(node.children, key=lambda c: (-c.end, _first_row(c)))
        widths = [c.end for c in children]
        own = [c.end - c.start for c in children]
        start = 0
        sizes: list[int] = []
        while start < len(children):
            if not sizes:
                sizes = self.budget.sizes(widths[start:], own[start:])
            taken = [sizes.pop(0)]
            while sizes and sum(taken) + sizes[0] <= self._merged_rows(widths[start]):
                taken.append(sizes.pop(0))
            flat = children[start : start + sum(taken)]
            try:
                groups, at = [], 0
                for n in taken:
                    groups.append(self._extend(past, flat[at : at + n]))
                    at += n
                chunk = Past.merged(groups)
                leaves = [(row, k) for k, child in enumerate(flat) for row in child.leaves]
                self._run_leaves(leaves, chunk, rows, pairs, results, on_done)
            except Exception as exc:
                if not (is_oom(exc) and self.budget.shrink(len(flat))):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                sizes = []
                continue  # the same prefixes again, fewer at a time (leaves already scored are kept)
            for k, child in enumerate(flat):
                if child.children:
                    self._run_children(child, chunk.row(k), rows, pairs, results, on_done)
            start += len(flat)

    def _merged_rows(self, width: int) -> int:
        """How many prefix rows of `width` tokens may be held together."""
        budget = self.tuning.merge_bytes(width)
        if not budget:
            return 0
        if self._kv_bytes is None:
            self._kv_bytes = kv_bytes_per_token(self.model)
        return budget // max(1, width * self._kv_bytes)

    @torch.no_grad()
    def _extend(self, parent: Past | None, nodes: list[Node]) -> Past:
        """Run the nodes' own tokens (one row each, right-padded) on top of the parent's cache
        and keep the cache: row k holds node k's prefix [0, node.end)."""
        from transformers import DynamicCache

        width = max(n.end - n.start for n in nodes)
        ids = torch.zeros((len(nodes), width), dtype=torch.long)
        for k, node in enumerate(nodes):
            ids[k, : node.end - node.start] = torch.tensor(_first_row(node)[node.start : node.end], dtype=torch.long)
        past = DynamicCache(ddp_cache_data=parent.expanded(len(nodes))) if parent else DynamicCache()
        keep = {"logits_to_keep": 1} if self._keep_supported else {}
        out = self.model(ids.to(self.device), use_cache=True, **{self._cache_arg: past}, **keep)
        self.forward_tokens += len(nodes) * width
        cache = returned_cache(out)
        return Past([(layer.keys, layer.values) for layer in cache.layers], [n.end for n in nodes])

    def _run_leaves(self, leaves: list[tuple[Row, int]], past: Past | None, rows, pairs, results, on_done) -> None:
        """Score rows, each on top of row `k` of `past` (its cached prefix) when there is one."""
        # Longest first by the tokens each row runs (past its own prefix), so a batch pads
        # little; a row's cost includes the cached width it attends to.
        own = {leaf: len(leaf[0]) - (past.lengths[leaf[1]] if past else 0) for leaf in leaves}
        order = sorted(leaves, key=lambda leaf: (-own[leaf], leaf[0]))
        runs = [own[leaf] for leaf in order]
        widths = [n + (past.width if past else 0) for n in runs]
        start = 0
        sizes: list[int] = []
        while start < len(order):
            if not sizes:
                sizes = self.budget.sizes(widths[start:], runs[start:])
            batch = order[start : start + sizes.pop(0)]
            try:
                self._score_batch(batch, past, rows, pairs, results)
            except Exception as exc:
                if not (is_oom(exc) and self.budget.shrink(len(batch))):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                sizes = []
                continue  # the same rows again, in a smaller batch
            self.budget.succeeded()
            start += len(batch)
            on_done([i for row, _ in batch for i in rows[row]], results)

    @torch.no_grad()
    def _score_batch(self, batch: list[tuple[Row, int]], past: Past | None, rows, pairs, results) -> None:
        from transformers import DynamicCache

        offsets = [past.lengths[k] if past else 0 for _, k in batch]
        width = max(len(row) - off for (row, _), off in zip(batch, offsets, strict=True))
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for r, ((row, _), off) in enumerate(zip(batch, offsets, strict=True)):
            ids[r, : len(row) - off] = torch.tensor(row[off:], dtype=torch.long)
        # Only the positions that predict continuation tokens are needed: the output projection
        # gets exactly those (no padding, no context positions), as one [1, n, hidden] input.
        spans = []  # per row: where its scored positions start in the input, and how many
        for (row, _), off in zip(batch, offsets, strict=True):
            n = max(len(pairs[i].continuation) for i in rows[row])
            spans.append((len(row) - off - n, n))
        keep = width - min(lo for lo, _ in spans)
        kwargs: dict = {}
        if past is not None:
            kwargs[self._cache_arg] = DynamicCache(ddp_cache_data=past.gathered([k for _, k in batch], self.device))
            kwargs["use_cache"] = True
            cached = past.width
            if any(off != cached for off in offsets):
                # Prefixes of different lengths: each row sees its own prefix and continues
                # from its length (the padding after a shorter prefix is masked out).
                mask = torch.ones((len(batch), cached + width), dtype=torch.long)
                for r, off in enumerate(offsets):
                    mask[r, off:cached] = 0
                kwargs["attention_mask"] = mask.to(self.device)
                kwargs["position_ids"] = (
                    torch.tensor(offsets, dtype=torch.long).unsqueeze(1) + torch.arange(width).unsqueeze(0)
                ).to(self.device)
        if self._keep_supported:
            kwargs["logits_to_keep"] = keep

        def scored_positions(length: int) -> torch.Tensor:
            """Where the scored positions sit in the flattened [rows x length] input of the
            output projection, which sees the last `length` positions of each row."""
            cut = width - length
            flat = [r * length + lo - cut + t for r, (lo, n) in enumerate(spans) for t in range(n)]
            return torch.tensor(flat, dtype=torch.long, device=self.device)

        with _ScoredPositions(self.model, scored_positions) as head:
            try:
                logits = self.model(ids.to(self.device), **kwargs).logits
            except TypeError:
                if "logits_to_keep" not in kwargs:
                    raise
                self._keep_supported = False
                kwargs.pop("logits_to_keep")
                logits = self.model(ids.to(self.device), **kwargs).logits
        self.forward_tokens += len(batch) * width
        at = 0
        for r, ((row, _), (lo, n_max)) in enumerate(zip(batch, spans, strict=True)):
            if head.used:  # logits [1, scored positions, vocab], row after row
                scored, first = logits[0, at : at + n_max], 0
                at += n_max
            else:  # a model that bypasses its output module: [rows, kept tail, vocab]
                scored, first = logits[r], lo - (width - logits.shape[1])
            for i in rows[row]:
                cont = pairs[i].continuation
                n = len(cont)
                start = first + n_max - n
                logprobs = F.log_softmax(scored[start : start + n], dim=-1, dtype=self.softmax_dtype)
                target = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
                greedy = bool((logprobs.argmax(dim=-1) == target).all())
                results[i] = (float(logprobs.gather(-1, target.unsqueeze(-1)).sum()), greedy)


class _ScoredPositions:
    """While a scoring pass runs, the model's output projection sees only the hidden states of
    the scored positions (`where(positions per row)` indexes its flattened input): context and
    padding positions would be a third of a zero-shot pass's work for nothing. `used` says
    whether the model went through that module."""

    def __init__(self, model: torch.nn.Module, where: Callable[[int], torch.Tensor]) -> None:
        self.head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.where = where
        self.used = False
        self._hook = None

    def __enter__(self) -> _ScoredPositions:
        if self.head is not None:
            self._hook = self.head.register_forward_pre_hook(self._gather)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()

    def _gather(self, _module, args: tuple) -> tuple | None:
        hidden = args[0]
        if self.used or hidden.dim() != 3:
            return None
        self.used = True
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.where(hidden.shape[1]))
        return (picked.unsqueeze(0), *args[1:])


def _first_row(node: Node) -> Row:
    return node.leaves[0] if node.leaves else _first_row(node.children[0])
