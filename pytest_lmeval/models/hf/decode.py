"""Greedy decoding of many rows at once, continuously, for causal LMs (our own loop).

Why not transformers' own continuous batching (`generate_batch`, `ContinuousBatchingManager`,
`allow_block_sharing`): it stops only on token ids, not on stop strings, which every lm-eval
generation task has (gsm8k's "Question:"), so each row would run to max_gen_toks; and on this
CPU it was slower. Measured with benchmarks/continuous_batching.py (SmolLM2-135M, 4 prompts of
a 5-shot block, 32 greedy tokens, 2 cores): batch-1 `generate` 10.1 s; `generate_batch` 6.8 s
(paged sdpa, no block sharing) to 7.5 s (with it), texts identical; this loop 4.4 s, 3.6 s
with the shared prefix run once, texts identical. This loop keeps `generate`'s
greedy semantics row by row:

- a row's next token is the argmax of its last logits; it is done at an EOS id, when its recent
  text holds a stop sequence (lm-eval's MultiTokenEOSCriteria, per row), or at max_gen_toks;
- rows are left-padded in one KV cache with an attention mask and explicit positions, so each
  row sees exactly its own tokens;
- how many rows decode together is set by memory: each row needs (prompt + max_gen_toks) x the
  KV bytes of one token (layers x KV heads x head dim x 2 x dtype bytes), against a budget from
  the device's free memory (the caller's, from Tuning.kv_budget), and at most `max_rows`;
- a finished row leaves the batch and a waiting row takes its place (continuous batching):
  new rows are prefilled on their own and joined to the running cache, padded to its width;
- a prefix shared by a task's prompts (the few-shot block) is run once; its KV seeds every row
  that shares it (prefix_plan.generation_prefixes decides which rows share what);
- prompt lookup: a row whose last tokens occurred earlier in its text gets what followed them
  there as a draft, fed in the same pass; the draft is kept up to its first token that is not
  the greedy choice, the rest is masked out of the cache (so texts are those of one token a
  pass, up to float rounding of the wider pass).

What depends on the device (a forward pass's fixed cost, anything done to the model around the
loop) comes from a `tuning.Tuning`, chosen by `device.tuning_for`.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .device import tuning_for
from .kv_cache import buffered, cache_argument, kv_bytes_per_token, returned_cache
from .prefix_plan import generation_prefixes
from .tuning import Tuning

Progress = Callable[[int], None]
OnFinished = Callable[[int, list[int]], None]  # a prompt's index and its generated tokens, as its row ends

# Prompt lookup (speculative decoding with drafts copied from the row's own text): when a row's
# last few tokens occurred before in its prompt or its output, the tokens that followed them
# there are fed as a draft in the same pass, and kept as far as they equal the model's own
# greedy choices. Chain-of-thought answers copy a lot (BBH's CoT repeats its few-shot
# phrasing): SmolLM2 on three BBH boolean_expressions prompts needs 15 passes for 192 tokens
# instead of 64. A draft token costs compute whether it is kept or not, and every row of a
# pass is padded to its longest draft, so a pass's drafts are cut to the length that gains the
# most (see Decoder._cut_drafts).
DRAFT_MAX = 8
NGRAMS = (3, 2, 1)  # longest match first


@dataclass
class _Row:
    index: int  # into the caller's list
    tokens: list[int]  # the prompt
    prefix: int  # how many of its first tokens come from a shared cached prefix
    group: int  # rows of one group share that prefix
    generated: list[int] = field(default_factory=list)
    position: int = 0  # the position of the next token it is fed
    seen: dict[tuple[int, ...], int] = field(default_factory=dict)  # n-gram -> where its last occurrence ends
    indexed: int = 0  # tokens of prompt + generated entered in `seen`
    tested: int = 0  # draft tokens compared with the greedy choice (up to the first miss)
    matched: int = 0  # of those, equal to it
    first_token_seconds: float | None = None  # from the start of the pass that prefilled it to its first token


class Decoder:
    """One decoding job: rows of one set of generation arguments."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        until: list[str],
        max_toks: int,
        max_rows: int,
        budget_bytes: int,
        prefix_reuse: bool,
        min_saved: int,
        min_saved_whole: int | None = None,
        lookup: int = DRAFT_MAX,
        tuning: Tuning | None = None,
    ) -> None:
        self.model = model
        self.tok = tokenizer
        self.until = [s for s in until if s]
        self.lookback = {s: len(tokenizer.encode(s, add_special_tokens=False)) + 2 for s in self.until}
        self.max_toks = max_toks
        self.max_rows = max(1, max_rows)
        self.budget = budget_bytes
        self.per_token = kv_bytes_per_token(model)
        self.prefix_reuse = prefix_reuse
        self.min_saved = min_saved
        self.min_saved_whole = min_saved_whole  # for a prefix every prompt shares
        self.lookup = max(0, lookup)  # most draft tokens a pass, 0: one token a pass
        self.device = next(model.parameters()).device
        self.tuning = tuning if tuning is not None else tuning_for(self.device)
        self.cache_arg = cache_argument(model)
        self.keep_supported = "logits_to_keep" in inspect.signature(model.forward).parameters
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        self.eos = set(eos)
        self.tokens = 0  # tokens of the requests (prompt + generated)
        self.forward_tokens = 0  # tokens run through the model
        self.steps = 0
        self.drafted = self.kept = 0  # prompt-lookup draft tokens fed, and kept
        self.first_token_seconds: list[float | None] = []  # per prompt of the last run (efficiency.py's TTFT)

    # -- public -------------------------------------------------------------------------------
    @torch.no_grad()
    def run(
        self, prompts: Sequence[list[int]], progress: Progress, on_finished: OnFinished | None = None
    ) -> list[list[int]]:
        """The generated token ids of each prompt; `on_finished(index, tokens)` as each row ends."""
        with self.tuning.decoding(self.model):
            return self._run(prompts, progress, on_finished)

    def _run(
        self, prompts: Sequence[list[int]], progress: Progress, on_finished: OnFinished | None = None
    ) -> list[list[int]]:
        prefixes = (
            generation_prefixes([tuple(p) for p in prompts], self.min_saved, min_saved_whole=self.min_saved_whole)
            if self.prefix_reuse
            else [(0, i) for i in range(len(prompts))]
        )
        rows = [_Row(i, list(p), n, g) for i, (p, (n, g)) in enumerate(zip(prompts, prefixes, strict=True))]
        # the rows of one prefix together, longest first within it (widths padded alike)
        rows.sort(key=lambda r: (r.prefix == 0, r.group if r.prefix else 0, -len(r.tokens), r.tokens))
        waiting = deque(rows)
        self.prefix_kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.left = {}
        for r in rows:
            self.left[r.group] = self.left.get(r.group, 0) + 1
        running: list[_Row] = []
        cache = mask = None
        out: list[list[int] | None] = [None] * len(prompts)
        self.first_token_seconds = [None] * len(prompts)
        while waiting or running:
            if waiting and self._should_admit(running, waiting[0]):
                joining = self._take(waiting, running)
                cache, mask = self._admit(joining, running, cache, mask)
                running += joining
                finished = [r for r in joining if self._done(r)]
            else:
                finished, mask = self._step(running, cache, mask)
            if finished:
                for r in finished:
                    out[r.index] = r.generated
                    self.first_token_seconds[r.index] = r.first_token_seconds
                    self.tokens += len(r.tokens) + len(r.generated)
                    if on_finished is not None:
                        on_finished(r.index, r.generated)
                progress(len(finished))
                gone = {id(r) for r in finished}
                keep = [i for i, r in enumerate(running) if id(r) not in gone]
                running = [running[i] for i in keep]
                cache, mask = self._select(cache, mask, keep)
        return out  # type: ignore[return-value]

    # -- scheduling ---------------------------------------------------------------------------
    def _should_admit(self, running: list[_Row], first: _Row) -> bool:
        """Join waiting rows when the batch is empty, or when a quarter of its places are free
        and the next row's KV cache fits the budget: each join is one more prefill pass and a
        copy of the running cache."""
        if not running:
            return True
        free = self.max_rows - len(running)
        return free >= max(1, self.max_rows // 4) and self._cost(running + [first]) <= self.budget

    def _cost(self, rows: list[_Row]) -> int:
        width = max(len(r.tokens) for r in rows) + self.max_toks
        return len(rows) * width * self.per_token

    def _take(self, waiting: deque[_Row], running: list[_Row]) -> list[_Row]:
        """Waiting rows of one prefix group that fit beside the running ones."""
        joining = [waiting.popleft()]
        while (
            waiting
            and (waiting[0].group == joining[0].group or waiting[0].prefix == joining[0].prefix == 0)
            and len(running) + len(joining) < self.max_rows
            and self._cost(running + joining + [waiting[0]]) <= self.budget
        ):
            joining.append(waiting.popleft())
        return joining

    # -- model passes -------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache, keep: int = 1) -> Any:
        """Logits of each row's last `keep` positions, [rows, keep, vocab], and the cache."""
        from transformers import DynamicCache

        cache = cache if cache is not None else DynamicCache()
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        kwargs.update(use_cache=True, **{self.cache_arg: cache})
        if self.keep_supported:
            try:
                out = self.model(**kwargs, logits_to_keep=keep)
            except TypeError:  # a model whose forward has no logits_to_keep
                self.keep_supported = False
        if not self.keep_supported:
            out = self.model(**kwargs)
        self.forward_tokens += ids.numel()
        return out.logits[:, -keep:], returned_cache(out)

    def _prefix(self, row: _Row) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if row.group not in self.prefix_kv:
            ids = torch.tensor([row.tokens[: row.prefix]], dtype=torch.long, device=self.device)
            mask = torch.ones_like(ids)
            positions = torch.arange(row.prefix, device=self.device)[None]
            _, cache = self._forward(ids, mask, positions, None)
            self.prefix_kv[row.group] = [(layer.keys, layer.values) for layer in cache.layers]
        return self.prefix_kv[row.group]

    def _admit(self, joining: list[_Row], running: list[_Row], cache, mask):
        """Prefill the joining rows (on their shared prefix's cache) and join them to the batch."""
        from transformers import DynamicCache

        started = time.perf_counter()
        k = len(joining)
        p = joining[0].prefix
        suffixes = [r.tokens[p:] for r in joining]
        width = max(map(len, suffixes))
        ids = torch.zeros((k, width), dtype=torch.long)
        own = torch.zeros((k, width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            own[i, width - len(s) :] = 1
        positions = (p + own.cumsum(-1) - 1).clamp(min=p)
        new_mask = torch.cat([torch.ones((k, p), dtype=torch.long), own], dim=1).to(self.device)
        past = None
        if p:
            kv = self._prefix(joining[0])
            past = DynamicCache(ddp_cache_data=[(key.expand(k, -1, -1, -1), v.expand(k, -1, -1, -1)) for key, v in kv])
        logits, new_cache = self._forward(ids.to(self.device), new_mask, positions.to(self.device), past)
        for r in joining:
            self.left[r.group] -= 1
            if self.left[r.group] == 0:
                self.prefix_kv.pop(r.group, None)
        first = logits[:, -1].argmax(dim=-1).tolist()  # on the host: the joining rows' first tokens are out
        took = time.perf_counter() - started
        for r, t in zip(joining, first, strict=True):
            r.generated.append(t)
            r.position = len(r.tokens)
            r.first_token_seconds = took
        if cache is None or not running:
            new_cache.layers = [buffered(x.keys, x.values, self.max_toks) for x in new_cache.layers]
            return new_cache, new_mask
        return self._join(cache, mask, new_cache, new_mask)

    def _join(self, cache, mask, new_cache, new_mask):
        """Running and joining rows in one cache, left-padded to the wider of the two."""
        width = max(mask.shape[1], new_mask.shape[1])

        def pad(t: torch.Tensor, n: int, dim_from_end: int) -> torch.Tensor:
            if n == 0:
                return t
            spec = [0, 0] * (dim_from_end - 1) + [n, 0]
            return F.pad(t, spec)

        a, b = width - mask.shape[1], width - new_mask.shape[1]
        cache.layers = [
            buffered(
                torch.cat([pad(old.keys, a, 2), pad(new.keys, b, 2)]),
                torch.cat([pad(old.values, a, 2), pad(new.values, b, 2)]),
                self.max_toks,
            )
            for old, new in zip(cache.layers, new_cache.layers, strict=True)
        ]
        return cache, torch.cat([pad(mask, a, 1), pad(new_mask, b, 1)])

    def _select(self, cache, mask, keep: list[int]):
        """The cache of the rows kept, without columns that are padding in every one of them."""
        if not keep:
            return None, None
        index = torch.tensor(keep, device=self.device)
        mask = mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        mask = mask[:, start:]
        cache.layers = [
            buffered(
                layer.keys.index_select(0, index)[:, :, start:],
                layer.values.index_select(0, index)[:, :, start:],
                self.max_toks,
            )
            for layer in cache.layers
        ]
        return cache, mask

    def _step(self, running: list[_Row], cache, mask):
        """One pass for every running row: its last token, and its prompt-lookup draft if it has
        one; the rows that finished, and the new mask."""
        drafts = self._cut_drafts(running, [self._draft(r) for r in running])
        width = 1 + max(map(len, drafts))
        ids = torch.zeros((len(running), width), dtype=torch.long)
        fed = torch.zeros((len(running), width), dtype=mask.dtype)
        for i, (r, d) in enumerate(zip(running, drafts, strict=True)):
            ids[i, : 1 + len(d)] = torch.tensor([r.generated[-1], *d], dtype=torch.long)
            fed[i, : 1 + len(d)] = 1
        positions = torch.tensor([r.position for r in running], dtype=torch.long)[:, None] + torch.arange(width)
        mask = torch.cat([mask, fed.to(mask.device)], dim=1)
        logits, _ = self._forward(ids.to(self.device), mask, positions.to(self.device), cache, keep=width)
        self.steps += 1
        chosen = logits.argmax(dim=-1).tolist()
        finished = []
        for i, (r, d, greedy) in enumerate(zip(running, drafts, chosen, strict=True)):
            kept = 0
            while kept < len(d) and greedy[kept] == d[kept]:
                kept += 1
            if d:
                self.drafted += len(d)
                self.kept += kept
                r.tested += min(kept + 1, len(d))
                r.matched += kept
            appended = 0
            for t in greedy[: kept + 1]:  # the kept draft, then the model's token after it
                r.generated.append(t)
                r.position += 1
                appended += 1
                if self._done(r):
                    finished.append(r)
                    break
            if appended < width:  # the cache holds the fed tokens up to the last one kept
                mask[i, mask.shape[1] - width + appended :] = 0
        return finished, mask

    def _cut_drafts(self, running: list[_Row], drafts: list[list[int]]) -> list[list[int]]:
        """The drafts cut to the length W that gains most: a row's j-th draft token is kept
        with probability p^j (p: the share of its draft tokens that matched so far, with a
        prior of one in two), a kept token saves a row's share of a pass (pass cost / rows + 1
        tokens), and each of the rows x W tokens fed costs one."""
        longest = max(map(len, drafts))
        if not longest:
            return drafts
        rows = len(running)
        saved = self.tuning.pass_cost / rows + 1
        odds = [(r.matched + 1) / (r.tested + 2) for r in running]
        best, best_gain, gain = 0, 0.0, 0.0
        for w in range(1, longest + 1):
            gain += saved * sum(p**w for p, d in zip(odds, drafts, strict=True) if len(d) >= w) - rows
            if gain > best_gain:
                best, best_gain = w, gain
        return [d[:best] for d in drafts]

    def _draft(self, row: _Row) -> list[int]:
        """The tokens that followed the last earlier occurrence of the row's last n-gram."""
        if not self.lookup:
            return []
        text = row.tokens + row.generated if row.generated else row.tokens
        for i in range(row.indexed, len(text)):  # index the n-grams ending before the last token
            for n in NGRAMS:
                if i - n >= 0:
                    row.seen[tuple(text[i - n : i])] = i
        row.indexed = len(text)
        room = self.max_toks - len(row.generated) - 1
        if room <= 0:
            return []
        for n in NGRAMS:
            if len(text) > n:
                at = row.seen.get(tuple(text[-n:]))
                if at is not None and at < len(text):
                    return text[at : at + min(self.lookup, room)]
        return []

    def _done(self, row: _Row) -> bool:
        if len(row.generated) >= self.max_toks or row.generated[-1] in self.eos:
            return True
        return any(stop in self.tok.decode(row.generated[-n:]) for stop, n in self.lookback.items())
