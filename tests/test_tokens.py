"""Token-level parity with lm-eval itself: the (context, continuation) token ids our backends
score are the ones lm-eval's `hf` and `local-completions` models score, read off lm-eval's own
`loglikelihood` on a tokenizer that adds a BOS token (where the rules differ)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_model import build_tiny_model

from pytest_lmeval.models.hf.backend import HFBackend
from pytest_lmeval.models.spec import ModelSpec
from pytest_lmeval.models.tokens import LmTokenizer

PAIRS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("The quick brown fox jumps over the lazy ", "dog."),  # trailing space moves to the continuation
    ("", "The quick brown fox"),  # empty context: the prefix token
    ("", "<|endoftext|>The quick"),  # ... unless the continuation starts with it
    ("A B C", " D"),
]


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, its tokenizer made to prepend BOS as Llama's does."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("bos"))
    tok = AutoTokenizer.from_pretrained(folder)
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", bos)]
    )
    tok.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder)("hi")["input_ids"][0] == bos
    return folder


def _lmeval_tokens(lm, pairs) -> list[tuple[list[int], list[int]]]:
    """What lm-eval's loglikelihood hands to its scorer, for each pair."""
    from lm_eval.api.instance import Instance

    seen: list = []

    def capture(requests, **kwargs):
        seen.extend(requests)
        return [(0.0, True)] * len(requests)

    lm._loglikelihood_tokens = capture
    lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)], disable_tqdm=True)
    return [(list(ctx), list(cont)) for _key, ctx, cont in seen]


def test_hf_and_vllm_tokens_are_lmeval_hf_tokens(bos_model: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    want = _lmeval_tokens(HFLM(pretrained=str(bos_model), device="cpu", batch_size=1), PAIRS)
    hf = HFBackend(ModelSpec("hf", str(bos_model), {}), device="cpu", batch_size=1)
    assert [(list(p.context), list(p.continuation)) for p in map(lambda pc: hf.encode_pair(*pc), PAIRS)] == want
    vllm_rules = LmTokenizer(hf.tokenizer, add_special_tokens=None)  # lm-eval's vllm model: HFLM's rules
    assert [vllm_rules.encode_pair(*pc) for pc in PAIRS] == want


def test_api_tokens_are_lmeval_local_completions_tokens(bos_model: Path) -> None:
    pytest.importorskip("tenacity", reason="lm-eval's API models need it: pip install tenacity")
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from transformers import AutoTokenizer

    lm = LocalCompletionsAPI(
        base_url="http://127.0.0.1:9/v1/completions", tokenizer_backend="huggingface", tokenizer=str(bos_model)
    )
    want = _lmeval_tokens(lm, PAIRS)
    api_rules = LmTokenizer(AutoTokenizer.from_pretrained(bos_model), add_special_tokens=False)
    assert [api_rules.encode_pair(*pc) for pc in PAIRS] == want
