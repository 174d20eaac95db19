"""Chat templates for `--apply-chat-template` (also `--chat-template`), chosen and applied as
lm-eval's HF model does.

Prompts are built at collection time, before any model loads, so the template comes from the
model's tokenizer alone (AutoTokenizer: seconds, not the weights). The option's value may also
be a Jinja template of the user's own, as a file (`--chat-template chatml.jinja`) or inline (any
value holding `{{` or `{%`), as EvalScope's `--chat-template` takes it: it is rendered here, in
jinja2's immutable sandbox, with the tokenizer's special tokens when the model has a tokenizer.
The chosen template's text and its SHA-256 go into results.json (`chat_template`,
`chat_template_sha`, and `chat_template_name`: `file:PATH` or `inline` for one of the user's),
as lm-eval records them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..models.spec import ModelSpec

# Backends whose model name is also a tokenizer (a hub id or a local folder).
_TOKENIZER_IS_MODEL = {"hf", "vllm"}


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template ready to render lm-eval's message lists into prompts."""

    name: str | None  # the name picked from a tokenizer holding several; `file:PATH` or `inline` for the user's
    source: str  # the Jinja template text
    tokenizer: Any
    custom: bool = False  # the user's own template, rendered here in the sandbox

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def __call__(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """lm-eval's HFLM.apply_chat_template: the assistant turn is opened (or, with a
        gen_prefix, the last assistant message continued); a template that rejects the system
        role is retried without system messages."""
        import jinja2

        def render(history: list[dict[str, str]]) -> str:
            if self.custom:
                return self._render(history, add_generation_prompt)
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
            if not self.custom:
                return render([m for m in messages if m["role"] != "system"])
        try:
            return render([m for m in messages if m["role"] != "system"])
        except jinja2.exceptions.TemplateError as exc:  # a sandbox refusal is one too
            raise LmevalError(f"--chat-template {self.name}: {type(exc).__name__}: {exc}") from None

    @cached_property
    def _compiled(self) -> Any:
        return compile_template(self.source, self.name or "chat template")

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """A user's template, as transformers renders one: `messages`, `add_generation_prompt`
        and the tokenizer's special tokens; continuing the final message cuts the text after
        its content (transformers' continue_final_message)."""
        tokens = {}
        if self.tokenizer is not None:
            tokens = {k: getattr(self.tokenizer, k, None) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
        text = self._compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **tokens)
        if not add_generation_prompt and messages:
            final = messages[-1]["content"].strip()
            at = text.rfind(final) if final else -1
            if at < 0:
                raise LmevalError(
                    f"{self.name}: the rendered prompt does not contain the final message, so it cannot be continued"
                )
            text = text[: at + len(final)]
        return text


def _raise(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def compile_template(source: str, where: str) -> Any:
    """A chat template compiled in jinja2's immutable sandbox (no attribute or method of
    Python objects beyond the safe ones; nothing mutated), `raise_exception` defined as in
    transformers; a syntax error is one line naming where and the line."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise LmevalError(f"--chat-template {where}: line {exc.lineno}: {exc.message}") from None


def custom_template(value: str) -> tuple[str, str] | None:
    """(name, source) when `value` is a template of the user's own (a file, or inline Jinja),
    None when it names one of the tokenizer's templates."""
    if "{{" in value or "{%" in value:
        return "inline", value
    path = Path(os.path.expanduser(value))
    if path.suffix in (".jinja", ".jinja2", ".j2", ".txt") or path.is_file():
        if not path.is_file():
            raise LmevalError(f"--chat-template {value}: no such file")
        return f"file:{path}", path.read_text(encoding="utf-8")
    return None


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
    model itself for backends whose model is a tokenizer folder or hub id (hf, vllm); or the
    user's own template (a file or inline Jinja), with the tokenizer when there is one."""
    own = custom_template(name) if name is not None else None
    tok_name = spec.args.get("tokenizer")
    if tok_name is None and spec.backend in _TOKENIZER_IS_MODEL:
        tok_name = spec.name
    if own is not None:
        template = ChatTemplate(own[0], own[1], _tokenizer(spec, tok_name) if tok_name else None, custom=True)
        template._compiled  # a syntax error now, before any prompt is built  # noqa: B018
        return template
    if tok_name is None:
        raise LmevalError(
            f"--apply-chat-template: backend {spec.backend!r} has no tokenizer to take a chat template "
            "from; pass --model-args tokenizer=PATH_OR_HUB_ID, or a template of your own (--chat-template FILE)"
        )
    tokenizer = _tokenizer(spec, tok_name)
    picked, source = select_template(getattr(tokenizer, "chat_template", None), name)
    return ChatTemplate(picked, source, tokenizer)


def _tokenizer(spec: ModelSpec, tok_name: Any) -> Any:
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
    return tokenizer
