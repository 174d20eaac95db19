"""What the OpenAI-compatible backends share: settings, key, tokenizer, and the bookkeeping that
maps HTTP calls back to requests (one call may carry several prompts, one request may need
several calls), so progress counts finished requests and a failure hands back every request
that did finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...core.requests import Request
from ..backend import Progress, RequestFailed, answered
from ..spec import ModelSpec, redact_url
from ..tokens import LmTokenizer, TiktokenAdapter, load_hf_tokenizer
from .http import ApiClient, Call, CallsFailed, RetryPolicy
from .settings import ApiSettings, auth_headers, parse_settings

# What a server states about the model behind an answer: (`model`, `system_fingerprint`), or None
# where a response says neither. The response cache keys what it stores by it (engine/cache.py).
Identity = tuple[str | None, str | None]
MIXED = ("<answers of one request came from servers stating different models>", None)


def identity_of(data: Any) -> Identity | None:
    if not isinstance(data, dict):
        return None
    model, fingerprint = data.get("model"), data.get("system_fingerprint")
    if not model and not fingerprint:
        return None
    return (str(model) if model else None, str(fingerprint) if fingerprint else None)


@dataclass(frozen=True)
class Probe:
    """What each server of the pool states when asked for one token (`error`: no answer)."""

    identities: dict[str, Identity | None]
    error: str | None = None


class ApiBackend:
    endpoint = "completions"
    default_url: str | None = None
    default_tokenizer_backend: str | None = "huggingface"
    key_required = False
    max_stops: int | None = None  # OpenAI's own API takes at most 4 stop sequences

    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        self.spec = spec
        # The identity each answered request's server stated, until the cache takes it.
        self._stated: dict[Request, Identity | None] = {}
        self.truncated: dict[Request, tuple[int, int]] = {}  # the last call's inputs cut to max_length
        self.settings: ApiSettings = self.settings_for(spec, batch_size)
        s = self.settings
        headers, key = auth_headers(s)
        self.client = ApiClient(
            s.urls,
            headers=headers,
            num_concurrent=s.num_concurrent,
            timeout=s.timeout,
            policy=RetryPolicy(s.max_retries, s.backoff, s.max_backoff),
            secrets=[key] if key else [],
            verify_certificate=s.verify_certificate,
        )
        # lm-eval keeps one position free for the token the server generates after the prompt.
        self.max_len = s.max_length - 1
        self.tokenizer = self._load_tokenizer()
        self.eos = s.eos_string or (self.tokenizer.eos_text if self.tokenizer else None)

    @classmethod
    def settings_for(cls, spec: ModelSpec, batch_size: int | str) -> ApiSettings:
        """The typed model args, or an LmevalError naming the bad one (nothing is sent)."""
        return parse_settings(
            spec,
            endpoint=cls.endpoint,
            default_url=cls.default_url,
            default_tokenizer_backend=cls.default_tokenizer_backend,
            key_required=cls.key_required,
            cli_batch_size=batch_size,
        )

    @classmethod
    def probe(cls, spec: ModelSpec, batch_size: int | str) -> Probe:
        """Ask each server for one token and note the model identity it states: the response
        cache looks up answers under that identity, so a server now serving other weights under
        the same name gets fresh answers."""
        s = cls.settings_for(spec, batch_size)
        headers, key = auth_headers(s)
        # The requests' own retries and timeout: a server still loading its model at the start of
        # a run is waited for as long as a request would be, not given up on (the run uncached).
        policy = RetryPolicy(s.max_retries, s.backoff, s.max_backoff)
        found: dict[str, Identity | None] = {}
        for url in s.urls:
            client = ApiClient([url], headers=headers, num_concurrent=1, timeout=s.timeout, policy=policy,
                               secrets=[key] if key else [], verify_certificate=s.verify_certificate)  # fmt: skip
            try:
                answers = client.run([Call(cls.probe_payload(s), lambda data: [identity_of(data)])], lambda i, a: None)
            except CallsFailed as exc:
                return Probe(found, exc.reason)
            found[redact_url(url)] = answers[0][0]  # keyed by the URL as shown (notes print it)
        return Probe(found)

    @classmethod
    def probe_payload(cls, s: ApiSettings) -> dict[str, Any]:
        return {"model": s.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}

    def _load_tokenizer(self) -> LmTokenizer | None:
        s = self.settings
        if s.tokenizer_backend is None:
            return None
        if s.tokenizer_backend == "tiktoken":
            raw: Any = TiktokenAdapter(s.model)
        else:
            raw = load_hf_tokenizer(str(s.tokenizer), **s.tokenizer_kwargs)
        return LmTokenizer(raw, add_special_tokens=s.add_bos_token, prefix_token_id=s.prefix_token_id)

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "base_url": [redact_url(url) for url in s.urls],
            "served_model": s.model,
            "tokenizer": s.tokenizer,
            "tokenizer_backend": s.tokenizer_backend,
            "tokenized_requests": s.tokenized_requests,
            "max_length": s.max_length,
            "batch_size": s.batch_size,
            "num_concurrent": s.num_concurrent,
            "max_retries": s.max_retries,
            "timeout": s.timeout,
            "api_key_env": s.api_key_env,
        }

    def take_stated(self, request: Request) -> Identity | None | str:
        """The identity the server stated for this request's answer ("unknown" if no server
        answered it); the response cache stores the answer under it."""
        return self._stated.pop(request, "unknown")

    def stops(self, until: list[str]) -> list[str]:
        stops = until + [self.eos] if self.eos and self.eos not in until else list(until)
        stops = [stop for stop in stops if stop]
        return stops[: self.max_stops] if self.max_stops else stops

    def stop_field(self, until: list[str]) -> dict[str, Any]:
        """The request's `stop`, left out when there is none: OpenAI's API and transformers serve
        answer `"stop": []` (and an empty stop string) with HTTP 400."""
        stops = self.stops(until)
        return {"stop": stops} if stops else {}

    def dispatch(
        self,
        requests: Sequence[Request],
        owners: Sequence[int],
        calls: Sequence[Call],
        call_items: Sequence[Sequence[int]],
        combine: Callable[[list[Any]], Any],
        progress: Progress,
    ) -> list[Any]:
        """Run `calls`; call i answers items `call_items[i]` (its parse returns one answer per
        item), item j belongs to request `owners[j]`, and a request's answer is `combine` of its
        items' answers in item order."""
        left = [0] * len(requests)
        for owner in owners:
            left[owner] += 1
        item_answers: list[Any] = [None] * len(owners)
        empty = sum(1 for n in left if n == 0)
        if empty:
            progress(empty)

        def on_done(i: int, answers: list[Any]) -> None:
            if len(answers) != len(call_items[i]):
                raise ValueError(f"{len(answers)} answers for {len(call_items[i])} prompts")
            finished = []
            for j, answer in zip(call_items[i], answers, strict=True):
                item_answers[j] = answer
                left[owners[j]] -= 1
                if left[owners[j]] == 0:
                    finished.append(owners[j])
            note_identities(finished)  # before the engine stores them under the identity stated
            answered(progress, [(requests[r], answer_of(r)) for r in finished])
            progress(len(finished))

        def answer_of(r: int) -> Any:
            return combine([item_answers[j] for j in by_owner[r]])

        by_owner: list[list[int]] = [[] for _ in requests]
        for j, owner in enumerate(owners):
            by_owner[owner].append(j)
        item_identity: list[Identity | None] = [None] * len(owners)

        def watched(i: int, call: Call) -> Call:  # notes the model identity each response states
            def parse(data: Any) -> Any:
                answers = call.parse(data)
                for j in call_items[i]:
                    item_identity[j] = identity_of(data)
                return answers

            return Call(call.payload, parse)

        noted: set[int] = set()

        def note_identities(done: Iterable[int] | None = None) -> None:
            for r in range(len(requests)) if done is None else done:
                if left[r] == 0 and r not in noted:
                    noted.add(r)
                    stated = {item_identity[j] for j in by_owner[r]}
                    if stated:  # (a request of no calls, e.g. an empty document, depends on no server)
                        self._stated[requests[r]] = stated.pop() if len(stated) == 1 else MIXED

        try:
            self.client.run([watched(i, c) for i, c in enumerate(calls)], on_done)
        except CallsFailed as exc:
            note_identities()
            failed = requests[owners[call_items[exc.index][0]]]
            done = [(requests[r], answer_of(r)) for r in range(len(requests)) if left[r] == 0]
            raise RequestFailed(failed, f"{self.spec.backend} server error: {exc.reason}", done) from None
        note_identities()
        return [answer_of(r) for r in range(len(requests))]

    def cannot(self, kind: str, requests: Sequence[Request], why: str) -> RequestFailed:
        return RequestFailed(requests[0], f"{self.spec.backend} cannot answer {kind} requests: {why}")
