"""The request currency between tasks, engine and backends.

A request is a value: two documents asking the same thing share one computation, and the same
request from another run can be looked up in a cache. `kind` names the backend method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("loglikelihood", "loglikelihood_rolling", "generate_until", "classify")


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    args: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown request kind {self.kind!r}")

    @classmethod
    def loglikelihood(cls, context: str, continuation: str) -> Request:
        return cls("loglikelihood", (context, continuation))

    @classmethod
    def loglikelihood_rolling(cls, text: str) -> Request:
        return cls("loglikelihood_rolling", (text,))

    @classmethod
    def generate_until(cls, context: str, gen_kwargs: dict[str, Any]) -> Request:
        """gen_kwargs (until, max_gen_toks, do_sample, temperature, ...) are frozen into a
        sorted tuple so the request stays hashable; `gen_kwargs_of` gives the dict back."""
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in gen_kwargs.items()))
        return cls("generate_until", (context, frozen))

    @classmethod
    def classify(cls, text: str) -> Request:
        """A text for a classifier (features/toxicity.py), not for the model evaluated."""
        return cls("classify", (text,))

    @property
    def gen_kwargs(self) -> dict[str, Any]:
        assert self.kind == "generate_until"
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.args[1]}


# What a backend returns for each kind: loglikelihood -> (logprob, is_greedy);
# loglikelihood_rolling -> logprob (float); generate_until -> generated text (str);
# classify -> {label: probability} (a classifier backend's, models/hf/classifier.py).
Response = Any


@dataclass(frozen=True)
class DocRequests:
    """What one document asks of the model, and what scoring needs besides the answers.

    For a generative task with `repeats: K`, `requests` holds the K requests of its one
    instance (identical when decoding is greedy, so they are computed once)."""

    task: str
    doc_id: int
    requests: tuple[Request, ...]
    choices: tuple[str, ...]
    target: Any
    gold: Any = None  # multiple-input tasks: the index of the right context
    prompt: str = ""  # the (first) context, for samples' prompt_hash
    unconditional: int = 0  # trailing ("", choice) requests for acc_mutual_info
