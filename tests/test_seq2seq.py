"""Generation on an encoder-decoder model: a tiny random T5, whose texts must equal direct
transformers `generate` on the same prompts (the decoder's output after its start token,
however long the prompt), in batches and one at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.models.hf.backend import HFBackend  # noqa: E402
from pytest_lmeval.models.spec import ModelSpec  # noqa: E402

PROMPTS = [
    "Question: What is the capital of France?\nAnswer:",
    "The quick brown fox",
    "Science questions about plants, animals, water, energy and the sun. " * 3,  # longer than the output
    "A B C",
]
MAX_NEW = 12


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A random T5 on the tiny Llama's byte-level BPE tokenizer, with a pad token added (T5's
    decoder start token)."""
    fast = transformers.AutoTokenizer.from_pretrained(tiny_model)
    fast.add_special_tokens({"pad_token": "<pad>"})
    torch.manual_seed(1)
    config = transformers.T5Config(
        vocab_size=len(fast),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        decoder_start_token_id=fast.pad_token_id,
        initializer_factor=10.0,  # at 1.0 a random T5 writes one token over and over
    )
    folder = tmp_path_factory.mktemp("tiny-t5") / "model"
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def _direct(folder: Path) -> list[str]:
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.float32).eval()
    texts = []
    with torch.no_grad():
        for prompt in PROMPTS:
            enc = tok(prompt, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False)
            texts.append(tok.decode(out[0], skip_special_tokens=True))
    return texts


@pytest.mark.parametrize("batch_size", [1, 4])
def test_t5_generation_equals_direct_generate(tiny_t5: Path, batch_size: int) -> None:
    want = _direct(tiny_t5)
    assert len(set(want)) == len(want) and all(want)  # distinct, non-empty texts (the long prompt too)
    backend = HFBackend(ModelSpec("hf", str(tiny_t5), {}), device="cpu", batch_size=batch_size)
    assert backend.backend == "seq2seq"
    reqs = [Request.generate_until(p, {"until": [], "max_gen_toks": MAX_NEW}) for p in PROMPTS]
    assert backend.generate_until(reqs, lambda n: None) == want
