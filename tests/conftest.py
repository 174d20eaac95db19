"""Fixtures shared by the plugin's tests.

Heavy libraries are imported once, before the first test that uses `pytester`: that fixture
restores `sys.modules` when its test ends, dropping every module first imported during the test
(in its in-process runs or its body), and some libraries cannot be imported twice in one
process (lm-eval registers its model classes at import and refuses a second registration;
pyarrow's extension types crash the interpreter at garbage collection). Imported up front, they
survive every pytester test.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import pytest
from tiny_model import build_tiny_model

PRELOAD = (
    "torch",
    "transformers",
    "pyarrow",
    "datasets",
    "lm_eval",
    "lm_eval.api.metrics",
    "lm_eval.api.registry",
    "lm_eval.tasks",
    "lm_eval.models.huggingface",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not any("pytester" in getattr(item, "fixturenames", ()) for item in items):
        return
    for name in PRELOAD:
        # lm-eval is the reference, not a dependency: its tests skip without it
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a real BPE tokenizer (tests/tiny_model.py), built once."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")
