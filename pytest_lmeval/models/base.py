"""The backend interface, `--model` / `--model-args` parsing, and the backend registry."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import LmevalError, close_matches
from ..core.requests import Request

Progress = Callable[[int], None]

# backend name -> "module:Class", imported only when chosen so `dummy:` never imports torch.
BACKENDS = {
    "hf": "pytest_lmeval.models.hf.backend:HFBackend",
    "vllm": "pytest_lmeval.models.vllm.backend:VLLMBackend",
    "local-completions": "pytest_lmeval.models.api.completions:LocalCompletions",
    "openai-completions": "pytest_lmeval.models.api.completions:OpenAICompletions",
    "local-chat-completions": "pytest_lmeval.models.api.chat:LocalChatCompletions",
    "openai-chat-completions": "pytest_lmeval.models.api.chat:OpenAIChatCompletions",
    "dummy": "pytest_lmeval.models.dummy:DummyBackend",
}


class RequestFailed(Exception):
    """A backend gave up on a request (a server kept failing, or cannot answer this kind).

    The run stops with `reason`, naming the documents that asked for `request`. `completed`
    holds the answers the backend finished before giving up, so the engine caches them and a
    rerun computes only the rest.
    """

    def __init__(self, request: Request, reason: str, completed: Iterable[tuple[Request, Any]] = ()) -> None:
        super().__init__(reason)
        self.request = request
        self.reason = reason
        self.completed = list(completed)


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.name}"


class Backend(Protocol):
    """One method per request kind; each returns one response per request, in order."""

    spec: ModelSpec

    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]: ...

    # Optional: loglikelihood_rolling(requests, progress) -> list[float] and
    # generate_until(requests, progress) -> list[str]; the engine names a missing one.
    # Optional: token_counts() -> {"tokens": ..., "forward_tokens": ...} for the run's figures.

    def info(self) -> dict[str, Any]:
        """Facts about the loaded model for results.json (dtype, device, max length...)."""
        ...


def parse_model(value: str) -> tuple[str, str]:
    backend, sep, name = value.partition(":")
    if not sep or not name:
        raise LmevalError(
            f"--model {value!r}: expected BACKEND:NAME, e.g. hf:EleutherAI/pythia-160m "
            f"(backends: {', '.join(BACKENDS)})"
        )
    if backend not in BACKENDS:
        raise LmevalError(
            f"--model {value!r}: unknown backend {backend!r}{close_matches(backend, BACKENDS)} "
            f"(backends: {', '.join(BACKENDS)})"
        )
    if backend == "vllm":  # an optional extra: say how to get it before anything is collected
        from .vllm.backend import require_vllm

        require_vllm(value)
    return backend, name


def _coerce(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_model_args(value: str | None) -> dict[str, Any]:
    """'k=v,k2=v2' -> dict, with booleans and numbers typed as lm-eval types them."""
    out: dict[str, Any] = {}
    if not value:
        return out
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LmevalError(f"--model-args: {part!r} is not key=value (expected e.g. dtype=float32,revision=main)")
        if key in out:
            raise LmevalError(f"--model-args: {key!r} is given twice")
        out[key] = _coerce(raw.strip())
    return out


# Model-arg names whose values are secrets; `*_env` names a variable and is kept.
_SECRET_NAME = re.compile(r"^(.*_)?token$|api_?key|secret|passw|auth|bearer|credential", re.I)
_NOT_SECRET_NAME = re.compile(r"^(pad|bos|eos|unk|sep|cls|mask|prefix)_token$", re.I)
_SECRET_VALUE = re.compile(r"^(sk-|hf_|Bearer\s)\S{6,}")
REDACTED = "<redacted>"


def is_secret(key: str, value: Any) -> bool:
    if key.endswith("_env"):
        return False
    named = bool(_SECRET_NAME.search(key)) and not _NOT_SECRET_NAME.match(key)
    named = named and not isinstance(value, (bool, int, float)) and value is not None
    return named or bool(_SECRET_VALUE.match(str(value)))


def redact_args(args: dict[str, Any]) -> dict[str, Any]:
    """Model args as they may be written to reports and terminals: secret values replaced."""
    return {k: (REDACTED if is_secret(k, v) else v) for k, v in args.items()}


def redact_args_text(text: str | None) -> str | None:
    """The raw `--model-args` string with secret values replaced, the rest untouched."""
    if not text:
        return text
    parts = []
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        parts.append(f"{key}={REDACTED}" if sep and is_secret(key.strip(), raw.strip()) else part)
    return ",".join(parts)


def backend_class(backend: str) -> Any:
    module_name, _, class_name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_backend(spec: ModelSpec, *, device: str | None, batch_size: int | str) -> Backend:
    return backend_class(spec.backend)(spec, device=device, batch_size=batch_size)


API_BACKENDS = ("local-completions", "openai-completions", "local-chat-completions", "openai-chat-completions")


def check_model(spec: ModelSpec, batch_size: int | str) -> None:
    """Bad model input as one LmevalError, before anything loads: a local path that does not
    exist, a hub name the hub (or, offline, the local cache) does not have, a `gguf_file` not in
    the folder, a `peft` or `tokenizer` that does not exist, a dtype torch does not know, and
    the API backends' arguments."""
    if spec.backend in ("hf", "vllm"):
        from .hub import check_hf_args, model_source

        source = model_source(spec.name, spec.args, f"--model {spec.label}")
        if spec.backend == "hf":
            check_hf_args(spec.label, spec.args, source)
    elif spec.backend in API_BACKENDS:
        backend_class(spec.backend).settings_for(spec, batch_size)
