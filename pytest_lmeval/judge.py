"""LLM-as-a-judge: open-ended answers scored by a second model."""

from __future__ import annotations

from dataclasses import dataclass

from .models.base import ModelSpec

# EvalScope's judge strategies: `rule` never asks the judge, `llm` always does, `llm_recall`
# asks it only where the rule says wrong, `auto` lets each benchmark's metric decide.
STRATEGIES = ("auto", "rule", "llm", "llm_recall")


@dataclass(frozen=True)
class JudgeOptions:
    """The run's judge: --judge-model, --judge-model-args, --judge-concurrency, --judge-strategy."""

    spec: ModelSpec | None
    args_text: str | None
    concurrency: int = 4
    strategy: str | None = None  # None: auto
