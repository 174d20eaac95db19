"""Prompt fields rendered the way lm-eval renders them, in a sandboxed Jinja2 environment.

A field is either a column name, a Jinja2 template, a literal list, or a Python callable
(a `!function` helper). The rules for turning the rendered text into ints and lists are
lm-eval's, so the same YAML gives the same prompt.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, string, count=count)


_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


class TemplateError(Exception):
    """A field could not be rendered for a document; the caller adds task and document."""


@functools.lru_cache(maxsize=4096)
def _compile(template: str) -> jinja2.Template:
    return _ENV.from_string(template)


def render(template: str, doc: Mapping[str, Any]) -> str:
    try:
        return _compile(template).render(**doc)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{exc.message} in the document") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"unsafe template: {exc}") from None
    except Exception as exc:  # errors inside expressions, e.g. list.index on a missing value
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        raise TemplateError(f"expected a Python literal (a list), got {text[:80]!r}") from None


def doc_to_text(spec: Any, doc: Mapping[str, Any], *, has_choices: bool) -> Any:
    if isinstance(spec, int) or spec is None:
        return spec
    if callable(spec):
        return spec(doc)
    if spec in doc:
        return doc[spec]
    text = render(spec, doc)
    return ast.literal_eval(text) if text.isdigit() and has_choices else text


def doc_to_target(spec: Any, doc: Mapping[str, Any], *, has_choices: bool) -> Any:
    if isinstance(spec, (int, list)):
        return spec
    if callable(spec):
        return spec(doc)
    if spec in doc:
        return doc[spec]
    text = render(spec, doc)
    if text.isdigit() and has_choices:
        return ast.literal_eval(text)
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError):
            return text
    return text


def doc_to_choice(spec: Any, doc: Mapping[str, Any]) -> list[str]:
    if isinstance(spec, list):
        return spec
    if isinstance(spec, dict):
        return list(spec.values())
    if callable(spec):
        return spec(doc)
    if spec in doc:
        return doc[spec]
    choices = _literal(render(spec, doc))
    if not isinstance(choices, (list, tuple)):
        raise TemplateError(f"doc_to_choice must give a list, got {type(choices).__name__}")
    return list(choices)


def resolve_field(spec: Any, doc: Mapping[str, Any]) -> str:
    """lm-eval's rule for description and gen_prefix: a column, else a template."""
    if not spec:
        return ""
    if callable(spec):
        return spec(doc)
    return doc[spec] if spec in doc else render(spec, doc)
