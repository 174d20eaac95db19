"""An OpenAI-compatible HTTP server for tests: a local transformers model behind aiohttp.web on
127.0.0.1, with faults injected on demand.

It answers /v1/completions (text or token-id prompts, batched; `echo` + `logprobs` give the
prompt's log-probabilities as vLLM computes them: None for the first token, then each token's
log-probability given the ones before, with the top-k alternatives plus the token itself) and
/v1/chat/completions (the tokenizer's chat template if it has one, else the message text).
Decoding is greedy, in float32 on the CPU, one prompt at a time.

Faults (`server.faults`): `queue` holds faults for the next requests, one each, in order:
"429" (with Retry-After), "500", "hang" (answers after `hang_seconds`, past the client's
timeout), "drop" (closes the connection without answering), "malformed" (a 200 with truncated
JSON). `fail_marker`: every request whose prompt contains it gets `fail_status`, always.
`die_after`: the server goes down once it has answered that many requests: it stops listening
(new connections are refused) and drops every request on a connection still open, until
`come_back()` listens on the same port again.

It is as strict as real servers where they are strict: `"stop": []` or an empty stop string is
a 400, as OpenAI's API and `transformers serve` answer it. `gives_logprobs = False` makes it a
server without log-probabilities (transformers serve): `echo` and `logprobs` are ignored and
the `logprobs` field is left out of its completions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from aiohttp import web

from pytest_lmeval.models.hf.kv_cache import cache_argument, returned_cache


class ModelService:
    """The model and tokenizer, and the two computations the endpoints need."""

    def __init__(self, folder: Path | str, gguf_file: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs).eval()
        self.lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def _top(self, logprobs: torch.Tensor, k: int, actual: int) -> dict[str, float]:
        ids = logprobs.topk(max(k, 1)).indices.tolist()[:k] + [actual]
        return {self.tokenizer.decode([t]): float(logprobs[t]) for t in ids}

    @torch.no_grad()
    def complete(self, tokens: list[int], max_tokens: int, logprobs: int | None, echo: bool, stop: list[str]) -> dict:
        with self.lock:
            out = self.model(torch.tensor([tokens]), use_cache=True)
            lps = F.log_softmax(out.logits[0].float(), dim=-1)
            tok_lps: list[float | None] = [None] + [float(lps[i - 1, tokens[i]]) for i in range(1, len(tokens))]
            tops: list[dict | None] = [None] + [
                self._top(lps[i - 1], logprobs or 0, tokens[i]) for i in range(1, len(tokens))
            ]
            generated, gen_lps, gen_tops, finish = self._greedy(out, lps[-1], max_tokens, logprobs or 0, stop)
        text, finish = self._cut(generated, stop, finish)
        choice: dict[str, Any] = {"text": (self.tokenizer.decode(tokens) if echo else "") + text}
        if logprobs is not None:
            all_tokens = (tokens if echo else []) + generated
            choice["logprobs"] = {
                "tokens": [self.tokenizer.decode([t]) for t in all_tokens],
                "token_logprobs": (tok_lps if echo else []) + gen_lps,
                "top_logprobs": (tops if echo else []) + gen_tops,
                "text_offset": [],
            }
        else:
            choice["logprobs"] = None
        choice["finish_reason"] = finish
        return choice

    def _greedy(self, out: Any, next_lp: torch.Tensor, max_tokens: int, k: int, stop: list[str]) -> tuple:
        generated: list[int] = []
        gen_lps: list[float] = []
        gen_tops: list[dict] = []
        past = returned_cache(out)
        eos = self.tokenizer.eos_token_id
        for _ in range(max_tokens):
            t = int(next_lp.argmax())
            generated.append(t)
            gen_lps.append(float(next_lp[t]))
            gen_tops.append(self._top(next_lp, k, t))
            if t == eos:
                return generated, gen_lps, gen_tops, "stop"
            if any(s and s in self.tokenizer.decode(generated, skip_special_tokens=True) for s in stop):
                return generated, gen_lps, gen_tops, "stop"
            out = self.model(torch.tensor([[t]]), use_cache=True, **{cache_argument(self.model): past})
            past = returned_cache(out)
            next_lp = F.log_softmax(out.logits[0, -1].float(), dim=-1)
        return generated, gen_lps, gen_tops, "length"

    def _cut(self, generated: list[int], stop: list[str], finish: str) -> tuple[str, str]:
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        for s in stop:
            if s and s in text:
                text, finish = text.split(s)[0], "stop"
        return text, finish

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self.encode("".join(m["content"] for m in messages))


@dataclass
class Faults:
    queue: list[str] = field(default_factory=list)
    fail_marker: str | None = None
    fail_status: int = 500
    fail_message: str = "injected permanent failure"
    hang_seconds: float = 3.0
    retry_after: str = "1"
    fired: list[str] = field(default_factory=list)
    die_after: int | None = None  # answered requests, then the server is down


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    prompts: int = 0


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "code": status}}, status=status, headers=headers)


class BadRequest(Exception):
    """A request real servers refuse: answered with HTTP 400 and OpenAI's error body."""


