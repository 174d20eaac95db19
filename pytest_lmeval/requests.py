"""The request currency between tasks, engine and backends.

A request is a value: two documents asking the same thing share one computation, and the same
request from another run can be looked up in a cache. `kind` names the backend method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("loglikelihood", "loglikelihood_rolling", "generate_until")


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


# What a backend returns for each kind: loglikelihood -> (logprob, is_greedy).
Response = Any
