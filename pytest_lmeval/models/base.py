"""The backend interface, `--model` / `--model-args` parsing, and the backend registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import LmevalError, close_matches
from ..requests import Request

Progress = Callable[[int], None]

# backend name -> "module:Class", imported only when chosen so `dummy:` never imports torch.
BACKENDS = {
    "hf": "pytest_lmeval.models.hf:HFBackend",
    "dummy": "pytest_lmeval.models.dummy:DummyBackend",
}


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


def load_backend(spec: ModelSpec, *, device: str | None, batch_size: int | str) -> Backend:
    module_name, _, class_name = BACKENDS[spec.backend].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec, device=device, batch_size=batch_size)