def _stops(body: dict) -> list[str]:
    """The request's stop strings; `[]` or "" is refused, as OpenAI's API refuses it ("Invalid
    'stop': empty array", a 400) and transformers serve too (its stop-string preprocessing fails)."""
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not stop:
        raise BadRequest(
            "Invalid 'stop': empty array. Expected an array with minimum length 1, but got an empty array instead."
        )
    if any(not isinstance(x, str) or not x for x in stop):
        raise BadRequest("Invalid 'stop': each stop sequence must be a non-empty string.")
    return stop


class OpenAIServer:
    """Runs in a background thread with its own event loop; `url` is the /v1 root."""

    def __init__(self, service: ModelService, model_name: str, api_key: str | None = None) -> None:
        self.service = service
        self.model_name = model_name
        self.states_model = True  # False: responses carry no `model` field (a server that states nothing)
        self.system_fingerprint: str | None = None  # sent as `system_fingerprint` when set
        self.gives_logprobs = True  # False: echo/logprobs ignored, no `logprobs` field (transformers serve)
        self.refused: list[str] = []  # the messages of the 400s sent for requests real servers refuse
        self.api_key = api_key
        self.faults = Faults()
        self.stats = Stats()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.down = False

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> OpenAIServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"
        self._runner, self._site, self._port = runner, site, port
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def come_back(self) -> None:
        """Listen again, on the same port, after `die_after` took the server down."""
        assert self._loop is not None and self._runner is not None

        async def listen() -> None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port)
            await self._site.start()

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        self.faults.die_after = None
        self.down = False

    async def _go_down(self) -> None:
        if not self.down and self._site is not None:
            self.down = True
            await self._site.stop()

    # -- request handling ---------------------------------------------------------------------
    async def _guard(self, request: web.Request) -> web.StreamResponse | None:
        """Auth and the next queued fault; None lets the request through."""
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "missing or wrong API key")
        if not self.faults.queue:
            return None
        fault = self.faults.queue.pop(0)
        self.faults.fired.append(fault)
        if fault == "429":
            return _error(429, "rate limited (injected)", {"Retry-After": self.faults.retry_after})
        if fault == "500":
            return _error(500, "internal error (injected)")
        if fault == "hang":
            await asyncio.sleep(self.faults.hang_seconds)
            return None
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault == "malformed":
            return web.Response(text='{"choices": [{"index": 0, "text": "', content_type="application/json")
        raise ValueError(f"unknown fault {fault!r}")

    async def _run(self, request: web.Request, answer: Any) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            if self.down or (self.faults.die_after is not None and self.stats.answered >= self.faults.die_after):
                await self._go_down()
                assert request.transport is not None
                request.transport.close()  # the connection drops without an answer
                return web.Response(status=503)
            blocked = await self._guard(request)
            if blocked is not None:
                return blocked
            body = await request.json()
            try:
                result = await answer(body)
            except BadRequest as exc:
                self.refused.append(str(exc))
                return _error(400, str(exc))
            if isinstance(result, web.StreamResponse):
                return result
            self.stats.answered += 1
            return web.json_response(result)
        finally:
            self.stats.in_flight -= 1

    def _identity(self, body: dict) -> dict[str, str]:
        """The model identity a response states: `model` (the name asked for), `system_fingerprint`."""
        out = {"model": body.get("model", self.model_name)} if self.states_model else {}
        return out | ({"system_fingerprint": self.system_fingerprint} if self.system_fingerprint else {})

    def _marked(self, tokens: list[int]) -> bool:
        marker = self.faults.fail_marker
        return marker is not None and marker in self.service.tokenizer.decode(tokens)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        async def answer(body: dict) -> Any:
            prompts = body["prompt"]
            if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
                prompts = [prompts]
            token_lists = [p if isinstance(p, list) else self.service.encode(p) for p in prompts]
            if any(self._marked(t) for t in token_lists):
                return _error(self.faults.fail_status, self.faults.fail_message)
            stop = _stops(body)
            logprobs = body.get("logprobs") if self.gives_logprobs else None
            echo = bool(body.get("echo", False)) and self.gives_logprobs
            loop = asyncio.get_running_loop()
            choices = []
            for i, tokens in enumerate(token_lists):
                choice = await loop.run_in_executor(
                    None,
                    self.service.complete,
                    tokens,
                    int(body.get("max_tokens", 16)),
                    logprobs,
                    echo,
                    stop,
                )
                if not self.gives_logprobs:
                    del choice["logprobs"]
                choices.append({"index": i, **choice})
            self.stats.prompts += len(token_lists)
            return {
                "id": f"cmpl-{self.stats.requests}",
                "object": "text_completion",
                "created": int(time.time()),
                **self._identity(body),
                "choices": choices,
            }

        return await self._run(request, answer)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        async def answer(body: dict) -> Any:
            tokens = self.service.chat_prompt(body["messages"])
            if self._marked(tokens):
                return _error(self.faults.fail_status, self.faults.fail_message)
            stop = _stops(body)
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            choice = await asyncio.get_running_loop().run_in_executor(
                None, self.service.complete, tokens, max_tokens, None, False, stop
            )
            self.stats.prompts += 1
            message = {"role": "assistant", "content": choice["text"]}
            return {
                "id": f"chatcmpl-{self.stats.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                **self._identity(body),
                "choices": [{"index": 0, "message": message, "finish_reason": choice["finish_reason"]}],
            }

        return await self._run(request, answer)
