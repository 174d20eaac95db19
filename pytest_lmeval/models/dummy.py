"""A model with a fixed, documented rule, for testing the plugin without torch.

`dummy:NAME` scores a continuation at minus its length in characters, so it always prefers the
shortest choice, and calls a continuation greedy when it is at most one character long. With
acc_norm every choice scores -1 per character, so the first choice wins. `--model-args
delay=SECONDS` makes each request take that long (for interrupting a run in tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..requests import Request
from .base import ModelSpec, Progress


class DummyBackend:
    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        self.spec = spec
        fail_on = spec.args.get("fail_on")
        self.fail_on = str(fail_on) if fail_on is not None else None
        self.delay = float(spec.args.get("delay", 0.0))

    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            _context, continuation = req.args
            if self.fail_on is not None and self.fail_on in continuation:
                raise RuntimeError(f"dummy backend told to fail on {self.fail_on!r}")
            if self.delay:
                time.sleep(self.delay)
            out.append((-float(len(continuation)), len(continuation) <= 1))
            progress(1)
        return out

    def info(self) -> dict[str, Any]:
        return {"rule": "logprob = -len(continuation)"}
