"""lm-eval's tokenization rules for backends that score token sequences they do not run
themselves (vLLM, OpenAI-compatible servers).

The rules are lm-eval's TemplateLM ones, so log-likelihoods computed from these tokens equal
those of lm-eval's `vllm` and `local-completions` models (and of our `hf` backend on tokenizers
that add no special tokens):
- trailing spaces of the context move to the continuation, context+continuation is encoded
  whole and split at the context's length;
- an empty context is replaced by the prefix token (BOS, else EOS), unless the continuation
  already starts with it;
- `add_special_tokens`: None keeps the tokenizer's default (and skips it when the text already
  starts with the BOS text), as lm-eval's vllm model does; the API models pass
  `add_bos_token` (default False) explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..core.errors import LmevalError

Tokens = list[int]


class LmTokenizer:
    """A tokenizer with lm-eval's pair encoding; wraps a transformers tokenizer or tiktoken."""

    def __init__(self, tokenizer: Any, *, add_special_tokens: bool | None, prefix_token_id: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.add_special_tokens = add_special_tokens
        if prefix_token_id is None:
            prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix_token_id
        self._bos_text = tokenizer.decode([prefix_token_id]) if prefix_token_id is not None else None

    @property
    def eos_text(self) -> str | None:
        eos = self.tokenizer.eos_token_id
        return self.tokenizer.decode([eos]) if eos is not None else None

    def encode(self, text: str, add_special_tokens: bool | None = None) -> Tokens:
        if not text:
            return []
        special = add_special_tokens if add_special_tokens is not None else self.add_special_tokens
        if special is None and self._bos_text and text.startswith(self._bos_text):
            special = False
        kwargs = {} if special is None else {"add_special_tokens": special}
        return list(self.tokenizer(text, **kwargs)["input_ids"])

    def decode(self, tokens: Tokens) -> str:
        return self.tokenizer.decode(tokens)

    def encode_pair(self, context: str, continuation: str) -> tuple[Tokens, Tokens]:
        if not context:
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]


def truncate_pair(context: Tokens, continuation: Tokens, max_len: int) -> tuple[Tokens, int]:
    """lm-eval's left truncation of a scored sequence to `max_len` tokens: (input tokens, the
    number of them that are context). The first input token is never scored."""
    whole = (context + continuation)[-max_len:]
    ctxlen = len(context) - max(0, len(context) + len(continuation) - max_len)
    return whole, ctxlen


def rolling_windows(tokens: Tokens, prefix_token: int, max_seq_len: int) -> Iterator[tuple[Tokens, Tokens]]:
    """lm-eval's get_rolling_token_windows(context_len=1) + make_disjoint_window: every token
    is predicted once, each window with as much context as fits in `max_seq_len`."""
    if not tokens:
        return
    first = min(max_seq_len, len(tokens))
    yield [prefix_token], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_seq_len)
        end = predicted + n
        ctx = tokens[end - max_seq_len - 1 : end - 1]
        yield ctx[: len(ctx) - (n - 1)], tokens[end - n : end]
        predicted += n


def load_hf_tokenizer(name: str, **kwargs: Any) -> Any:
    """A transformers tokenizer from a local folder (or the hub where reachable), with lm-eval's
    pad-token fallback; a load failure is one line naming what was asked for."""
    import transformers

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.setdefault("trust_remote_code", False)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(os.path.expanduser(name), **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LmevalError(f"tokenizer {name!r}: could not load: {first}") from None
    if tok.pad_token_id is None:
        if tok.unk_token is not None:
            tok.pad_token_id = tok.unk_token_id
        elif tok.eos_token is not None:
            tok.pad_token_id = tok.eos_token_id
    return tok


class TiktokenAdapter:
    """The few tokenizer methods LmTokenizer uses, on a tiktoken encoding (OpenAI models)."""

    def __init__(self, model: str) -> None:
        try:
            import tiktoken
        except ModuleNotFoundError:
            raise LmevalError(
                f"tokenizer for {model!r}: tiktoken is not installed (pip install tiktoken), or pass "
                "tokenizer=<HF tokenizer folder or name>,tokenizer_backend=huggingface"
            ) from None
        self.encoding = tiktoken.encoding_for_model(model)
        self.eos_token_id = self.encoding.eot_token
        self.bos_token_id = None

    def __call__(self, text: str, **_: Any) -> dict[str, Tokens]:
        return {"input_ids": self.encoding.encode(text, allowed_special="all")}

    def decode(self, tokens: Tokens) -> str:
        return self.encoding.decode(tokens)
