"""`--model BACKEND:NAME` and `--model-args k=v,...` as a value, and which of its arguments
are secrets (never printed, never written to a report or a cache key).

A URL in an argument's value (`base_url`, several space-separated) is shown with its secrets
redacted: the password of its userinfo (`http://user:<redacted>@host`, a user alone, which may be
a token, as `<redacted>@host`) and the values of query parameters whose names say key, token,
secret, password or signature (`?api-key=<redacted>`)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import LmevalError


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    # the name as the person typed it, where the plugin resolved it to another (hf:smollm2-135m
    # to the folder it fetched): what every human-facing place shows; `name` is what loads
    typed: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.shown_name}"

    @property
    def shown_name(self) -> str:
        return self.typed if self.typed is not None else self.name


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


# A URL anywhere in a text: a scheme, "://", and everything up to a space, a comma, a quote, a
# parenthesis, a brace or "|" (which separates servers in base_url).
_URL = re.compile(r"(?<![\w+.-])[a-z][a-z0-9+.-]*://[^\s,|'\"<>(){}]+", re.I)
# Query (or fragment) parameters whose values are secrets: Azure's `api-key`, `key`, `token`,
# `access_token`, `sig`/`signature` (signed URLs), `password`, `client_secret`, `auth`, ...
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|signature|^sig$|auth|credential|session", re.I)


def _redact_params(query: str) -> str:
    out = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        secret = sep and _SECRET_PARAM.search(urllib.parse.unquote_plus(name))
        out.append(f"{name}={REDACTED}" if secret else pair)
    return "&".join(out)


def redact_url(url: str) -> str:
    """`url` with its secrets replaced: the userinfo's password (a lone user name, which may
    be a token, whole) and secret-named query and fragment parameters; the rest as written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            end = min(end, at)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    tail = path + (question + _redact_params(query) if question else "")
    tail += hash_ + _redact_params(fragment) if hash_ else ""
    return f"{scheme}://{netloc}{tail}"


def redact_urls(text: str) -> str:
    """Every URL in `text` (a model arg's value, an error message) with its secrets redacted."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        end = len(url.rstrip(".:;!?"))  # prose around a URL ("from URL: ...") keeps its punctuation
        return redact_url(url[:end]) + url[end:]

    return _URL.sub(one, text) if "://" in text else text


def _redact_value(key: str, value: Any) -> Any:
    if is_secret(key, value):
        return REDACTED
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_urls(v) if isinstance(v, str) else v for v in value)
    return value


def redact_args(args: dict[str, Any]) -> dict[str, Any]:
    """Model args as they may be written to reports and terminals: secret values replaced, and
    the secrets of any URL in a value."""
    return {k: _redact_value(k, v) for k, v in args.items()}


def redact_args_text(text: str | None) -> str | None:
    """The raw `--model-args` string with secret values (and URLs' secrets) replaced, the rest
    untouched."""
    if not text:
        return text
    parts = []
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        parts.append(f"{key}={REDACTED}" if sep and is_secret(key.strip(), raw.strip()) else redact_urls(part))
    return ",".join(parts)
