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


def parse_gen_kwargs(text: str | None, where: str = "--gen-kwargs") -> dict[str, Any] | None:
    """`--gen-kwargs`: a JSON object, or k=v pairs (`until=["\\n\\n","Q:"]` keeps its commas),
    typed as lm-eval types them, the known keys checked (check_gen_kwargs)."""
    if not text or not text.strip():
        return None
    return check_gen_kwargs(parse_json_object(where, text, "temperature=0.8,do_sample=true"), where)


def parse_json_object(where: str, text: str, example: str = "max_seq_lengths=[4096]") -> dict[str, Any]:
    """An option's object: JSON (`{"k": 1}`), or lm-eval's k=v pairs split at top-level commas."""
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
            raise LmevalError(f"{where}: {item!r} is not key=value (e.g. {example}), nor a JSON object")
        out[key.strip()] = cli_value(value.strip())
    return out


def _count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    number = int(str(value).strip()) if isinstance(value, str) else int(value)
    if number < 1:
        raise ValueError
    return value if isinstance(value, int) else number


def _whole(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _number(value: Any, low: float, high: float = float("inf"), above: bool = False) -> Any:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if not low <= number <= high or (above and number == low):
        raise ValueError
    return value if isinstance(value, (int, float)) else number


def _stops(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        return value
    raise ValueError


# Generation arguments whose type is known: key -> (convert, what it expects). Unknown keys pass
# through to the backend untouched.
_GEN_KWARGS: dict[str, tuple[Any, str]] = {
    **dict.fromkeys(
        ("max_gen_toks", "max_new_tokens", "max_length", "max_tokens", "max_completion_tokens"),
        (_count, "a positive whole number"),
    ),
    "temperature": (lambda v: float(_number(v, 0.0)), "a number, 0 or more"),
    "top_p": (lambda v: _number(v, 0.0, 1.0, above=True), "a number above 0, at most 1"),
    "top_k": (_whole, "a whole number"),
    "seed": (_whole, "a whole number"),
    "do_sample": (lambda v: parse_bool(v, ""), "true or false"),
    "until": (_stops, "a string or a list of strings"),
}


def check_gen_kwargs(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Generation arguments with the known keys' types checked (`temperature` always a float,
    as lm-eval makes it): a bad one is an LmevalError naming `where` and the key."""
    out = dict(values)
    for key, value in values.items():
        if key not in _GEN_KWARGS or value is None:
            continue
        convert, expected = _GEN_KWARGS[key]
        try:
            out[key] = convert(value)
        except (TypeError, ValueError, LmevalError):
            raise LmevalError(f"{where} {key}={value!r}: expected {expected}") from None
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


def parse_batch_size(value: Any) -> int | str:
    """`--batch-size N|auto`; lm-eval's `auto:N` (re-detect the size N times) is our `auto`,
    which adapts all along."""
    text = str(value).strip()
    if text == "auto" or (text.startswith("auto:") and text[5:].strip().isdigit()):
        return "auto"
    size = parse_int("batch-size", text)
    if size < 1:
        raise LmevalError(f"--batch-size {value!r}: must be at least 1, or 'auto'")
    return size


def parse_seed(value: Any) -> int:
    """`--seed`: the few-shot sampler's seed; lm-eval's four seeds `random,numpy,torch,fewshot`
    give it their fourth (`None` there: the default, 1234); a single number sets them all."""
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) == 1:
        return parse_int("seed", parts[0])
    if len(parts) != 4:
        raise LmevalError(f"--seed {value!r}: one number, or lm-eval's four (random,numpy,torch,fewshot)")
    for part in parts[:3]:
        if part != "None":
            parse_int("seed", part)
    return 1234 if parts[3] == "None" else parse_int("seed", parts[3])


# lm-eval's options whose names pytest or a plugin of pytest owns: (flag, what to pass here)
COLLISIONS = {
    "--verbosity": "lm-eval's --verbosity is pytest's here (a number); for the log level use --log-level LEVEL",
    "--metadata": "lm-eval's --metadata is pytest-metadata's here (--metadata KEY VALUE); pass what tasks read "
    "from their metadata with --task-metadata JSON",
}


def collision_hints(args: list[str]) -> list[str]:
    """One line per lm-eval option given whose name another option owns here."""
    out = []
    for i, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        if flag not in COLLISIONS:
            continue
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        lmeval_like = value.lstrip().startswith("{") if flag == "--metadata" else not value.strip().isdigit()
        if lmeval_like and COLLISIONS[flag] not in out:
            out.append(COLLISIONS[flag])
    return out


def parse_samples(text: str, path: Any = None) -> dict[str, tuple[int, ...]]:
    """lm-eval's --samples: a JSON object {task: [doc ids]}, given inline or as the JSON file
    at `path` (the text then names that file)."""
    where = f"--samples {text!r}"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LmevalError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LmevalError(f"{where}: not JSON ({exc.msg}, line {exc.lineno}), nor a JSON file") from None
    if not isinstance(data, dict) or not data:
        raise LmevalError(f'{where}: expected a JSON object of tasks and document ids, {{"task": [0, 5]}}')
    out: dict[str, tuple[int, ...]] = {}
    for task, ids in data.items():
        if not isinstance(ids, list) or not ids or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
            raise LmevalError(f"{where}: {task!r} needs a list of document ids (whole numbers), got {ids!r}")
        if any(i < 0 for i in ids):
            raise LmevalError(f"{where}: {task!r} has a negative document id")
        out[str(task)] = tuple(sorted(set(ids)))
    return out
