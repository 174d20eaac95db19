"""`vllm:NAME`: vLLM's offline engine, with lm-eval's scoring semantics.

Everything a backend call receives goes to vLLM in one `generate` call (its scheduler batches
and overlaps it all). Engine arguments: `tensor_parallel_size`, `data_parallel_size` (replica
processes, each on its own GPUs; see engine.py), `gpu_memory_utilization`,
`max_model_len`, `dtype`, `seed`, `enable_prefix_caching` (on unless turned off), and any other
vLLM engine argument passed through unchanged.

Log-likelihoods are lm-eval's vllm ones: tokens by lm-eval's pair rules (tokens.py), input
`(context + continuation)[-(max_length - 1):]`, `SamplingParams(temperature=0, max_tokens=1,
prompt_logprobs=1)`, the continuation's score the sum of its tokens' prompt log-probabilities,
greedy when each token is the most likely at its position. vLLM does not read the prefix cache
for requests that ask for prompt log-probabilities, so where the continuation is one token (the
letter of an MMLU answer, a yes/no) requests sharing a context are answered together instead:
one prompt holding just the context, with `logprob_token_ids` asking for the log-probabilities
of every continuation token at the next position (greedy: the token vLLM picks at temperature
0). That needs a vLLM whose SamplingParams has `logprob_token_ids`; with an older one, or
`shared_context=false`, every request is scored on its own.

Generation follows lm-eval's vllm model too (EOS text added to the stop strings, context cut on
the left to leave room for `max_gen_toks`, special tokens kept in the text), except that a task
that asks for neither sampling nor a temperature decodes greedily (see generation.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ...core.errors import LmevalError
from ...core.requests import Request
from ..backend import Progress, RequestFailed
from ..generation import cut_at_stops, normalize_gen_kwargs, with_eos
from ..hub import HubRevision, model_source
from ..spec import ModelSpec, redact_args
from ..tokens import LmTokenizer, Tokens, load_hf_tokenizer, rolling_windows, truncate_pair
from . import require_vllm
from .engine import LocalRunner, Output, Params, ReplicaPool, gpu_groups

DEFAULT_MAX_GEN_TOKS = 256
MAX_TOKEN_IDS = 128  # vLLM's MAX_LOGPROB_TOKEN_IDS: token ids one request may ask about
# Model args read here; everything else is a vLLM engine argument.
_OWN_ARGS = {"add_bos_token", "prefix_token_id", "max_gen_toks", "max_length", "data_parallel_size", "shared_context"}
_SCORE = {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 1, "detokenize": False}


def sampling_fields() -> set[str]:
    """The keyword arguments this vLLM's SamplingParams accepts."""
    import vllm

    fields = getattr(vllm.SamplingParams, "__struct_fields__", None)
    if fields is None:
        fields = inspect.signature(vllm.SamplingParams).parameters
    return set(fields)


