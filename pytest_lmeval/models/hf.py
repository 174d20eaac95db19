"""transformers backend: the same tokenization, batching and scoring as lm-eval's `hf` model.

Log-likelihoods follow lm-eval's HFLM: trailing spaces of the context move to the continuation,
context+continuation is encoded whole and split at the context's length, inputs are
right-padded without an attention mask (padding sits after every position that is scored), and
requests whose model input is the same token sequence share one forward pass (all choices of an
MMLU question are one row, not four).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import LmevalError
from ..requests import Request
from .base import ModelSpec, Progress

DEFAULT_MAX_LENGTH = 2048
AUTO_BATCH_START = 64
# Model args we interpret; every other key goes to from_pretrained unchanged.
_OWN_ARGS = {
    "dtype",
    "parallelize",
    "peft",
    "add_bos_token",
    "max_length",
    "tokenizer",
    "backend",
    "softmax_dtype",
    "prefix_token_id",
}
_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _dtype(value: Any, what: str) -> Any:
    if value is None:
        return None
    try:
        return _DTYPES[str(value)]
    except KeyError:
        raise LmevalError(f"--model-args {what}={value!r}: use one of {', '.join(_DTYPES)}") from None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class _Encoded:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


class HFBackend:
    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        import transformers

        self.spec = spec
        args = dict(spec.args)
        self.batch_size = batch_size
        self.add_bos_token = args.get("add_bos_token")
        self.softmax_dtype = _dtype(args.get("softmax_dtype"), "softmax_dtype")
        load_kwargs = {k: v for k, v in args.items() if k not in _OWN_ARGS}
        load_kwargs.setdefault("trust_remote_code", False)
        if args.get("dtype") is not None:
            load_kwargs["dtype"] = _dtype(args["dtype"], "dtype")
        if args.get("parallelize"):
            load_kwargs.setdefault("device_map", "auto")
        path = os.path.expanduser(spec.name)
        tok_kwargs = {
            k: load_kwargs[k]
            for k in ("revision", "trust_remote_code", "gguf_file", "subfolder")
            if k in load_kwargs
        }
        tok_path = args.get("tokenizer") or path
        if args.get("tokenizer"):
            tok_kwargs.pop("gguf_file", None)
        try:
            config = transformers.AutoConfig.from_pretrained(path, **tok_kwargs)
            kind = args.get("backend") or ("seq2seq" if config.is_encoder_decoder else "causal")
            auto = (
                transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
            )
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_path, **tok_kwargs)
            self.model = auto.from_pretrained(path, **load_kwargs)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LmevalError(f"--model {spec.label}: could not load: {first}") from None
        self.backend = kind
        if args.get("peft"):
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, args["peft"])
        if "device_map" not in load_kwargs:
            self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.eval()
        self.device = next(self.model.parameters()).device
        self.max_length = int(args.get("max_length") or self._detect_max_length())
        self.prefix_token_id = args.get("prefix_token_id")
        if self.prefix_token_id is None:
            tok = self.tokenizer
            self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self._auto_batch: int | None = None

    def _detect_max_length(self) -> int:
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(self.model.config, attr, None)
            if value:
                return int(value)
        tml = getattr(self.tokenizer, "model_max_length", None)
        if tml and tml < 1_000_000_000:
            return int(tml)
        return DEFAULT_MAX_LENGTH

    def info(self) -> dict[str, Any]:
        return {
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
            "max_length": self.max_length,
            "model_class": type(self.model).__name__,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "tokenizer_pad_token": [self.tokenizer.pad_token, self.tokenizer.pad_token_id],
            "tokenizer_eos_token": [self.tokenizer.eos_token, self.tokenizer.eos_token_id],
            "tokenizer_bos_token": [self.tokenizer.bos_token, self.tokenizer.bos_token_id],
        }

    # -- tokenization -------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        kwargs: dict[str, Any] = {}
        if self.add_bos_token is not None:
            kwargs["add_special_tokens"] = bool(self.add_bos_token)
        bos = self.tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None
        if self.add_bos_token is None and bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
        return self.tokenizer.encode(text, **kwargs)

    def encode_pair(self, context: str, continuation: str) -> _Encoded:
        if not context:
            return _Encoded((self.prefix_token_id,), tuple(self.tok_encode(continuation)))
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if self.backend == "seq2seq":
            cont = self.tokenizer.encode(continuation, add_special_tokens=False)
            return _Encoded(tuple(self.tok_encode(context)), tuple(cont))
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return _Encoded(tuple(ctx), tuple(whole[len(ctx) :]))

    # -- log-likelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        encoded = [self.encode_pair(*req.args) for req in requests]
        for req, enc in zip(requests, encoded, strict=True):
            if not enc.continuation:
                raise LmevalError(f"continuation {req.args[1]!r} encodes to no tokens")
        if self.backend == "seq2seq":
            return self._seq2seq_loglikelihood(encoded, progress)
        # Rows: distinct model inputs. Members: (request index, continuation) scored on a row.
        rows: dict[tuple[int, ...], list[int]] = {}
        for i, enc in enumerate(encoded):
            whole = (enc.context + enc.continuation)[-(self.max_length + 1) :]
            rows.setdefault(whole[:-1], []).append(i)
        order = sorted(rows, key=lambda inp: (-len(inp), inp))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        start = 0
        while start < len(order):
            size = self._batch_size_for(order, start)
            batch = order[start : start + size]
            try:
                self._score_batch(batch, rows, encoded, results)
            except Exception as exc:
                if not (_is_oom(exc) and self.batch_size == "auto" and size > 1):
                    raise
                self._auto_batch = max(1, size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue  # the same rows again, in a smaller batch: nothing is lost
            start += len(batch)
            progress(sum(len(rows[inp]) for inp in batch))
        return results  # type: ignore[return-value]

    def _batch_size_for(self, order: list[tuple[int, ...]], start: int) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        if self._auto_batch is None:
            self._auto_batch = AUTO_BATCH_START
        return self._auto_batch

    @torch.no_grad()
    def _score_batch(
        self,
        batch: list[tuple[int, ...]],
        rows: dict[tuple[int, ...], list[int]],
        encoded: list[_Encoded],
        results: list[tuple[float, bool] | None],
    ) -> None:
        width = len(batch[0])
        padded = torch.zeros((len(batch), width), dtype=torch.long)
        for r, inp in enumerate(batch):
            padded[r, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        # Only the positions that predict continuation tokens are needed: keep that tail.
        first_needed = min(len(inp) - max(len(encoded[i].continuation) for i in rows[inp]) for inp in batch)
        keep = width - max(first_needed, 0)
        kwargs = {"logits_to_keep": keep} if keep < width else {}
        logits = self.model(padded.to(self.device), **kwargs).logits
        offset = width - logits.shape[1]
        for r, inp in enumerate(batch):
            for i in rows[inp]:
                cont = encoded[i].continuation
                n = len(cont)
                lo = len(inp) - n - offset
                logprobs = F.log_softmax(logits[r, lo : lo + n], dim=-1, dtype=self.softmax_dtype)
                target = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
                greedy = bool((logprobs.argmax(dim=-1) == target).all())
                ll = float(logprobs.gather(-1, target.unsqueeze(-1)).sum())
                results[i] = (ll, greedy)

    @torch.no_grad()
    def _seq2seq_loglikelihood(self, encoded: list[_Encoded], progress: Progress) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool]] = []
        size = 1 if self.batch_size == "auto" else int(self.batch_size)
        for start in range(0, len(encoded), size):
            chunk = encoded[start : start + size]
            ctx_w = max(len(e.context[-self.max_length :]) for e in chunk)
            cont_w = max(len(e.continuation[-self.max_length :]) for e in chunk)
            inputs = torch.zeros((len(chunk), ctx_w), dtype=torch.long)
            mask = torch.zeros((len(chunk), ctx_w), dtype=torch.long)
            labels = torch.zeros((len(chunk), cont_w), dtype=torch.long)
            for r, e in enumerate(chunk):
                ctx, cont = e.context[-self.max_length :], e.continuation[-self.max_length :]
                inputs[r, : len(ctx)] = torch.tensor(ctx)
                mask[r, : len(ctx)] = 1
                labels[r, : len(cont)] = torch.tensor(cont)
            out = self.model(
                input_ids=inputs.to(self.device),
                attention_mask=mask.to(self.device),
                labels=labels.to(self.device),
            )
            logprobs = F.log_softmax(out.logits, dim=-1, dtype=self.softmax_dtype)
            for r, e in enumerate(chunk):
                n = len(e.continuation[-self.max_length :])
                target = labels[r, :n].to(logprobs.device)
                row = logprobs[r, :n]
                greedy = bool((row.argmax(dim=-1) == target).all())
                results.append((float(row.gather(-1, target.unsqueeze(-1)).sum()), greedy))
            progress(len(chunk))
        return results
