"""transformers backend: the same tokenization, batching and scoring as lm-eval's `hf` model.

Log-likelihoods follow lm-eval's HFLM: trailing spaces of the context move to the continuation,
context+continuation is encoded whole and split at the context's length, inputs are
right-padded without an attention mask (padding sits after every position that is scored), and
requests whose model input is the same token sequence share one forward pass (all choices of an
MMLU question are one row, not four).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...core.errors import LmevalError
from ...core.requests import Request
from ..backend import Progress, answered
from ..hub import pinned_kwargs
from ..spec import ModelSpec
from . import gguf_cache
from .decode import DRAFT_MAX
from .device import tuning_for
from .generate import generate
from .scorer import Pair, Scorer, TokenBudget, rolling_windows

DEFAULT_MAX_LENGTH = 2048
DEFAULT_MAX_GEN_TOKS = 256
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
    "prefix_reuse",
    "prompt_lookup",
    "packed_linear",
    "max_gen_toks",
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


class HFBackend:
    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        import transformers

        started = time.perf_counter()
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
        load_kwargs.update(pinned_kwargs(spec.name, args, f"--model {spec.label}"))  # the commit the cache keys
        tok_keys = ("revision", "trust_remote_code", "gguf_file", "subfolder", "cache_dir", "local_files_only", "token")
        tok_kwargs = {k: load_kwargs[k] for k in tok_keys if k in load_kwargs}
        tok_path = args.get("tokenizer") or path
        if args.get("tokenizer"):
            for key in ("gguf_file", "revision", "cache_dir", "local_files_only"):
                tok_kwargs.pop(key, None)
            tok_kwargs.update(pinned_kwargs(str(tok_path), {}, f"--model-args tokenizer={tok_path!r}"))
        # a local GGUF file loads from its one-time conversion (gguf_cache.py)
        where = gguf_cache.redirect(path, str(tok_path), load_kwargs, tok_kwargs)
        path, tok_path, load_kwargs, tok_kwargs = where.path, where.tok_path, where.load_kwargs, where.tok_kwargs
        try:
            config = transformers.AutoConfig.from_pretrained(path, **tok_kwargs)
            kind = args.get("backend") or ("seq2seq" if config.is_encoder_decoder else "causal")
            auto = transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_path, **tok_kwargs)
            self.model = auto.from_pretrained(path, **load_kwargs)
            gguf_cache.after_load(self.model, self.tokenizer, where)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LmevalError(f"--model {spec.label}: could not load: {first}") from None
        self.backend = kind
        if args.get("peft"):
            from peft import PeftModel

            pinned = pinned_kwargs(str(args["peft"]), {}, f"--model-args peft={args['peft']!r}")
            revision = {"revision": pinned["revision"]} if pinned else {}
            self.model = PeftModel.from_pretrained(self.model, args["peft"], **revision)
        if "device_map" not in load_kwargs:
            self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # a model accelerate placed stays as it placed it
        self._set_up(args, adapt="device_map" not in load_kwargs)
        self.load_seconds = time.perf_counter() - started
        self.loaded_from = where.source

    def _set_up(self, args: dict[str, Any], *, adapt: bool) -> None:
        """Everything after `self.model`, `self.tokenizer` and `self.backend` are in place, on
        the device the model sits on (in_memory.py builds a backend around a model already in
        memory this way): eval mode, the device's tuning (`adapt`: let it change the model, as
        packed linears on a CPU), lengths, the tokenizer's special tokens, the scorer."""
        self.model.eval()
        self.device = next(self.model.parameters()).device
        self.tuning = tuning_for(self.device)
        if adapt:
            self.tuning.prepare(self.model, packed_linear=bool(args.get("packed_linear", True)))
        self.max_length = int(args.get("max_length") or self._detect_max_length())
        self.prefix_token_id = args.get("prefix_token_id")
        if self.prefix_token_id is None:
            tok = self.tokenizer
            self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if self.tokenizer.pad_token_id is None:  # lm-eval's configure_pad_token
            if self.tokenizer.unk_token is not None:
                self.tokenizer.pad_token_id = self.tokenizer.unk_token_id
            elif self.tokenizer.eos_token is not None:
                self.tokenizer.pad_token_id = self.tokenizer.eos_token_id
        self.max_gen_toks = int(args.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)
        # most prompt-lookup draft tokens a decoding pass feeds (decode.py); 0 turns it off
        self.prompt_lookup = int(args.get("prompt_lookup", DRAFT_MAX))
        self.drafts = [0, 0]  # draft tokens fed, and kept
        self.scorer = Scorer(
            self.model,
            self.max_length,
            TokenBudget(self.batch_size, self.tuning),
            self.softmax_dtype,
            prefix_reuse=bool(args.get("prefix_reuse", True)),
        )
        # per generation request of the last generate_until call: seconds to its first token (generate.py)
        self.first_token_seconds: dict[Request, float] = {}
        # requests of the last call whose input was cut to the model's length: (tokens, kept)
        self.truncated: dict[Request, tuple[int, int]] = {}

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
            "load_seconds": round(self.load_seconds, 2),
            "loaded_from": self.loaded_from,
            "device": str(self.device),
            "max_length": self.max_length,
            "model_class": type(self.model).__name__,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "tokenizer_pad_token": [self.tokenizer.pad_token, self.tokenizer.pad_token_id],
            "tokenizer_eos_token": [self.tokenizer.eos_token, self.tokenizer.eos_token_id],
            "tokenizer_bos_token": [self.tokenizer.bos_token, self.tokenizer.bos_token_id],
        }

    def token_counts(self) -> dict[str, int]:
        """Tokens of the requests answered, and tokens the model actually ran (fewer when a
        shared prefix is computed once); generated tokens count in both. With prompt lookup,
        the draft tokens decoding fed, and how many of them it kept."""
        counts = {"tokens": self.scorer.tokens, "forward_tokens": self.scorer.forward_tokens}
        if self.drafts[0]:
            counts.update(draft_tokens=self.drafts[0], draft_tokens_kept=self.drafts[1])
        return counts

    # -- tokenization -------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        kwargs: dict[str, Any] = {}
        if self.add_bos_token is not None:
            kwargs["add_special_tokens"] = bool(self.add_bos_token)
        bos = self.tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None
        if self.add_bos_token is None and bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
        return self.tokenizer.encode(text, **kwargs)

    def encode_pair(self, context: str, continuation: str) -> Pair:
        if not context:  # lm-eval: the prefix token as context, unless the continuation starts with it
            cont = self.tokenizer.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return Pair(tuple(cont[:1]), tuple(cont[1:]))
            return Pair((self.prefix_token_id,), tuple(cont))
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if self.backend == "seq2seq":
            cont = self.tokenizer.encode(continuation, add_special_tokens=False)
            return Pair(tuple(self.tok_encode(context)), tuple(cont))
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return Pair(tuple(ctx), tuple(whole[len(ctx) :]))

    # -- log-likelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        pairs = [self.encode_pair(*req.args) for req in requests]
        self.truncated = {  # the model sees the last max_length + 1 tokens, as lm-eval's HFLM
            req: (n, self.max_length + 1)
            for req, pair in zip(requests, pairs, strict=True)
            if (n := len(pair.context) + len(pair.continuation)) > self.max_length + 1 and self.backend != "seq2seq"
        }
        for req, pair in zip(requests, pairs, strict=True):
            if not pair.continuation:
                raise LmevalError(f"continuation {req.args[1]!r} encodes to no tokens")
        self.tuning.before_scoring()
        if self.backend == "seq2seq":
            return self._seq2seq_loglikelihood(pairs, progress)

        def on_done(indices: list[int], results: list[Any]) -> None:
            answered(progress, [(requests[i], results[i]) for i in indices])
            progress(len(indices))

        return self.scorer.score(pairs, on_done)

    def loglikelihood_rolling(self, requests: Sequence[Request], progress: Progress) -> list[float]:
        """lm-eval's disjoint rolling windows: every token is predicted once, each window with
        as much context as fits; a document's log-likelihood is the sum over its windows."""
        pairs: list[Pair] = []
        owner: list[int] = []
        for i, req in enumerate(requests):
            for ctx, pred in rolling_windows(self.tok_encode(req.args[0]), self.prefix_token_id, self.max_length):
                pairs.append(Pair(tuple(ctx), tuple(pred)))
                owner.append(i)
        left = [0] * len(requests)
        for i in owner:
            left[i] += 1
        for n in left:  # an empty document has no window and scores 0
            if n == 0:
                progress(1)

        windows: list[list[int]] = [[] for _ in requests]
        for j, i in enumerate(owner):
            windows[i].append(j)
        totals = [0.0] * len(requests)

        def on_done(indices: list[int], results: list[Any]) -> None:
            finished = []
            for j in indices:
                left[owner[j]] -= 1
                if left[owner[j]] == 0:
                    finished.append(owner[j])
            for i in finished:  # summed in window order, whatever order the windows ran in
                totals[i] = sum(results[j][0] for j in windows[i])
            answered(progress, [(requests[i], totals[i]) for i in finished])
            progress(len(finished))

        self.tuning.before_scoring()
        self.scorer.score(pairs, on_done)
        return totals

    @torch.no_grad()
    def _seq2seq_loglikelihood(self, pairs: list[Pair], progress: Progress) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool]] = []
        size = 1 if self.batch_size == "auto" else int(self.batch_size)
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            ctxs = [p.context[-self.max_length :] for p in chunk]
            conts = [p.continuation[-self.max_length :] for p in chunk]
            inputs = torch.zeros((len(chunk), max(map(len, ctxs))), dtype=torch.long)
            mask = torch.zeros_like(inputs)
            labels = torch.zeros((len(chunk), max(map(len, conts))), dtype=torch.long)
            for r, (ctx, cont) in enumerate(zip(ctxs, conts, strict=True)):
                inputs[r, : len(ctx)] = torch.tensor(ctx)
                mask[r, : len(ctx)] = 1
                labels[r, : len(cont)] = torch.tensor(cont)
            out = self.model(
                input_ids=inputs.to(self.device),
                attention_mask=mask.to(self.device),
                labels=labels.to(self.device),
            )
            logprobs = F.log_softmax(out.logits, dim=-1, dtype=self.softmax_dtype)
            for r, cont in enumerate(conts):
                target = labels[r, : len(cont)].to(logprobs.device)
                row = logprobs[r, : len(cont)]
                greedy = bool((row.argmax(dim=-1) == target).all())
                results.append((float(row.gather(-1, target.unsqueeze(-1)).sum()), greedy))
            progress(len(chunk))
        return results

    # -- generation ---------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Request], progress: Progress) -> list[str]:
        self.tuning.before_generating()
        return generate(self, requests, progress)