class VLLMBackend:
    def __init__(self, spec: ModelSpec, *, device: str | None, batch_size: int | str) -> None:
        require_vllm(spec.label)
        self.spec = spec
        self.truncated: dict[Request, tuple[int, int]] = {}  # the last call's inputs cut to max_length
        args = dict(spec.args)
        if args.get("max_length") is not None and args.get("max_model_len") is not None:
            raise LmevalError("--model-args: give max_length or max_model_len, not both")
        if args.get("max_length") is not None:
            args["max_model_len"] = args["max_length"]
        engine_args = {k: v for k, v in args.items() if k not in _OWN_ARGS}
        engine_args["model"] = spec.name
        engine_args.setdefault("dtype", "auto")
        engine_args.setdefault("seed", 1234)
        engine_args.setdefault("enable_prefix_caching", True)
        engine_args.setdefault("trust_remote_code", False)
        engine_args.update(cpu_kv_budget(engine_args))
        # A hub model loads from the commit the response cache is keyed by (models/hub.py).
        source = model_source(spec.name, args, f"--model {spec.label}")
        if isinstance(source, HubRevision) and source.offline and source.snapshot is not None:
            engine_args["model"] = str(source.snapshot)  # hub offline: that commit's folder, no hub calls
        elif isinstance(source, HubRevision):
            engine_args["revision"] = source.commit
            engine_args.setdefault("download_dir", str(source.cache_dir))
            if not engine_args.get("tokenizer"):
                engine_args.setdefault("tokenizer_revision", source.commit)
        self.engine_args = engine_args
        self.fields = sampling_fields()
        self.shared_context = bool(args.get("shared_context", True)) and "logprob_token_ids" in self.fields
        self.max_gen_toks = int(args.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)

        tokenizer = load_hf_tokenizer(
            str(engine_args.get("tokenizer") or engine_args["model"]),
            revision=engine_args.get("tokenizer_revision") or engine_args.get("revision"),
            cache_dir=engine_args.get("download_dir"),
            trust_remote_code=engine_args["trust_remote_code"],
        )
        self.tokenizer = LmTokenizer(
            tokenizer, add_special_tokens=args.get("add_bos_token"), prefix_token_id=args.get("prefix_token_id")
        )
        self.eos = self.tokenizer.eos_text or tokenizer.eos_token

        replicas = int(args.get("data_parallel_size") or 1)
        tensor_parallel = int(engine_args.get("tensor_parallel_size") or 1)
        if replicas > 1:
            try:
                groups = gpu_groups(replicas, tensor_parallel)
            except ValueError as exc:
                raise LmevalError(f"--model {spec.label}: {exc}") from None
            self.runner: LocalRunner | ReplicaPool = ReplicaPool(engine_args, replicas, groups)
        else:
            self.runner = LocalRunner(engine_args)
        self.replicas = replicas
        self.max_length = self.runner.max_model_len

    def close(self) -> None:
        self.runner.close()

    def info(self) -> dict[str, Any]:
        import vllm

        return {
            "vllm_version": getattr(vllm, "__version__", "?"),
            "max_length": self.max_length,
            "data_parallel_size": self.replicas,
            "engine_args": redact_args({k: v for k, v in self.engine_args.items() if k != "model"}),
            "shared_context_scoring": self.shared_context,
            "tokenizer_eos_token": [self.tokenizer.tokenizer.eos_token, self.tokenizer.tokenizer.eos_token_id],
            "tokenizer_bos_token": [self.tokenizer.tokenizer.bos_token, self.tokenizer.tokenizer.bos_token_id],
        }

    # -- log-likelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request], progress: Progress) -> list[tuple[float, bool]]:
        pairs = [self.tokenizer.encode_pair(*req.args) for req in requests]
        for req, (_ctx, cont) in zip(requests, pairs, strict=True):
            if not cont:
                raise RequestFailed(req, f"continuation {req.args[1]!r} encodes to no tokens")
            if len(cont) > self.max_length - 2:
                raise RequestFailed(req, f"continuation of {len(cont)} tokens leaves no context in {self.max_length}")
        self.truncated = {  # the input keeps its last max_length - 1 tokens, as lm-eval's vLLM model
            req: (n, self.max_length - 1)
            for req, (ctx, cont) in zip(requests, pairs, strict=True)
            if (n := len(ctx) + len(cont)) > self.max_length - 1
        }
        answers = self._score(pairs)
        progress(len(requests))
        return answers

    def loglikelihood_rolling(self, requests: Sequence[Request], progress: Progress) -> list[float]:
        """lm-eval's disjoint rolling windows of `max_length - 2` predicted tokens each."""
        windows: list[tuple[Tokens, Tokens]] = []
        owner: list[int] = []
        for i, req in enumerate(requests):
            for ctx, pred in rolling_windows(
                self.tokenizer.encode(req.args[0]), self.tokenizer.prefix_token_id, self.max_length - 2
            ):
                windows.append((ctx, pred))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (ll, _greedy) in zip(owner, self._score(windows, shared=False), strict=True):
            totals[i] += ll
        progress(len(requests))
        return totals

    def _score(self, pairs: list[tuple[Tokens, Tokens]], shared: bool = True) -> list[tuple[float, bool]]:
        max_ctx = self.max_length - 1  # vLLM needs room for one generated token
        groups: dict[tuple[int, ...], list[int]] = {}
        alone: list[int] = []
        for i, (ctx, cont) in enumerate(pairs):
            if shared and self.shared_context and len(cont) == 1 and len(ctx) + 1 <= max_ctx:
                groups.setdefault(tuple(ctx), []).append(i)
            else:
                alone.append(i)
        prompts: list[Tokens] = []
        params: list[Params] = []
        jobs: list[tuple[str, Any]] = []
        for ctx, members in groups.items():
            ids = sorted({pairs[i][1][0] for i in members})
            for k in range(0, len(ids), MAX_TOKEN_IDS):
                chunk = ids[k : k + MAX_TOKEN_IDS]
                asked = set(chunk)
                prompts.append(list(ctx))
                params.append({"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": chunk, "detokenize": False})
                jobs.append(("shared", [i for i in members if pairs[i][1][0] in asked]))
        for i in alone:
            tokens, ctxlen = truncate_pair(*pairs[i], max_ctx)
            prompts.append(tokens)
            params.append(dict(_SCORE))
            jobs.append(("alone", (i, tokens, ctxlen)))

        answers: list[tuple[float, bool] | None] = [None] * len(pairs)
        missed: list[int] = []
        for (kind, job), out in zip(jobs, self.runner.run(prompts, params), strict=True):
            if kind == "alone":
                i, tokens, ctxlen = job
                answers[i] = _prompt_score(tokens, ctxlen, out)
                continue
            for i in job:
                token = pairs[i][1][0]
                if out.first_logprobs is None or token not in out.first_logprobs:
                    missed.append(i)  # this vLLM ignored logprob_token_ids: score on its own
                else:
                    answers[i] = (out.first_logprobs[token], out.token_ids[0] == token)
        if missed:
            self.shared_context = False
            for i, answer in zip(missed, self._score([pairs[i] for i in missed], shared=False), strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    # -- generation ---------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Request], progress: Progress) -> list[str]:
        self.truncated = {}
        prompts: list[Tokens] = []
        params: list[Params] = []
        stops: list[list[str]] = []
        for req in requests:
            args = normalize_gen_kwargs(req.gen_kwargs, self.max_gen_toks)
            unknown = sorted(set(args.extra) - self.fields)
            if unknown:
                raise RequestFailed(req, f"generation argument(s) {', '.join(unknown)} are not vLLM SamplingParams")
            room = self.max_length - args.max_gen_toks
            if room <= 0:
                limit = self.max_length
                raise RequestFailed(req, f"max_gen_toks {args.max_gen_toks} leaves no room in max length {limit}")
            until = with_eos(args.until, self.eos)
            encoded = self.tokenizer.encode(req.args[0])
            if len(encoded) > room:  # the prompt keeps its last tokens
                self.truncated[req] = (len(encoded), room)
            prompts.append(encoded[-room:])
            params.append(
                {
                    "skip_special_tokens": False,
                    "spaces_between_special_tokens": False,
                    **args.extra,
                    "max_tokens": args.max_gen_toks,
                    "stop": until,
                    "temperature": args.temperature,
                    "seed": args.seed,
                }
            )
            stops.append(until)
        outputs = self.runner.run(prompts, params)
        progress(len(requests))
        return [cut_at_stops(out.text, until) for out, until in zip(outputs, stops, strict=True)]


def cpu_kv_budget(engine_args: dict[str, Any]) -> dict[str, Any]:
    """On vLLM's CPU build, `gpu_memory_utilization` is a share of the machine's RAM that must be
    free at start (0.92 by default: refused on any machine running something else). Unless the
    user sized it, the KV cache gets a quarter of the memory free now, at most 4 GiB."""
    if "gpu_memory_utilization" in engine_args or engine_args.get("kv_cache_memory_bytes") is not None:
        return {}
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return {}
    import psutil

    return {"kv_cache_memory_bytes": min(4 << 30, psutil.virtual_memory().available // 4)}


def _prompt_score(tokens: Tokens, ctxlen: int, out: Output) -> tuple[float, bool]:
    """lm-eval's VLLM._parse_logprobs: the continuation's prompt log-probabilities."""
    if out.prompt_logprobs is None:
        raise RuntimeError("vLLM returned no prompt logprobs")
    total = 0.0
    greedy = True
    for token, entry in zip(tokens[ctxlen:], out.prompt_logprobs[ctxlen:], strict=True):
        assert entry is not None
        total += entry[token]
        greedy = greedy and max(entry, key=entry.__getitem__) == token
    return total, greedy
