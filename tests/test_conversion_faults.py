"""A GGUF model's one-time conversion (models/hf/gguf_cache.py) never leaves a half-written
copy behind: a stop signal mid-conversion removes it, and one a killed process left is
removed by the next conversion. Real signals to a child process doing a real conversion."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

CHILD = """
import sys, time
from pathlib import Path
from types import SimpleNamespace

from transformers import AutoModelForCausalLM, AutoTokenizer

from pytest_lmeval.models.hf.gguf_cache import save_conversion
from pytest_lmeval.run.signals import StopSignals

model_dir, target, ready = map(Path, sys.argv[1:4])
model = AutoModelForCausalLM.from_pretrained(model_dir)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
real_save = tokenizer.save_pretrained


def slow_save(folder, *args, **kwargs):  # the weights are written; the tokenizer takes a while
    out = real_save(folder, *args, **kwargs)
    ready.write_text("writing")
    time.sleep(60)
    return out


tokenizer.save_pretrained = slow_save
signals = StopSignals()
signals.install()
save_conversion(model, tokenizer, SimpleNamespace(save_to=target, tokenizer_too=True))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _convert(tmp_path: Path, tiny: Path) -> tuple[subprocess.Popen, Path, Path]:
    target, ready = tmp_path / "models" / "converted", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny), str(target), str(ready)])
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the conversion never started writing"
    return proc, target, ready


def _leftovers(target: Path) -> list[Path]:
    return [p for p in target.parent.iterdir() if p.name.startswith(target.name)]


def test_a_stop_signal_mid_conversion_leaves_no_half_written_model(tmp_path: Path, tiny: Path) -> None:
    proc, target, _ = _convert(tmp_path, tiny)
    assert _leftovers(target), "the conversion writes into a temporary folder"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert _leftovers(target) == []


def test_a_conversion_a_killed_process_abandoned_is_removed_by_the_next(tmp_path: Path, tiny: Path) -> None:
    proc, target, ready = _convert(tmp_path, tiny)
    proc.send_signal(signal.SIGKILL)  # nothing runs in the process: its folder stays behind
    proc.wait(timeout=60)
    abandoned = _leftovers(target)
    assert len(abandoned) == 1 and ".tmp-" in abandoned[0].name
    ready.unlink()
    proc, target, _ = _convert(tmp_path, tiny)
    assert not abandoned[0].exists()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
