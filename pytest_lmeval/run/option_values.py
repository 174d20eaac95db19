"""Option values as typed from text: the command line, the ini file, a run file and
`--task-args` all spell numbers, booleans, limits and k=v lists the same way, so they share
one set of parsers (and one wording of the errors)."""

from __future__ import annotations

import ast
import json
from typing import Any

from ..core.errors import LmevalError


def parse_int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LmevalError(f"--{name} {value!r}: expected a whole number") from None


def cli_value(text: str) -> Any:
    """lm-eval's handle_cli_value_string: booleans, numbers, then Python literals."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isnumeric():
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_gen_kwargs(text: str | None) -> dict[str, Any] | None:
    """`--gen-kwargs`: a JSON object, or k=v pairs (`until=["\\n\\n","Q:"]` keeps its commas),
    typed as lm-eval types them."""
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for item in split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LmevalError(f"--gen-kwargs: {item!r} is not key=value (e.g. temperature=0.8,do_sample=true)")
        out[key.strip()] = cli_value(value.strip())
    if "temperature" in out:
        out["temperature"] = float(out["temperature"])
    return out


def parse_flag(name: str, value: Any) -> bool:
    return parse_bool(value, f"--{name} {value!r}")


def parse_float(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LmevalError(f"--{name} {value!r}: expected a number") from None


def parse_limit(value: Any, prefix: str) -> int | float:
    """A limit: N documents (a whole number) or a fraction of each task; errors start `prefix`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LmevalError(f"{prefix}: expected N documents or a fraction") from None
    if number <= 0:
        raise LmevalError(f"{prefix}: must be positive")
    if number >= 1:
        if number != int(number):
            raise LmevalError(f"{prefix}: a count must be a whole number")
        return int(number)
    return number


def parse_bool(value: Any, prefix: str) -> bool:
    """true/false, yes/no, on/off, 1/0; errors start `prefix`."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise LmevalError(f"{prefix}: expected true or false")


def kv_value(text: str) -> Any:
    text = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets and quotes (lm-eval's CLI rule, for commas)."""
    parts, buf, depth, quote = [], [], 0, None
    for ch in text:
        if quote is not None:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth = max(depth - 1, 0)
        elif ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p for p in parts if p.strip()]
