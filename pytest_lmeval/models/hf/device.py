"""The one place the transformers path looks at which device it runs on."""

from __future__ import annotations

import torch

from .cpu import CpuTuning
from .tuning import Tuning


def tuning_for(device: torch.device) -> Tuning:
    """The CPU's tuning on a CPU; the GPU's on a GPU or any other accelerator."""
    if device.type == "cpu":
        return CpuTuning(device)
    return Tuning(device)
