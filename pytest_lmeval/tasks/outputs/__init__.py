"""The output types: each one module owning its requests, metrics and sample fields."""

from __future__ import annotations

from ...core.errors import LmevalError
from .base import OutputType
from .choice import MultipleChoice
from .generation import Generation
from .loglikelihood import Loglikelihood
from .rolling import Rolling

OUTPUT_TYPES: dict[str, OutputType] = {t.name: t for t in (MultipleChoice(), Loglikelihood(), Rolling(), Generation())}


def output_type(name: str, where: str = "") -> OutputType:
    found = OUTPUT_TYPES.get(name)
    if found is None:
        raise LmevalError(f"{where}: unknown output_type {name!r} (known: {', '.join(OUTPUT_TYPES)})".lstrip(": "))
    return found
