"""A prompt as lm-eval 0.4 assembles it: a list of chat messages (system instruction and
description, one user/assistant pair per few-shot example, the document's question), rendered
either as plain text (each message followed by its delimiter) or through a chat template.

Kept as messages rather than strings so that `--apply-chat-template` and
`--fewshot-as-multiturn` give exactly lm-eval's prompts: `fewshot_context`,
`build_qa_turn` and `multiturn_to_singleturn` in lm_eval/api are the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

ChatRenderer = Callable[[list[dict[str, str]], bool], str]  # (messages, add_generation_prompt)


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str
    delimiter: str = ""  # what follows the message in plain text

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    def to_text(self) -> str:
        return self.content + self.delimiter


def maybe_delimit(prefix: str | None, suffix: str | None, delimiter: str = " ") -> str:
    """Join with the delimiter unless either side already has whitespace at the seam."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


def requires_delimiter(prefix: str, suffix: str) -> bool:
    if prefix == "":
        return False
    return not (prefix[-1].isspace() or suffix[0].isspace())


def qa_turn(
    question: str,
    answer: str | None = None,
    *,
    gen_prefix: str | None = None,
    target_delimiter: str = " ",
    fewshot_delimiter: str = "\n\n",
) -> list[Message]:
    """A user turn, and the assistant's answer (a few-shot example) or its forced start
    (`gen_prefix`). `answer` is already text: the caller picks it from choices or a list."""
    has_answer = answer is not None and answer != ""
    delimit = (has_answer and not gen_prefix) or bool(gen_prefix and requires_delimiter(question, gen_prefix))
    user_delim = target_delimiter if delimit else ""
    turns = [Message("user", question, user_delim)]
    if has_answer:
        turns.append(Message("assistant", maybe_delimit(gen_prefix, answer, " "), fewshot_delimiter))
    elif gen_prefix:
        turns.append(Message("assistant", gen_prefix))
    return turns


def to_single_turn(messages: list[Message]) -> list[dict[str, str]]:
    """lm-eval's multiturn_to_singleturn: every turn after the system message folded into one
    user message (a trailing assistant turn, the gen_prefix, stays separate)."""
    system, rest = (messages[0], messages[1:]) if messages[0].role == "system" else (None, messages)
    if rest[-1].role == "assistant":
        user = [*rest[:-2], replace(rest[-2], delimiter="")]
        out = [Message("user", "".join(m.to_text() for m in user)).to_dict(), rest[-1].to_dict()]
    else:
        user = [*rest[:-1], replace(rest[-1], delimiter="")]
        out = [Message("user", "".join(m.to_text() for m in user)).to_dict()]
    return [system.to_dict(), *out] if system else out


@dataclass(frozen=True)
class PromptStyle:
    """How prompts are rendered for this run (lm-eval's system_instruction,
    apply_chat_template and fewshot_as_multiturn)."""

    system_instruction: str | None = None
    chat: ChatRenderer | None = None
    fewshot_as_multiturn: bool = False

    def render(self, messages: list[Message], gen_prefix: str | None) -> str:
        if self.chat is None:
            return "".join(m.to_text() for m in messages)
        turns: Any = [m.to_dict() for m in messages] if self.fewshot_as_multiturn else to_single_turn(messages)
        return self.chat(turns, not gen_prefix)


PLAIN = PromptStyle()
