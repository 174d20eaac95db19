"""`local-chat-completions` and `openai-chat-completions`: a /v1/chat/completions endpoint, for
generation only.

A chat API returns log-probabilities of the tokens it generates, never of a continuation the
caller supplies, so multiple-choice and perplexity tasks cannot be scored through it: such a
request stops the run with that reason instead of producing numbers. Each context is sent as one
user message; the server applies its own chat template. With a tokenizer (`tokenizer=...`),
contexts longer than `max_length - max_gen_toks` tokens are cut on the left first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.requests import Request
from ..backend import Progress
from ..generation import cut_at_stops, normalize_gen_kwargs
from .common import ApiBackend
from .http import Call
from .settings import ApiSettings

_NO_SCORES = (
    "chat-completion APIs return log-probabilities only for tokens they generate, not for a given "
    "continuation, so multiple-choice and perplexity tasks cannot be scored through them; use "
    "local-completions (a /v1/completions endpoint that supports echo=true with logprobs) or the hf/vllm backends"
)


class ChatBackend(ApiBackend):
    endpoint = "chat/completions"
    default_tokenizer_backend = None
    max_tokens_key = "max_tokens"
    max_stops = 4  # OpenAI's chat API takes at most 4 stop sequences

    @classmethod
    def probe_payload(cls, s: ApiSettings) -> dict[str, Any]:
        return {"model": s.model, "messages": [{"role": "user", "content": "Hello"}], cls.max_tokens_key: 1}

    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        raise self.cannot("loglikelihood", requests, _NO_SCORES)

    def loglikelihood_rolling(self, requests: Sequence[Request], progress: Progress) -> list[float]:
        raise self.cannot("loglikelihood_rolling", requests, _NO_SCORES)

    def generate_until(self, requests: Sequence[Request], progress: Progress) -> list[str]:
        calls = [self._call(req) for req in requests]
        items = [[i] for i in range(len(requests))]
        return self.dispatch(requests, list(range(len(requests))), calls, items, lambda a: a[0], progress)

    def _context(self, context: str, max_gen_toks: int) -> str:
        if self.tokenizer is None:
            return context
        room = max(1, self.max_len - max_gen_toks)
        tokens = self.tokenizer.encode(context)
        return context if len(tokens) <= room else self.tokenizer.decode(tokens[-room:])

    def _call(self, req: Request) -> Call:
        args = normalize_gen_kwargs(req.gen_kwargs, self.settings.max_gen_toks)
        payload = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": self._context(req.args[0], args.max_gen_toks)}],
            self.max_tokens_key: args.max_gen_toks,
            "temperature": args.temperature,
            **self.stop_field(args.until),
            "seed": self.settings.seed if args.seed is None else args.seed,
            **args.extra,
        }
        cut = args.until + ([self.eos] if self.eos else [])

        def parse(data: Any) -> list[str]:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            content = choices[0]["message"]["content"]
            return [cut_at_stops(content or "", cut)]

        return Call(payload, parse)


class LocalChatCompletions(ChatBackend):
    """Any OpenAI-compatible /v1/chat/completions server; base_url is required."""


class OpenAIChatCompletions(ChatBackend):
    """OpenAI's own chat API: key required; it takes `max_completion_tokens`."""

    default_url = "https://api.openai.com/v1/chat/completions"
    key_required = True
    max_tokens_key = "max_completion_tokens"
