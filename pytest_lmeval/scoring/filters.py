"""Answer extraction for generative tasks: lm-eval's named filter pipelines (`filter_list`).

A task's `filter_list` names pipelines; every metric is computed once per pipeline and reported
as `metric,pipeline` (`exact_match,strict-match`). A task without one gets lm-eval's implicit
pipeline `none` = [take_first]. Each step follows lm-eval's Filter protocol, so the helper
classes task folders ship (`function: !function utils.MyFilter`, often subclasses of lm-eval's
own RegexFilter) plug in unchanged: a step is a class built with the YAML's keyword arguments,
whose `apply(resps, docs)` maps one list of responses per request to its filtered value.

Pipelines run per document here (lm-eval runs them per task); every built-in filter looks at
one document at a time, so the results are the same.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError

DEFAULT_FILTER = "none"


class Filter:
    """lm-eval's filter protocol: `apply` gets one list of responses per request (all repeats
    of it) and the requests' documents, and returns one filtered value per request."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def apply(self, resps: Iterable[Sequence[Any]], docs: Sequence[dict[str, Any]]) -> Iterable[Any]:
        return resps


class TakeFirstFilter(Filter):
    def apply(self, resps, docs):
        return [r[0] for r in resps]


class TakeKFilter(Filter):
    def __init__(self, k: int, **kwargs: Any) -> None:
        self.k = k

    def apply(self, resps, docs):
        resps = list(resps)
        if resps and len(resps[0]) < self.k:
            raise ValueError(
                f"take_first_k needs {self.k} responses per document but got {len(resps[0])}: raise the task's repeats"
            )
        return [r[: self.k] for r in resps]


class MajorityVoteFilter(Filter):
    """The most frequent response (the first seen wins a tie, as Counter.most_common)."""

    def apply(self, resps, docs):
        return [[Counter(r).most_common(1)[0][0]] for r in resps]


class LowercaseFilter(Filter):
    def apply(self, resps, docs):
        return [[x.lower() for x in r] for r in resps]


class UppercaseFilter(Filter):
    def apply(self, resps, docs):
        return [[x.upper() for x in r] for r in resps]


class WhitespaceFilter(Filter):
    """lm-eval's remove_whitespace: strips leading and trailing whitespace."""

    def apply(self, resps, docs):
        return [[x.strip() for x in r] for r in resps]


class MapFilter(Filter):
    def __init__(self, mapping_dict: dict | None = None, default_value: Any = None, **kwargs: Any) -> None:
        if mapping_dict is not None and not isinstance(mapping_dict, dict):
            raise TypeError("map filter: mapping_dict must be a mapping")
        self.mapping_dict = mapping_dict or {}
        self.default_value = default_value

    def apply(self, resps, docs):
        return [[self.mapping_dict.get(x, self.default_value) for x in r] for r in resps]


class RegexFilter(Filter):
    """Extract with `re.findall`: take match number `group_select` (negative counts from the
    end); of a match with several groups, the first non-empty one; `fallback` when nothing
    matches."""

    def __init__(
        self,
        regex_pattern: str = r"#### (\-?[0-9\.\,]+)",
        group_select: int = 0,
        fallback: str = "[invalid]",
        **kwargs: Any,
    ) -> None:
        self.regex_pattern = regex_pattern
        self.regex = re.compile(regex_pattern)
        self.group_select = group_select
        self.fallback = fallback

    def _extract(self, resp: Any) -> Any:
        if not isinstance(resp, str):
            resp = ""
        found = self.regex.findall(resp)
        if not found:
            return self.fallback
        match = found[self.group_select]
        if isinstance(match, tuple):
            parts = [m for m in match if m]
            match = parts[0] if parts else self.fallback
        return match.strip()

    def apply(self, resps, docs):
        return [[self._extract(x) for x in r] for r in resps]


