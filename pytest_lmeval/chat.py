"""Chat templates for `--apply-chat-template`, chosen and applied as lm-eval's HF model does.

Prompts are built at collection time, before any model loads, so the template comes from the
model's tokenizer alone (AutoTokenizer: seconds, not the weights). The chosen template's text
and its SHA-256 go into results.json (`chat_template`, `chat_template_sha`), as lm-eval records
them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from .errors import LmevalError
from .models.base import ModelSpec

# Backends whose model name is also a tokenizer (a hub id or a local folder).
_TOKENIZER_IS_MODEL = {"hf", "vllm"}


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template ready to render lm-eval's message lists into prompts."""

    name: str | None  # the name picked from a tokenizer holding several, else None
    source: str  # the Jinja template text
    tokenizer: Any

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def __call__(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """lm-eval's HFLM.apply_chat_template: the assistant turn is opened (or, with a
        gen_prefix, the last assistant message continued); a template that rejects the system
        role is retried without system messages."""
        import jinja2

        def render(history: list[dict[str, str]]) -> str:
            return self.tokenizer.apply_chat_template(
                history,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt,
                chat_template=self.source,
            )

        try:
            return render(messages)
        except jinja2.exceptions.TemplateError:
            return render([m for m in messages if m["role"] != "system"])


def select_template(template: Any, name: str | None) -> tuple[str | None, str]:
    """lm-eval's LM.chat_template(): a named template from a tokenizer holding several (its
    `default` when unnamed); a tokenizer's single template whatever the name."""
    if isinstance(template, dict):
        if name is not None:
            if name not in template:
                raise LmevalError(
                    f"--apply-chat-template {name}: the tokenizer has no template of that name "
                    f"(it has: {', '.join(sorted(template))})"
                )
            return name, template[name]
        if "default" not in template:
            raise LmevalError(
                "--apply-chat-template: the tokenizer holds several chat templates and none is "
                f"'default'; name one: {', '.join(sorted(template))}"
            )
        return "default", template["default"]
    if not template:
        raise LmevalError("--apply-chat-template: the model's tokenizer has no chat template")
    return None, str(template)


def load_chat_template(spec: ModelSpec, name: str | None) -> ChatTemplate:
    """The chat template of the model's tokenizer: `tokenizer=` from --model-args, else the
    model itself for backends whose model is a tokenizer folder or hub id (hf, vllm)."""
    tok_name = spec.args.get("tokenizer")
    if tok_name is None and spec.backend in _TOKENIZER_IS_MODEL:
        tok_name = spec.name
    if tok_name is None:
        raise LmevalError(
            f"--apply-chat-template: backend {spec.backend!r} has no tokenizer to take a chat template "
            "from; pass --model-args tokenizer=PATH_OR_HUB_ID"
        )
    kwargs = {k: spec.args[k] for k in ("revision", "trust_remote_code", "subfolder") if k in spec.args}
    kwargs.setdefault("trust_remote_code", False)
    if "gguf_file" in spec.args and "tokenizer" not in spec.args:
        kwargs["gguf_file"] = spec.args["gguf_file"]
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.expanduser(str(tok_name)), **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LmevalError(f"--apply-chat-template: could not load the tokenizer {tok_name!r}: {first}") from None
    picked, source = select_template(getattr(tokenizer, "chat_template", None), name)
    return ChatTemplate(picked, source, tokenizer)
