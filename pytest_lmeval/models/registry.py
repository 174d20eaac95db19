"""The backends by name: which class answers `--model BACKEND:NAME`, imported only when
chosen (so `dummy:` never imports torch), and the checks that run before anything loads."""

from __future__ import annotations

import importlib
import os
import re
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


def parse_model(value: str, option: str = "--model") -> tuple[str, str]:
    """BACKEND:NAME as (backend, name); `option` names the option in errors (--judge-model)."""
    backend, sep, name = value.partition(":")
    if not sep or not name:
        raise LmevalError(
            f"{option} {value!r}: expected BACKEND:NAME, e.g. hf:EleutherAI/pythia-160m "
            f"(backends: {', '.join(BACKENDS)})"
        )
    if backend not in BACKENDS:
        raise LmevalError(
            f"{option} {value!r}: unknown backend {backend!r}{close_matches(backend, BACKENDS)} "
            f"(backends: {', '.join(BACKENDS)})"
        )
    if backend == "vllm":  # an optional extra: say how to get it before anything is collected
        require_vllm(value if option == "--model" else f"{value} ({option})")
    return backend, name


# --device: a device type, and for the accelerators an index (cuda:1)
DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")
_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")
_DEVICE_HINT = "use cpu, cuda, cuda:N or mps"


def check_device_name(device: str | None) -> None:
    """`--device` spelt as a device (cpu, cuda, cuda:N, mps), checked without importing torch."""
    if device is None:
        return
    if not _DEVICE.match(str(device)):
        kind = str(device).strip().partition(":")[0]
        raise LmevalError(f"--device {device!r}: unknown device{close_matches(kind, DEVICE_KINDS)}; {_DEVICE_HINT}")


def check_device(device: str | None) -> None:
    """`--device` against what this process has: cuda (cuda:N) needs a CUDA GPU (at least N+1),
    mps Apple's Metal backend. Imports torch only for a device other than the CPU; call it
    after a worker is pinned to its GPUs (CUDA reads CUDA_VISIBLE_DEVICES when first asked)."""
    check_device_name(device)
    if device is None or str(device).startswith("cpu"):
        return
    import torch

    kind, _, index = str(device).partition(":")
    n = int(index) if index else 0
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is present"
            raise LmevalError(f"--device {device!r}: {why} (torch {torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if n >= count:
            pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
            seen = f" (CUDA_VISIBLE_DEVICES={pinned})" if pinned is not None else ""
            raise LmevalError(
                f"--device {device!r}: this process sees {count} CUDA GPU{'s' if count != 1 else ''}{seen}: "
                f"use cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}"
            )
    elif kind == "mps":
        if not torch.backends.mps.is_available() or n > 0:
            raise LmevalError(f"--device {device!r}: Apple's MPS backend is not available here; use --device cpu")
    elif kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        count = xpu.device_count() if xpu is not None and xpu.is_available() else 0
        if n >= count:
            raise LmevalError(f"--device {device!r}: this process sees {count} Intel XPU(s); use --device cpu")


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
