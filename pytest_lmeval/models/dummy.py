"""A model with fixed, documented rules, for testing the plugin without torch.

`dummy:NAME` answers every request kind by a rule a test can compute by hand:

- loglikelihood: minus the continuation's length in characters, so it always prefers the
  shortest choice; greedy when the continuation is at most one character long. acc_norm
  divides by the choice's length without the target delimiter: with the usual " " that is
  -1 - 1/len(choice), so the longest choice wins (with no delimiter every choice ties and the
  first wins).
- loglikelihood_rolling: minus the text's length in UTF-8 bytes (one nat per byte), so
  byte_perplexity is e, bits_per_byte is 1/ln 2 and word_perplexity is exp(bytes / words).
- generate_until: it repeats the prompt's last line (the text after its last newline), then
  cuts that at each stop sequence in `until` in turn, as lm-eval cuts generations, and keeps
  at most `max_gen_toks` characters (one character per token). When the arguments ask for
  sampling, the line is first split on "|" and the request's `seed` picks one part
  (parts[seed % len(parts)]): repeats with seeds s, s+1, ... walk through the parts.

`--model-args delay=SECONDS` makes each request take that long (for interrupting a run in
tests); `fail_on=TEXT` raises on a continuation or prompt containing TEXT; `tokenizer=PATH`
gives the model a tokenizer folder whose chat template `--apply-chat-template` uses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..core.requests import Request
from .backend import Progress, answered
from .spec import ModelSpec


def _sampling(kwargs: dict[str, Any]) -> bool:
    if kwargs.get("do_sample") is not None:
        return bool(kwargs["do_sample"])
    return float(kwargs.get("temperature", 0.0) or 0.0) > 0.0


def dummy_generation(context: str, gen_kwargs: dict[str, Any]) -> str:
    """The dummy's generation rule (see the module docstring); tests call it to predict."""
    text = context.rsplit("\n", 1)[-1]
    if _sampling(gen_kwargs):
        parts = text.split("|")
        text = parts[int(gen_kwargs.get("seed", 0)) % len(parts)]
    until = gen_kwargs.get("until") or []
    for stop in [until] if isinstance(until, str) else until:
        if stop:
            text = text.split(stop)[0]
    max_toks = gen_kwargs.get("max_gen_toks")
    return text[: int(max_toks)] if max_toks is not None else text


class DummyBackend:
    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        self.spec = spec
        fail_on = spec.args.get("fail_on")
        self.fail_on = str(fail_on) if fail_on is not None else None
        self.delay = float(spec.args.get("delay", 0.0))

    def _step(self, text: str) -> None:
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError(f"dummy backend told to fail on {self.fail_on!r}")
        if self.delay:
            time.sleep(self.delay)

    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            context, continuation = req.args
            self._step(context + continuation)
            out.append((-float(len(continuation)), len(continuation) <= 1))
            answered(progress, [(req, out[-1])])
            progress(1)
        return out

    def loglikelihood_rolling(self, requests: Sequence[Request], progress: Progress) -> list[float]:
        out = []
        for req in requests:
            self._step(req.args[0])
            out.append(-float(len(req.args[0].encode("utf-8"))))
            answered(progress, [(req, out[-1])])
            progress(1)
        return out

    def generate_until(self, requests: Sequence[Request], progress: Progress) -> list[str]:
        out = []
        for req in requests:
            self._step(req.args[0])
            out.append(dummy_generation(req.args[0], req.gen_kwargs))
            answered(progress, [(req, out[-1])])
            progress(1)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "rule": "loglikelihood = -len(continuation); rolling = -utf8 bytes; generation = the prompt's last line"
        }
