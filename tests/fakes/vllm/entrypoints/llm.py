"""vllm.LLM on a transformers model: the offline API's shape and semantics, computed on the CPU.

- `prompt_logprobs=k`: one entry per prompt token, None for the first; each a dict of the
  prompt token and the k most likely tokens at that position -> Logprob(logprob, rank).
- `logprobs=k` / `logprob_token_ids=[...]`: per generated token, the sampled token plus the top
  k (or exactly the requested ids).
- generation is greedy (temperature 0 only), stops at EOS (unless ignore_eos), at `max_tokens`,
  or when the text contains a stop string, which is left out of the text.

Every constructor call and generate call is recorded in INITS / CALLS (this process) and, when
FAKE_VLLM_LOG names a file, appended there as JSON lines (for replicas in other processes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from ..inputs import TokensPrompt
from ..logprobs import Logprob
from ..outputs import CompletionOutput, RequestOutput
from ..sampling_params import SamplingParams

INITS: list[dict[str, Any]] = []
CALLS: list[dict[str, Any]] = []


def _log(event: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        event = {**event, "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        with open(path, "a") as fh:
            fh.write(json.dumps(event, default=str) + "\n")


class LLM:
    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        enable_prefix_caching: bool | None = None,
        max_num_seqs: int | None = None,
        **kwargs: Any,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        init = dict(locals())
        init.pop("self")
        init.pop("torch")
        init.pop("AutoModelForCausalLM")
        init.pop("AutoTokenizer")
        INITS.append(init)
        _log({"event": "init", **init})
        hub = {"cache_dir": kwargs.get("download_dir")}  # vLLM's download_dir is the hub cache
        self._tokenizer = AutoTokenizer.from_pretrained(
            tokenizer or model, trust_remote_code=trust_remote_code, revision=tokenizer_revision or revision, **hub
        )
        self._model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, revision=revision, **hub).eval()
        config = self._model.config
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(max_model_len=max_model_len or config.max_position_embeddings)
        )
        self._max_len = self.llm_engine.model_config.max_model_len

    def get_tokenizer(self) -> Any:
        return self._tokenizer

    def generate(
        self,
        prompts: TokensPrompt | Sequence[TokensPrompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
    ) -> list[RequestOutput]:
        if isinstance(prompts, dict):
            prompts = [prompts]
        params = sampling_params if sampling_params is not None else SamplingParams()
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        CALLS.append({"prompts": [list(p["prompt_token_ids"]) for p in prompts], "params": list(params)})
        _log({"event": "generate", "n": len(prompts)})
        pairs = enumerate(zip(prompts, params, strict=True))
        return [self._one(str(i), list(p["prompt_token_ids"]), sp) for i, (p, sp) in pairs]

    def _one(self, request_id: str, tokens: list[int], sp: SamplingParams) -> RequestOutput:
        import torch
        import torch.nn.functional as F

        if sp.temperature > 0:
            raise NotImplementedError("the vLLM stand-in decodes greedily only (temperature=0)")
        if len(tokens) + (sp.max_tokens or 0) > self._max_len:
            raise ValueError(f"prompt of {len(tokens)} tokens + {sp.max_tokens} exceeds max_model_len {self._max_len}")
        with torch.no_grad():
            out = self._model(torch.tensor([tokens]), use_cache=True)
            lps = F.log_softmax(out.logits[0].float(), dim=-1)
            prompt_lps = None
            if sp.prompt_logprobs is not None:
                k = sp.prompt_logprobs
                prompt_lps = [None] + [self._entry(lps[i - 1], tokens[i], k) for i in range(1, len(tokens))]
            generated, sample_lps, finish, stop_reason = self._decode(out, lps[-1], sp)
        text = ""
        if sp.detokenize:
            text = self._tokenizer.decode(generated, skip_special_tokens=sp.skip_special_tokens)
            for stop in sp.stop:
                if stop in text:
                    text = text.split(stop)[0] + (stop if sp.include_stop_str_in_output else "")
        completion = CompletionOutput(0, text, generated, None, sample_lps, finish, stop_reason)
        return RequestOutput(request_id, None, tokens, prompt_lps, [completion], True)

    def _entry(self, lp: Any, chosen: int, k: int, extra: Sequence[int] = ()) -> dict[int, Logprob]:
        ranks = (lp > lp[chosen]).sum().item() + 1
        entry = {chosen: Logprob(float(lp[chosen]), int(ranks))}
        for rank, t in enumerate(lp.topk(k).indices.tolist() if k > 0 else [], start=1):
            entry.setdefault(t, Logprob(float(lp[t]), rank))
        for t in extra:
            entry.setdefault(t, Logprob(float(lp[t]), int((lp > lp[t]).sum().item() + 1)))
        return entry

    def _decode(self, out: Any, next_lp: Any, sp: SamplingParams) -> tuple:
        import torch
        import torch.nn.functional as F

        from pytest_lmeval.models.hf.kv_cache import cache_argument, returned_cache

        token_ids = getattr(sp, "logprob_token_ids", None)  # absent before vLLM had it
        want_lps = sp.logprobs is not None or bool(token_ids)
        generated: list[int] = []
        sample_lps: list[dict[int, Logprob]] | None = [] if want_lps else None
        past = returned_cache(out)
        eos = self._tokenizer.eos_token_id
        for _ in range(sp.max_tokens):
            t = int(next_lp.argmax())
            generated.append(t)
            if sample_lps is not None:
                k = 0 if token_ids else int(sp.logprobs or 0)
                sample_lps.append(self._entry(next_lp, t, k, token_ids or ()))
            if t == eos and not sp.ignore_eos:
                return generated, sample_lps, "stop", None
            if sp.stop and sp.detokenize:
                text = self._tokenizer.decode(generated, skip_special_tokens=sp.skip_special_tokens)
                hit = next((s for s in sp.stop if s in text), None)
                if hit is not None:
                    return generated, sample_lps, "stop", hit
            out = self._model(torch.tensor([[t]]), use_cache=True, **{cache_argument(self._model): past})
            past = returned_cache(out)
            next_lp = F.log_softmax(out.logits[0, -1].float(), dim=-1)
        return generated, sample_lps, "length", None
