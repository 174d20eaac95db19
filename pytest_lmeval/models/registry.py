"""The backends by name: which class answers `--model BACKEND:NAME`, imported only when
chosen (so `dummy:` never imports torch), and the checks that run before anything loads."""

from __future__ import annotations

import importlib
from typing import Any

from ..core.errors import LmevalError, close_matches
from .backend import Backend
from .spec import ModelSpec
from .vllm import require_vllm

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
        require_vllm(value)
    return backend, name


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
