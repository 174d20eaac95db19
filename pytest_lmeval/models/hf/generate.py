"""Generation for the HF backend, as lm-eval's HFLM.generate_until does it.

Requests are sorted longest first and batched only with identical generation arguments; the
batch is left-padded with an attention mask; generation stops when every row has produced a
stop sequence (the EOS text is always one), and each text is cut at the first occurrence of each
stop sequence in turn. Greedy unless the arguments ask for sampling; a `seed` in the arguments
seeds torch before each batch, so a sampled run can be repeated.

Greedy requests to a causal LM with a plain KV cache go to decode.Decoder: continuous
batching sized by KV-cache memory, with a task's shared few-shot prefix prefilled once. The
rest (sampling, extra generation arguments, seq2seq, sliding-window or recurrent caches) goes
to transformers' `generate` in batches whose KV cache fits the same memory budget. The budget,
the rows under `auto` and a forward pass's cost are the device's (`backend.tuning`).

Encoder-decoder models (T5): the prompt goes to the encoder, and `generate` returns only the
decoder's sequence (its start token first), so the text is everything after that start token,
and max_gen_toks counts decoder tokens.

Each call leaves `backend.first_token_seconds`: per request, the seconds from the start of the
pass that prefilled its row to its first generated token (efficiency.py's time to first token),
from the decoder's own clock or, for `generate`, from a streamer that notes the first new tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import transformers
from transformers.generation.streamers import BaseStreamer

from ...core.requests import Request
from ..backend import Progress, answered
from ..generation import GenArgs, cut_at_stops, normalize_gen_kwargs, with_eos
from .decode import Decoder
from .kv_cache import kv_bytes_per_token
from .scorer import is_oom

if TYPE_CHECKING:
    from .backend import HFBackend


class _StopSequence(transformers.StoppingCriteria):
    """lm-eval's MultiTokenEOSCriteria, answered per row: a row is done once its recent text
    holds the sequence, and transformers pads it from then on. (lm-eval answers one flag for
    the batch, true only when every row holds this same sequence, so a batch whose rows stop
    on different sequences runs to max_gen_toks; texts are cut at the stops either way.)"""

    def __init__(self, sequence: str, tokenizer: Any, prompt_len: int, batch: int) -> None:
        self.sequence = sequence
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.lookback = len(tokenizer.encode(sequence, add_special_tokens=False)) + 2
        self.done = [False] * batch

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        recent = input_ids[:, self.prompt_len :][:, -self.lookback :]
        texts = self.tokenizer.batch_decode(recent)
        for i, done in enumerate(self.done):
            if not done:
                self.done[i] = self.sequence in texts[i]
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


class _FirstToken(BaseStreamer):
    """Notes when `generate` hands over its first new tokens (its first `put` is the prompt)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.puts = 0
        self.seconds: float | None = None

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.seconds = time.perf_counter() - self.started

    def end(self) -> None:
        pass


def generate_kwargs(args: GenArgs) -> dict[str, Any]:
    """What transformers' `generate` gets: greedy at temperature 0, else sampling."""
    kwargs = dict(args.extra)
    kwargs["do_sample"] = args.temperature > 0.0
    if kwargs["do_sample"]:
        kwargs["temperature"] = args.temperature
    return kwargs