@cache
def punctuation_table() -> dict[int, None]:
    """Every Unicode punctuation code point, to delete with str.translate (built once)."""
    return dict.fromkeys(i for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P"))


class MultiChoiceRegexFilter(RegexFilter):
    """lm-eval's multi_choice_regex: the pattern first; else a choice's text found in the answer
    (mapped to its letter "(A)"); else a bare letter after a colon. Needs `doc["choices"]`."""

    def __init__(
        self,
        regex_pattern: str = r"#### (\-?[0-9\.\,]+)",
        group_select: int = 0,
        fallback: str = "[invalid]",
        ignore_case: bool = False,
        ignore_punctuation: bool = False,
        regexes_to_ignore: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(regex_pattern, group_select, fallback)
        self.ignore_case = ignore_case
        self.ignore_punctuation = ignore_punctuation
        self.regexes_to_ignore = regexes_to_ignore

    def _find(self, regex: re.Pattern[str], resp: Any, convert: dict[str, str] | None = None) -> Any:
        if not isinstance(resp, str):
            resp = ""
        found = regex.findall(resp)
        if not found:
            return found
        match = found[self.group_select]
        if isinstance(match, tuple):
            parts = [m for m in match if m]
            if not parts:
                return ""
            match = parts[0]
        match = match.strip()
        if match and convert and match in convert:
            match = convert[match]
        return match

    def _ignores(self, text: str) -> str:
        for pattern in self.regexes_to_ignore or ():
            text = re.sub(pattern, "", text)
        if self.ignore_case:
            text = text.lower()
        if self.ignore_punctuation:
            text = text.translate(punctuation_table())
        return text

    def apply(self, resps, docs):
        out = []
        for r, doc in zip(resps, docs, strict=True):
            alternatives, to_letter, letters = [], {}, []
            for i, choice in enumerate(doc["choices"]):
                letter = chr(ord("A") + i)
                text = self._ignores(choice.strip())
                alternatives.append(re.escape(text))
                to_letter[text] = f"({letter})"
                letters.append(letter)
            by_text = re.compile("|".join(sorted(alternatives, key=len, reverse=True)))
            by_letter = re.compile(rf":[\s]*({'|'.join(letters)})")
            letter_map = {x: f"({x})" for x in letters}
            filtered = []
            for resp in r:
                match = self._find(self.regex, resp)
                if not match:
                    match = self._find(by_text, self._ignores(resp), to_letter)
                    if not match:
                        match = self._find(by_letter, resp, letter_map)
                filtered.append(match or self.fallback)
            out.append(filtered)
        return out


class CustomFilter(Filter):
    """`function: custom` with `filter_fn: !function helpers.fn`: fn(resps, docs) does it all."""

    def __init__(self, filter_fn: Callable[[Any, Any], Any], **kwargs: Any) -> None:
        self.filter_fn = filter_fn

    def apply(self, resps, docs):
        return self.filter_fn(resps, docs)


class RemoveUntilFilter(Filter):
    """Drop everything up to and including the last `text` (a reasoning model's `</think>`),
    so only the final answer is scored; answers without it are kept whole. EvalScope's
    `remove_until` filter."""

    def __init__(self, text: str = "</think>", **kwargs: Any) -> None:
        self.text = text

    def _cut(self, resp: Any) -> Any:
        if not isinstance(resp, str) or self.text not in resp:
            return resp
        return resp.rsplit(self.text, 1)[1]

    def apply(self, resps, docs):
        return [[self._cut(x) for x in r] for r in resps]


class ExtractFilter(Filter):
    """The first match of `pattern` (its first group, when it has one); answers without a
    match are kept whole. EvalScope's `extract` filter."""

    def __init__(self, pattern: str, **kwargs: Any) -> None:
        self.regex = re.compile(pattern)

    def _extract(self, resp: Any) -> Any:
        if not isinstance(resp, str):
            return resp
        match = self.regex.search(resp)
        if match is None:
            return resp
        return match.group(1) if self.regex.groups else match.group(0)

    def apply(self, resps, docs):
        return [[self._extract(x) for x in r] for r in resps]


class StripFilter(Filter):
    """Leading and trailing `chars` removed (whitespace when empty)."""

    def __init__(self, chars: str = "", **kwargs: Any) -> None:
        self.chars = chars or None

    def apply(self, resps, docs):
        return [[x.strip(self.chars) if isinstance(x, str) else x for x in r] for r in resps]


FILTERS: dict[str, type[Filter]] = {
    "take_first": TakeFirstFilter,
    "take_first_k": TakeKFilter,
    "majority_vote": MajorityVoteFilter,
    "lowercase": LowercaseFilter,
    "uppercase": UppercaseFilter,
    "remove_whitespace": WhitespaceFilter,
    "map": MapFilter,
    "regex": RegexFilter,
    "multi_choice_regex": MultiChoiceRegexFilter,
    "custom": CustomFilter,
    "remove_until": RemoveUntilFilter,
    "extract": ExtractFilter,
    "strip": StripFilter,
}
# The keyword argument each of the answer filters a run sets per task (task_settings.py) takes.
SETTING_FILTERS = {"remove_until": "text", "extract": "pattern", "strip": "chars"}


@dataclass(frozen=True)
class FilterStep:
    name: str  # the registry name, or the helper's dotted name
    factory: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return self.factory(**self.kwargs)


@dataclass(frozen=True)
class FilterPipeline:
    """One named entry of `filter_list`: its steps run in order."""

    name: str
    steps: tuple[FilterStep, ...]

    def apply(self, resps: list[list[Any]], docs: list[dict[str, Any]]) -> list[Any]:
        """One filtered value per request, from each request's list of responses."""
        out: Iterable[Any] = resps
        for step in self.steps:
            out = step.build().apply(out, docs)
        return list(out)

    def describe(self) -> list[dict[str, Any]]:
        return [{"function": s.name, **{k: v for k, v in s.kwargs.items() if not callable(v)}} for s in self.steps]


DEFAULT_PIPELINE = FilterPipeline(DEFAULT_FILTER, (FilterStep("take_first", TakeFirstFilter),))


def with_answer_filters(pipelines: tuple[FilterPipeline, ...], filters: Sequence[tuple[str, str]]) -> tuple:
    """Every pipeline with the run's answer filters (`(kind, argument)`, e.g. `("remove_until",
    "</think>")`) run first, on the raw answers, before the task's own extraction."""
    steps = tuple(FilterStep(kind, FILTERS[kind], {SETTING_FILTERS[kind]: arg}) for kind, arg in filters)
    return tuple(FilterPipeline(p.name, steps + p.steps) for p in pipelines)


def build_pipelines(filter_list: Any, source: Path, task: str) -> tuple[FilterPipeline, ...]:
    """Check a task's `filter_list` and turn it into pipelines; errors name task and step."""
    if filter_list is None:
        return (DEFAULT_PIPELINE,)
    where = f"{source}: task {task!r}: filter_list"
    if not isinstance(filter_list, list) or not filter_list:
        raise LmevalError(f"{where} must be a list of {{name, filter}} entries")
    pipelines: list[FilterPipeline] = []
    for entry in filter_list:
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("filter"), list):
            raise LmevalError(f"{where}: each entry needs a 'name' and a 'filter' list of steps, got {entry!r}")
        name = str(entry["name"])
        if any(p.name == name for p in pipelines):
            raise LmevalError(f"{where}: two filters are named {name!r}")
        steps = []
        for raw in entry["filter"]:
            if not isinstance(raw, dict) or "function" not in raw:
                raise LmevalError(f"{where} {name!r}: each step needs a 'function', got {raw!r}")
            function = raw["function"]
            kwargs = {k: v for k, v in raw.items() if k != "function"}
            if isinstance(function, str):
                if function not in FILTERS:
                    raise LmevalError(
                        f"{where} {name!r}: filter function {function!r} is not supported by pytest-lmeval "
                        f"(supported: {', '.join(FILTERS)}; or name a helper class with !function)"
                    )
                steps.append(FilterStep(function, FILTERS[function], kwargs))
            elif callable(function):
                steps.append(FilterStep(repr(function), function, kwargs))
            else:
                raise LmevalError(f"{where} {name!r}: function must be a filter name or !function, got {function!r}")
        pipelines.append(FilterPipeline(name, tuple(steps)))
    return tuple(pipelines)
