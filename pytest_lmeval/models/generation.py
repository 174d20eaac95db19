"""Generation arguments as lm-eval normalizes them, for backends that hand them to an engine or
a server (vLLM, OpenAI-compatible APIs) rather than to transformers' `generate`.

One deliberate difference from lm-eval: greedy decoding is explicit. lm-eval leaves
`temperature` unset when a task gives neither it nor `do_sample`, and vLLM's SamplingParams then
samples at temperature 1; here such a request decodes greedily, as the `hf` backend does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_MAX_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")


@dataclass
class GenArgs:
    until: list[str]
    max_gen_toks: int
    temperature: float
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else the task passed (top_p...)


def normalize_gen_kwargs(gen_kwargs: dict[str, Any], default_max_gen_toks: int) -> GenArgs:
    """lm-eval's normalize_gen_kwargs: stop strings as a list, the first max-token alias by
    priority (max_gen_toks > max_new_tokens > max_tokens > max_completion_tokens), and
    temperature 0 unless `do_sample` (or a positive temperature without `do_sample`) asks for
    sampling."""
    kwargs = copy.deepcopy(gen_kwargs)
    until = kwargs.pop("until", None) or []
    until = [until] if isinstance(until, str) else list(until)
    given = [kwargs.pop(alias, None) for alias in _MAX_ALIASES]
    max_toks = next((int(v) for v in given if v is not None), default_max_gen_toks)
    temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
    do_sample = kwargs.pop("do_sample", None)
    if do_sample is False:
        temperature = 0.0
    seed = kwargs.pop("seed", None)
    return GenArgs(until, max_toks, temperature, None if seed is None else int(seed), kwargs)


def with_eos(until: list[str], eos: str | None) -> list[str]:
    """lm-eval's handle_stop_sequences: the EOS text is always a stop sequence."""
    return until + [eos] if eos and eos not in until else list(until)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """Text before the first occurrence of each stop sequence in turn (lm-eval's post-processing;
    a no-op where the engine already stopped there)."""
    for stop in stops:
        if stop:
            text = text.split(stop)[0]
    return text
