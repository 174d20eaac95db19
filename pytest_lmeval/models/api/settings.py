"""`--model-args` of the API backends: parsed, checked and typed before anything is sent.

Names and defaults are lm-eval's (`base_url`, `tokenizer`, `tokenizer_backend`,
`tokenized_requests`, `num_concurrent`, `max_retries`, `timeout`, `max_length`, `max_gen_toks`,
`add_bos_token`, `seed`, `eos_string`, `verify_certificate`), with three differences:
`max_retries` counts retries after the first attempt (default 5, backing off exponentially from
`backoff` seconds up to `max_backoff`); `base_url` may be the server root (`.../v1`) or the
endpoint itself, and may list several servers separated by spaces or `|` (requests go to the
least busy); the key is never an argument: it is read from the environment variable named by
`api_key_env` (default OPENAI_API_KEY).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import LmevalError, close_matches
from ..spec import ModelSpec, redact_url

_DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "tokenizer": None,
    "tokenizer_backend": None,
    "tokenized_requests": None,
    "num_concurrent": 1,
    "max_retries": 5,
    "backoff": 1.0,
    "max_backoff": 60.0,
    "timeout": 300.0,
    "max_length": 2048,
    "max_gen_toks": 256,
    "add_bos_token": False,
    "prefix_token_id": None,
    "seed": 1234,
    "batch_size": None,
    "eos_string": None,
    "verify_certificate": True,
    "api_key_env": None,
    # how the tokenizer is loaded
    "revision": None,
    "trust_remote_code": False,
    "gguf_file": None,
    "use_fast_tokenizer": True,
}
_ALIASES = {"custom_prefix_token_id": "prefix_token_id", "pretrained": "tokenizer"}
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class ApiSettings:
    label: str
    model: str
    urls: tuple[str, ...]
    tokenizer: str | None
    tokenizer_backend: str | None  # "huggingface", "tiktoken" or None
    tokenized_requests: bool
    num_concurrent: int
    max_retries: int
    backoff: float
    max_backoff: float
    timeout: float
    max_length: int
    max_gen_toks: int
    add_bos_token: bool
    prefix_token_id: int | None
    seed: int
    batch_size: int
    eos_string: str | None
    verify_certificate: bool
    api_key_env: str
    key_required: bool
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)


def _endpoint_urls(label: str, raw: str, endpoint: str) -> tuple[str, ...]:
    """Each server's endpoint URL; a query string (a key some gateways take there) stays at the
    end, after the endpoint's path. Messages show URLs with their secrets redacted."""
    urls = []
    for url in (u for u in re.split(r"[\s|]+", raw.strip()) if u):
        shown = redact_url(url)
        if not re.match(r"^https?://", url):
            raise LmevalError(f"--model {label}: base_url {shown!r} is not an http(s) URL")
        base, question, query = url.partition("?")
        base = base.rstrip("/")
        if endpoint == "completions" and base.endswith("/chat/completions"):
            raise LmevalError(
                f"--model {label}: base_url {shown!r} is a chat endpoint; use local-chat-completions for it, "
                "or give the server's /v1/completions URL"
            )
        if not base.endswith("/completions"):
            base = f"{base}/{endpoint}"
        urls.append(base + question + query)
    if not urls:
        raise LmevalError(f"--model {label}: base_url is empty")
    return tuple(urls)


def parse_settings(
    spec: ModelSpec,
    *,
    endpoint: str,
    default_url: str | None,
    default_tokenizer_backend: str | None,
    key_required: bool,
    cli_batch_size: int | str,
) -> ApiSettings:
    """Typed settings from `spec.args`, or an LmevalError naming the bad argument."""
    label = spec.label
    args: dict[str, Any] = {}
    for key, value in spec.args.items():
        key = _ALIASES.get(key, key)
        if key in ("api_key", "key", "openai_api_key"):
            raise LmevalError(
                f"--model-args {key}=...: API keys are not accepted as arguments (they would reach shell "
                f"history, logs and reports); put the key in an environment variable and pass "
                f"api_key_env=NAME (default {DEFAULT_KEY_ENV})"
            )
        if key not in _DEFAULTS:
            raise LmevalError(
                f"--model-args {key!r} is not an argument of {spec.backend}{close_matches(key, _DEFAULTS)} "
                f"(arguments: {', '.join(sorted(_DEFAULTS))})"
            )
        args[key] = value
    get = {**_DEFAULTS, **args}.__getitem__

    def number(name: str, kind: type, minimum: float) -> Any:
        value = get(name)
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise LmevalError(f"--model-args {name}={value!r}: expected a number") from None
        if value < minimum:
            raise LmevalError(f"--model-args {name}={value!r}: must be at least {minimum:g}")
        return value

    raw_url = get("base_url") or default_url
    if not raw_url:
        raise LmevalError(f"--model {label}: base_url is required, e.g. --model-args base_url=http://localhost:8000/v1")
    backend = get("tokenizer_backend")
    if backend is None:  # a named tokenizer is a transformers one
        backend = "huggingface" if get("tokenizer") is not None else default_tokenizer_backend
    backend = str(backend).lower()
    if backend in ("none", "null", ""):
        backend = None
    elif backend not in ("huggingface", "tiktoken"):
        raise LmevalError(f"--model-args tokenizer_backend={backend!r}: use huggingface, tiktoken or none")
    tokenized = get("tokenized_requests")
    tokenized = backend is not None if tokenized is None else bool(tokenized)
    if tokenized and backend is None:
        raise LmevalError("--model-args tokenized_requests=true needs a tokenizer (tokenizer=... or tokenizer_backend)")
    batch = get("batch_size") if get("batch_size") is not None else cli_batch_size
    batch_size = 1 if batch in (None, "auto") else int(batch)
    prefix = get("prefix_token_id")
    return ApiSettings(
        label=label,
        model=spec.name,
        urls=_endpoint_urls(label, str(raw_url), endpoint),
        tokenizer=get("tokenizer") or (spec.name if backend else None),
        tokenizer_backend=backend,
        tokenized_requests=tokenized,
        num_concurrent=number("num_concurrent", int, 1),
        max_retries=number("max_retries", int, 0),
        backoff=number("backoff", float, 0),
        max_backoff=number("max_backoff", float, 0),
        timeout=number("timeout", float, 0.001),
        max_length=number("max_length", int, 2),
        max_gen_toks=number("max_gen_toks", int, 1),
        add_bos_token=bool(get("add_bos_token")),
        prefix_token_id=None if prefix is None else int(prefix),
        seed=number("seed", int, -(2**63)),
        batch_size=max(1, batch_size),
        eos_string=get("eos_string"),
        verify_certificate=bool(get("verify_certificate")),
        api_key_env=str(get("api_key_env") or DEFAULT_KEY_ENV),
        key_required=key_required or get("api_key_env") is not None,
        tokenizer_kwargs={
            "revision": get("revision"),
            "trust_remote_code": bool(get("trust_remote_code")),
            "gguf_file": get("gguf_file"),
            "use_fast": bool(get("use_fast_tokenizer")),
        },
    )


def auth_headers(settings: ApiSettings) -> tuple[dict[str, str], str | None]:
    """(headers, key): the key from the environment, never from arguments or files."""
    key = os.environ.get(settings.api_key_env) or None
    if key is None and settings.key_required:
        raise LmevalError(
            f"--model {settings.label}: no API key: set the {settings.api_key_env} environment variable"
            + ("" if settings.api_key_env != DEFAULT_KEY_ENV else " (or name another with api_key_env=NAME)")
        )
    return ({"Authorization": f"Bearer {key}"} if key else {}), key
