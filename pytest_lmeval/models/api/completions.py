"""`local-completions` and `openai-completions`: a /v1/completions endpoint (vLLM, SGLang, TGI,
llama.cpp server, OpenAI), answering all three request kinds.

Log-likelihoods are lm-eval's local-completions ones: context and continuation are tokenized
here (lm-eval's pair rules, `add_bos_token` default False), the token ids are sent as the prompt
with `echo=true, logprobs=1, max_tokens=1, temperature=0`, and the continuation's score is the
sum of the echoed `token_logprobs[ctxlen:-1]` (the last entry is the one generated token). A
continuation token is greedy when its log-probability equals the best of its `top_logprobs`.
Sequences longer than `max_length - 1` tokens lose tokens on the left, as in lm-eval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.requests import Request
from ..backend import Progress, RequestFailed
from ..generation import cut_at_stops, normalize_gen_kwargs
from ..tokens import LmTokenizer, Tokens, rolling_windows, truncate_pair
from .common import ApiBackend
from .http import Call, UnusableResponse

_NEEDS = (
    "scoring needs a /v1/completions server that echoes the prompt's log-probabilities (echo=true with "
    "logprobs, as vLLM, SGLang and llama.cpp's server do), or the hf or vllm backend"
)


def _choices(data: Any, n: int) -> list[dict[str, Any]]:
    choices = sorted(data["choices"], key=lambda c: c["index"])
    if len(choices) != n:
        raise ValueError(f"{len(choices)} choices for {n} prompts")
    return choices


class CompletionsBackend(ApiBackend):
    endpoint = "completions"

    def _tokenizer_for(self, kind: str, requests: Sequence[Request]) -> LmTokenizer:
        if self.tokenizer is None:
            raise self.cannot(
                kind,
                requests,
                "scoring needs a tokenizer to find where the continuation starts; pass tokenizer=<HF tokenizer> "
                "(and not tokenizer_backend=none)",
            )
        return self.tokenizer

    def _prompts(self, token_lists: list[Tokens]) -> Any:
        if self.settings.tokenized_requests:
            return token_lists
        assert self.tokenizer is not None
        texts = [self.tokenizer.decode(t) for t in token_lists]
        return texts[0] if len(texts) == 1 else texts

    # -- log-likelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        tok = self._tokenizer_for("loglikelihood", requests)
        items: list[tuple[Tokens, int]] = []
        self.truncated = {}
        for req in requests:
            ctx, cont = tok.encode_pair(*req.args)
            if len(ctx) + len(cont) > self.max_len:  # the input keeps its last max_length tokens
                self.truncated[req] = (len(ctx) + len(cont), self.max_len)
            if not cont:
                raise RequestFailed(req, f"continuation {req.args[1]!r} encodes to no tokens")
            tokens, ctxlen = truncate_pair(ctx, cont, self.max_len)
            if ctxlen < 1:
                limit = self.settings.max_length
                raise RequestFailed(req, f"continuation of {len(cont)} tokens leaves no context in max_length {limit}")
            items.append((tokens, ctxlen))
        return self._score(requests, items, list(range(len(requests))), lambda answers: answers[0], progress)

    def loglikelihood_rolling(self, requests: Sequence[Request], progress: Progress) -> list[float]:
        tok = self._tokenizer_for("loglikelihood_rolling", requests)
        items: list[tuple[Tokens, int]] = []
        owners: list[int] = []
        for i, req in enumerate(requests):
            for ctx, pred in rolling_windows(tok.encode(req.args[0]), tok.prefix_token_id, self.max_len - 1):
                items.append(truncate_pair(ctx, pred, self.max_len))
                owners.append(i)
        return self._score(requests, items, owners, lambda answers: float(sum(a[0] for a in answers)), progress)

    def _score(
        self,
        requests: Sequence[Request],
        items: list[tuple[Tokens, int]],
        owners: list[int],
        combine: Any,
        progress: Progress,
    ) -> list[Any]:
        # Longest first, as lm-eval: slow calls start early, and a too-long prompt fails at once.
        order = sorted(range(len(items)), key=lambda j: (-len(items[j][0]), items[j][0]))
        size = self.settings.batch_size
        groups = [order[k : k + size] for k in range(0, len(order), size)]
        calls = [self._score_call([items[j] for j in group]) for group in groups]
        return self.dispatch(requests, owners, calls, groups, combine, progress)

    def _score_call(self, batch: list[tuple[Tokens, int]]) -> Call:
        tokenized = self.settings.tokenized_requests
        payload = {
            "model": self.settings.model,
            "prompt": self._prompts([tokens for tokens, _ in batch]),
            "temperature": 0,
            "max_tokens": 1,
            "logprobs": 1,
            "seed": self.settings.seed,
            "echo": True,
        }

        def parse(data: Any) -> list[tuple[float, bool]]:
            out = []
            for choice, (tokens, ctxlen) in zip(_choices(data, len(batch)), batch, strict=True):
                # A server may send `"logprobs": null` or leave the field out (transformers serve)
                logprobs = choice.get("logprobs")
                if not isinstance(logprobs, dict) or logprobs.get("token_logprobs") is None:
                    raise UnusableResponse(f"returns no log-probabilities (its response has no logprobs); {_NEEDS}")
                token_lps = logprobs["token_logprobs"]
                if tokenized and len(token_lps) != len(tokens) + 1:
                    raise UnusableResponse(
                        f"returns {len(token_lps)} token log-probabilities for a {len(tokens)}-token prompt and 1 "
                        f"generated token: it does not echo the prompt's; {_NEEDS}"
                    )
                if not isinstance(logprobs.get("top_logprobs"), list):
                    raise UnusableResponse(f"returns no top_logprobs (needed to tell greedy continuations); {_NEEDS}")
                conts = token_lps[ctxlen:-1]
                tops = logprobs["top_logprobs"][ctxlen:-1]
                greedy = all(lp >= max(top.values()) for lp, top in zip(conts, tops, strict=True))
                out.append((float(sum(conts)), greedy))
            return out

        return Call(payload, parse)

    # -- generation ---------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Request], progress: Progress) -> list[str]:
        self.truncated = {}
        groups: dict[Any, list[int]] = {}
        for i in sorted(range(len(requests)), key=lambda i: -len(requests[i].args[0])):
            groups.setdefault(requests[i].args[1], []).append(i)
        calls: list[Call] = []
        call_items: list[list[int]] = []
        size = self.settings.batch_size
        for members in groups.values():
            for k in range(0, len(members), size):
                batch = members[k : k + size]
                calls.append(self._generate_call([requests[i] for i in batch]))
                call_items.append(batch)
        return self.dispatch(requests, list(range(len(requests))), calls, call_items, lambda a: a[0], progress)

    def _generate_call(self, batch: list[Request]) -> Call:
        args = normalize_gen_kwargs(batch[0].gen_kwargs, self.settings.max_gen_toks)
        if self.settings.tokenized_requests:
            assert self.tokenizer is not None
            room = self.max_len - args.max_gen_toks
            if room <= 0:
                limit = self.settings.max_length
                raise RequestFailed(batch[0], f"max_gen_toks {args.max_gen_toks} leaves no room in max_length {limit}")
            encoded = [self.tokenizer.encode(r.args[0]) for r in batch]
            for r, tokens in zip(batch, encoded, strict=True):
                if len(tokens) > room:  # the prompt keeps its last tokens
                    self.truncated[r] = (len(tokens), room)
            prompt: Any = [tokens[-room:] for tokens in encoded]
        else:
            texts = [r.args[0] for r in batch]
            prompt = texts[0] if len(texts) == 1 else texts
        payload = {
            "model": self.settings.model,
            "prompt": prompt,
            "max_tokens": args.max_gen_toks,
            "temperature": args.temperature,
            **self.stop_field(args.until),
            "seed": self.settings.seed if args.seed is None else args.seed,
            **args.extra,
        }
        cut = args.until + ([self.eos] if self.eos else [])

        def parse(data: Any) -> list[str]:
            return [cut_at_stops(c["text"] or "", cut) for c in _choices(data, len(batch))]

        return Call(payload, parse)


class LocalCompletions(CompletionsBackend):
    """Any OpenAI-compatible /v1/completions server; base_url is required."""


class OpenAICompletions(CompletionsBackend):
    """OpenAI's own completions API: key required, tiktoken tokenizer unless one is named."""

    default_url = "https://api.openai.com/v1/completions"
    default_tokenizer_backend = "tiktoken"
    key_required = True
    max_stops = 4
