"""`vllm:NAME`: vLLM's offline engine (backend.py) and its replicas (engine.py).

Only the check for the optional extra lives here, so that `--model vllm:...` can say how to
install vLLM before anything is collected without importing the backend."""

from __future__ import annotations

import importlib.util

from ...core.errors import LmevalError

INSTALL_HINT = "pip install 'pytest-lmeval[vllm]' (vLLM needs a CUDA GPU; see https://docs.vllm.ai)"


def require_vllm(model: str) -> None:
    if importlib.util.find_spec("vllm") is None:
        raise LmevalError(f"--model {model}: vLLM is not installed: {INSTALL_HINT}")
