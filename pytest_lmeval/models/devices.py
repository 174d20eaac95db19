"""Which GPUs this process may use, asked without initialising CUDA (an xdist worker pins
its share through CUDA_VISIBLE_DEVICES before any library touches the driver)."""

from __future__ import annotations

import os
import subprocess


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without initialising CUDA in it."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]
