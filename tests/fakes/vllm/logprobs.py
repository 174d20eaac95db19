"""vllm.logprobs: the log-probability of one token, with its rank in the distribution."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None
