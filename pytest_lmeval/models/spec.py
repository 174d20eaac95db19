"""`--model BACKEND:NAME` and `--model-args k=v,...` as a value, and which of its arguments
are secrets (never printed, never written to a report or a cache key)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import LmevalError


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.name}"


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
