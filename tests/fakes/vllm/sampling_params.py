"""vllm.SamplingParams: keyword-only, typed fields; an unknown keyword is a TypeError, as in
vLLM's msgspec Struct. `__struct_fields__` lists the fields, as msgspec does."""

from __future__ import annotations

from typing import Any

_FIELDS: dict[str, Any] = {
    "n": 1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "seed": None,
    "stop": None,
    "stop_token_ids": None,
    "ignore_eos": False,
    "max_tokens": 16,
    "min_tokens": 0,
    "logprobs": None,
    "prompt_logprobs": None,
    "logprob_token_ids": None,
    "detokenize": True,
    "skip_special_tokens": True,
    "spaces_between_special_tokens": True,
    "include_stop_str_in_output": False,
}


class SamplingParams:
    __struct_fields__ = tuple(_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in self.__struct_fields__:
                raise TypeError(f"Unexpected keyword argument '{key}'")
        for key in self.__struct_fields__:
            setattr(self, key, kwargs.get(key, _FIELDS[key]))
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop and not self.detokenize:
            raise ValueError("stop strings are only supported when detokenize is True.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")

    def __repr__(self) -> str:
        return "SamplingParams(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__struct_fields__) + ")"