@torch.no_grad()
def generate(backend: HFBackend, requests: Sequence[Request], progress: Progress) -> list[str]:
    tok = backend.tokenizer
    eos_text = tok.decode(tok.eos_token_id, skip_special_tokens=False) if tok.eos_token_id is not None else None
    lengths = {r.args[0]: len(backend.tok_encode(r.args[0])) for r in requests}
    order = sorted(range(len(requests)), key=lambda i: (-lengths[requests[i].args[0]], requests[i].args[0]))
    groups: dict[tuple, list[int]] = {}
    for i in order:
        groups.setdefault(requests[i].args[1], []).append(i)
    out: list[str | None] = [None] * len(requests)
    backend.first_token_seconds = {}
    backend.truncated = {}
    for members in groups.values():
        args = normalize_gen_kwargs(requests[members[0]].gen_kwargs, backend.max_gen_toks)
        until, max_toks, kwargs = with_eos(args.until, eos_text), args.max_gen_toks, generate_kwargs(args)
        max_ctx = backend.max_length - max_toks
        if max_ctx <= 0:
            raise ValueError(f"max_gen_toks {max_toks} leaves no room in max length {backend.max_length}")
        for i in members:  # the prompt keeps its last max_ctx tokens, as lm-eval's HFLM
            if lengths[requests[i].args[0]] > max_ctx:
                backend.truncated[requests[i]] = (lengths[requests[i].args[0]], max_ctx)
        if _decodes_itself(backend, args):
            _decode(backend, requests, members, until, max_toks, max_ctx, out, progress)
            continue
        start = 0
        widths = [min(lengths[requests[i].args[0]], max_ctx) + max_toks for i in members]
        per_row = kv_bytes_per_token(backend.model)
        rows_cap = _max_rows(backend)
        budget = backend.tuning.kv_budget()
        while start < len(members):
            n = min(rows_cap, len(members) - start, max(1, budget // (widths[start] * per_row)))
            batch = members[start : start + n]
            if args.seed is not None:
                torch.manual_seed(args.seed)
            texts, first = _generate_batch(
                backend, [requests[i].args[0] for i in batch], until, max_toks, max_ctx, kwargs
            )
            for i, text in zip(batch, texts, strict=True):
                out[i] = text
                if first is not None:
                    backend.first_token_seconds[requests[i]] = first
            start += n
            answered(progress, [(requests[i], out[i]) for i in batch])
            progress(n)
    return out  # type: ignore[return-value]


def _max_rows(backend: HFBackend) -> int:
    """Rows decoding together: the batch size when it is a number, else the device's."""
    if backend.batch_size != "auto":
        return max(1, int(backend.batch_size))
    return backend.tuning.decode_rows


# A shared prefix costs its rows a prefill pass of their own (they cannot join rows of another
# prefix in one pass) and a join into the running cache: worth it for a few-shot block shared
# by a task's documents (gsm8k_cot: 8 fixed examples, ~800 tokens), not for the first example
# that two documents of a randomly sampled 5-shot happen to share (measured on gsm8k, SmolLM2
# on a CPU: prefilling in three groups took 7.5 s against 6.0 s in one padded batch). A prefix
# that every prompt of the job shares splits nothing, so the scorer's threshold is enough.
GEN_MIN_SAVED = 1024  # tokens of prefill saved, (rows - 1) x prefix

_PROCESSORS_OFF = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": None}


def _decodes_itself(backend: HFBackend, args: GenArgs) -> bool:
    """Our own decoder serves greedy requests without extra `generate` arguments, on causal
    LMs whose cache is plain, when the model's generation config adds no logits processor."""
    if backend.backend != "causal" or args.temperature > 0.0 or args.extra:
        return False
    config = backend.model.generation_config
    if any(getattr(config, k, v) not in (v, None) for k, v in _PROCESSORS_OFF.items()):
        return False
    if getattr(config, "bad_words_ids", None) or getattr(config, "suppress_tokens", None):
        return False
    return backend.scorer._cache_is_plain()


def _decode(backend, requests, members, until, max_toks, max_ctx, out, progress) -> None:
    prompts = [_encode_context(backend, requests[i].args[0])[-max_ctx:] for i in members]
    rows, budget = _max_rows(backend), backend.tuning.kv_budget()
    reported = [0]

    def advance(n: int) -> None:  # a retry finishes rows again: never count past the total
        n = min(n, len(members) - reported[0])
        reported[0] += n
        if n:
            progress(n)

    def finished(index: int, tokens: list[int]) -> None:  # each row's text as its row ends, for the cache
        text = backend.tokenizer.decode(tokens, skip_special_tokens=True)
        answered(progress, [(requests[members[index]], cut_at_stops(text, until))])

    while True:
        decoder = Decoder(
            backend.model,
            backend.tokenizer,
            until=until,
            max_toks=max_toks,
            max_rows=rows,
            budget_bytes=budget,
            prefix_reuse=backend.scorer.prefix_reuse,
            min_saved=max(GEN_MIN_SAVED, backend.tuning.pass_cost),
            min_saved_whole=backend.tuning.pass_cost,
            lookup=backend.prompt_lookup,
            tuning=backend.tuning,
        )
        try:
            generated = decoder.run(prompts, advance, finished)
            break
        except Exception as exc:
            # Out of memory: the same rows again, half as many at a time (greedy texts do not
            # depend on the batch); a single row that does not fit is the error.
            if not is_oom(exc) or rows <= 1:
                raise
            rows, budget = max(1, min(rows, len(prompts)) // 2), budget // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    backend.scorer.tokens += decoder.tokens
    backend.scorer.forward_tokens += decoder.forward_tokens
    backend.drafts[0] += decoder.drafted
    backend.drafts[1] += decoder.kept
    texts = backend.tokenizer.batch_decode(generated, skip_special_tokens=True)
    for i, text, first in zip(members, texts, decoder.first_token_seconds, strict=True):
        out[i] = cut_at_stops(text, until)
        if first is not None:
            backend.first_token_seconds[requests[i]] = first


def _special(backend: HFBackend, context: str) -> dict[str, Any]:
    """How a context is encoded: no special tokens when it starts with the BOS text already."""
    tok = backend.tokenizer
    if tok.bos_token and context.startswith(tok.bos_token):
        return {"add_special_tokens": False}
    if backend.add_bos_token is not None:
        return {"add_special_tokens": bool(backend.add_bos_token)}
    return {}


def _encode_context(backend: HFBackend, context: str) -> list[int]:
    """A context's tokens, as the padded batch encoding gives them without its padding."""
    return backend.tokenizer(context, **_special(backend, context))["input_ids"]


def _generate_batch(
    backend: HFBackend,
    contexts: list[str],
    until: list[str],
    max_toks: int,
    max_ctx: int,
    kwargs: dict[str, Any],
) -> tuple[list[str], float | None]:
    """The batch's texts, and the seconds to its first new tokens (all rows prefilled at once)."""
    tok = backend.tokenizer
    special = _special(backend, contexts[0])
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = tok(contexts, padding="longest", return_tensors="pt", **special)
    finally:
        tok.padding_side = old_side
    ids = enc["input_ids"][:, -max_ctx:].to(backend.device)
    mask = enc["attention_mask"][:, -max_ctx:].to(backend.device)
    # A decoder-only model continues the prompt; an encoder-decoder one starts a new sequence
    # from its decoder start token, whatever the prompt's length.
    seq2seq = backend.backend == "seq2seq"
    start = 1 if seq2seq else ids.shape[1]
    stopping = transformers.StoppingCriteriaList([_StopSequence(s, tok, start, ids.shape[0]) for s in until])
    timer = _FirstToken()
    generated = backend.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_toks,
        stopping_criteria=stopping,
        pad_token_id=tok.pad_token_id,
        use_cache=True,
        streamer=timer,
        **kwargs,
    )
    new_tokens = generated[:, start:]
    real = int(mask.sum()) + int((new_tokens != tok.pad_token_id).sum())
    backend.scorer.tokens += real
    backend.scorer.forward_tokens += ids.numel() + new_tokens.numel()
    texts = tok.batch_decode(new_tokens.tolist(), skip_special_tokens=True)
    return [cut_at_stops(t, until) for t in texts], timer.seconds
