"""Fast generation gives the texts of the plain path (transformers `generate`, one prompt at a
time), text for text: continuous batching (rows leave at their stop, waiting rows join), a
memory-sized batch, and a shared few-shot prefix prefilled once or not at all. On the tiny
random model, and on the real SmolLM2-135M for a few gsm8k and gsm8k_cot documents.
No timing here: speed is measured in benchmarks/speed.py and benchmarks/continuous_batching.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.models.hf import generate as hf_generate  # noqa: E402
from pytest_lmeval.models.hf.backend import HFBackend  # noqa: E402
from pytest_lmeval.models.hf.prefix_plan import generation_prefixes  # noqa: E402
from pytest_lmeval.models.spec import ModelSpec  # noqa: E402

MIRROR = Path(__file__).parent / "data" / "mirror" / "openai" / "gsm8k" / "main"
FEWSHOT = "Question: What is the capital of France?\nAnswer: Paris\n\n" * 12  # ~200 tokens
TAILS = ["The quick brown", "Science questions", "water", "Paris and the", "A B C D", "the sun", "energy", "yes no"]
UNTIL = ["ow D", "EE", " What", "\n\n"]


def _backend(folder: Path | str, batch_size: int | str, **args: Any) -> HFBackend:
    return HFBackend(ModelSpec("hf", str(folder), args), device="cpu", batch_size=batch_size)


def _plain(backend: HFBackend, reqs: list[Request], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The previous path: transformers' generate, one request at a time."""
    with monkeypatch.context() as m:
        m.setattr(hf_generate, "_decodes_itself", lambda *a: False)
        return [text for req in reqs for text in backend.generate_until([req], lambda n: None)]


def test_generation_prefixes_group_prompts_by_their_shared_block() -> None:
    block = tuple(range(100, 140))
    rows = [block + (1, 2), block + (3,), (7,) * 50, block + (1, 5, 6)]
    got = generation_prefixes(rows, min_saved=32)
    assert [n for n, _ in got] == [40, 40, 0, 40]  # one token short of the shortest: 41 - 1
    assert got[0][1] == got[1][1] == got[3][1] != got[2][1]
    assert [n for n, _ in generation_prefixes(rows[:2], min_saved=1000)] == [0, 0]  # saves too little
    # a block every prompt shares splits no batch: the lower threshold applies to it alone
    assert [n for n, _ in generation_prefixes(rows[:2], min_saved=1000, min_saved_whole=32)] == [40, 40]
    assert [n for n, _ in generation_prefixes(rows, min_saved=1000, min_saved_whole=32)] == [0, 0, 0, 0]


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("batch_size", [3, "auto"])
def test_continuous_batches_equal_one_at_a_time(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int | str, reuse: bool
) -> None:
    reqs = [Request.generate_until(FEWSHOT + "Question: " + t, {"until": UNTIL, "max_gen_toks": 40}) for t in TAILS]
    reqs.append(Request.generate_until("A B C", {"until": UNTIL, "max_gen_toks": 40}))  # no shared block
    want = _plain(_backend(tiny_model, 1), reqs, monkeypatch)
    assert len(set(want)) > 3  # the rows do write different texts, stopping at different points
    backend = _backend(tiny_model, batch_size, prefix_reuse=reuse)
    rows: list[int] = []
    backend.model.register_forward_pre_hook(
        lambda _m, args, kwargs: rows.append(int((args[0] if args else kwargs["input_ids"]).shape[0])),
        with_kwargs=True,
    )
    assert backend.generate_until(reqs, lambda n: None) == want
    if batch_size == 3:
        assert max(rows) == 3  # never more rows than the batch size, so rows joined as others left
    counts = backend.token_counts()
    if reuse:  # the few-shot block ran once, not once per prompt
        assert counts["forward_tokens"] < counts["tokens"] - (len(TAILS) - 2) * len(FEWSHOT) // 4


def test_a_gpus_tuning_generates_the_same_texts(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device-neutral decoder with a GPU's numbers (no padded output products, drafts
    weighed against a GPU's pass cost, up to 256 rows) writes the CPU's texts."""
    from pytest_lmeval.models.hf.tuning import Tuning

    reqs = [Request.generate_until(FEWSHOT + "Question: " + t, {"until": UNTIL, "max_gen_toks": 24}) for t in TAILS]
    want = _backend(tiny_model, "auto").generate_until(reqs, lambda n: None)
    backend = _backend(tiny_model, "auto", packed_linear=False)
    backend.tuning = Tuning(backend.device)
    monkeypatch.setattr(backend.tuning, "kv_budget", lambda: 1 << 30)  # no CUDA to ask
    assert backend.generate_until(reqs, lambda n: None) == want


def test_decoder_batch_is_sized_by_kv_memory(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for two rows' KV cache, two rows decode together, whatever the batch size."""
    from pytest_lmeval.models.hf.kv_cache import kv_bytes_per_token

    backend = _backend(tiny_model, 64)
    per_row = kv_bytes_per_token(backend.model) * (len(backend.tok_encode(FEWSHOT)) + 8 + 20)
    monkeypatch.setattr(backend.tuning, "kv_budget", lambda: 2 * per_row)
    rows: list[int] = []
    backend.model.register_forward_pre_hook(
        lambda _m, args, kwargs: rows.append(int((args[0] if args else kwargs["input_ids"]).shape[0])),
        with_kwargs=True,
    )
    reqs = [Request.generate_until(FEWSHOT + t, {"until": [], "max_gen_toks": 20}) for t in TAILS[:5]]
    backend.generate_until(reqs, lambda n: None)
    assert max(rows) == 2


# -- the real model --------------------------------------------------------------------------


def _rows(split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (MIRROR / f"{split}.jsonl").read_text().splitlines() if line.strip()]


def _gsm8k_requests(docs: int, max_toks: int) -> list[Request]:
    """gsm8k 5-shot ("Question:/Answer:") and an 8-shot chain-of-thought layout ("Q:/A:"),
    built from the test mirror's rows as the tasks build them."""
    train, test = _rows("train"), _rows("test")[:docs]
    five = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in train[:5])
    eight = "".join(f"Q: {d['question']}\nA: {d['answer'].split('####')[-1].strip()}\n\n" for d in train[:8])
    stops = ["</s>", "<|im_end|>"]
    return [
        *[
            Request.generate_until(
                five + f"Question: {d['question']}\nAnswer:", {"until": ["Question:", *stops], "max_gen_toks": max_toks}
            )
            for d in test
        ],
        *[
            Request.generate_until(
                eight + f"Q: {d['question']}\nA:", {"until": ["Q:", "\n\n", *stops], "max_gen_toks": max_toks}
            )
            for d in test
        ],
    ]


def test_smollm2_gsm8k_texts_equal_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real SmolLM2 (loaded from its one-time GGUF conversion): 2 gsm8k and 2 gsm8k_cot
    documents, 24 tokens each, batched with and without prefix reuse and prompt lookup, text
    for text."""
    from real_model import GGUF, smollm2_dir

    folder = smollm2_dir()
    reqs = _gsm8k_requests(2, 24)
    plain = _backend(folder, 1, gguf_file=GGUF)
    want = _plain(plain, reqs, monkeypatch)
    assert all(want)
    for reuse, lookup in ((True, 8), (False, 8), (True, 0)):
        plain.scorer.prefix_reuse = reuse  # the same loaded model, batched as `auto` would
        plain.prompt_lookup = lookup
        plain.batch_size = "auto"
        assert plain.generate_until(reqs, lambda n: None) == want, (reuse, lookup)
    assert plain.token_counts()["draft_tokens_kept"] > 0


# -- GGUF start-up ---------------------------------------------------------------------------

_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _write_gguf(tiny_model: Path, out: Path) -> Path:
    """The tiny Llama as a float32 GGUF file with its BPE tokenizer (what transformers' GGUF
    loader reads: llama hyper-parameters, gpt2-style tokens and merges, tensors by GGUF name).
    Its q/k weights come back permuted, so it is another random model, which is all we need."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    c = model.config
    out.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out / "tiny.gguf"), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(c.vocab_size)
    spec = json.loads(tok.backend_tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(spec["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t == tok.eos_token else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    top = {"model.embed_tokens.weight": "token_embd", "model.norm.weight": "output_norm", "lm_head.weight": "output"}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        name = top.get(key) or f"blk.{parts[2]}.{_GGUF_NAMES['.'.join(parts[3:-1])]}"
        w.add_tensor(f"{name}.weight", value.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_gguf_converted_once_scores_and_writes_the_same(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write_gguf(tiny_model, tmp_path / "gguf")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reqs = [Request.loglikelihood(FEWSHOT[:60], " Paris"), Request.loglikelihood("The quick brown", " fox jumps")]
    gens = [Request.generate_until(FEWSHOT + t, {"until": UNTIL, "max_gen_toks": 24}) for t in TAILS[:3]]
    got = []
    for expect in ("gguf", "gguf conversion", "gguf conversion"):
        backend = _backend(folder, 4, gguf_file="tiny.gguf")
        assert backend.info()["loaded_from"] == expect
        got.append((backend.loglikelihood(reqs, lambda n: None), backend.generate_until(gens, lambda n: None)))
    assert got[0] == got[1] == got[2]
    assert len(list((tmp_path / "cache" / "pytest-lmeval" / "converted").iterdir())) == 1


def test_out_of_memory_retries_with_fewer_rows(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoding pass of more than two rows runs out of memory: the rows are decoded again,
    fewer at a time, with the same texts, and progress counts each document once."""
    from pytest_lmeval.models.hf import decode as hf_decode

    reqs = [Request.generate_until(FEWSHOT + "Question: " + t, {"until": UNTIL, "max_gen_toks": 16}) for t in TAILS]
    want = _backend(tiny_model, 8).generate_until(reqs, lambda n: None)
    real = hf_decode.Decoder._forward

    def forward(self, ids, *args, **kwargs):
        if ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(hf_decode.Decoder, "_forward", forward)
    counted: list[int] = []
    assert _backend(tiny_model, 8).generate_until(reqs, counted.append) == want
    assert sum(counted) == len(reqs)


# -- prompt lookup ---------------------------------------------------------------------------


def test_prompt_lookup_drafts_what_followed_the_last_ngram(tiny_model: Path) -> None:
    from pytest_lmeval.models.hf import decode as hf_decode

    backend = _backend(tiny_model, 4)
    decoder = hf_decode.Decoder(
        backend.model, backend.tokenizer, until=[], max_toks=20, max_rows=4, budget_bytes=1 << 30,
        prefix_reuse=False, min_saved=0, lookup=3,
    )  # fmt: skip
    row = hf_decode._Row(0, [5, 6, 7, 8, 9, 5, 6, 7, 1, 2, 5, 6], 0, 0)
    assert decoder._draft(row) == [7, 1, 2]  # the last "5 6" was followed by "7 1 2"
    row.generated = [7]
    assert decoder._draft(row) == [1, 2, 5]  # "5 6 7" last came before "1 2 5"
    row.generated = [7, 4]
    assert decoder._draft(row) == []  # "4" never came before
    row.generated = [7] + [3] * 18
    assert decoder._draft(row) == []  # no room: the next token is the 20th


@pytest.mark.parametrize("batch_size", [1, 3])
def test_prompt_lookup_keeps_the_texts(tiny_model: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    """Drafts are kept only where they equal the greedy token: the texts are those of the plain
    path, and the run says how many draft tokens it fed and kept."""
    echo = "one two three four five six seven eight nine ten " * 6
    reqs = [Request.generate_until(echo + t, {"until": UNTIL, "max_gen_toks": 40}) for t in TAILS[:5]]
    want = _plain(_backend(tiny_model, 1), reqs, monkeypatch)
    off = _backend(tiny_model, batch_size, prompt_lookup=0)
    assert off.generate_until(reqs, lambda n: None) == want
    assert "draft_tokens" not in off.token_counts()
    on = _backend(tiny_model, batch_size)
    assert on.generate_until(reqs, lambda n: None) == want
    counts = on.token_counts()
    assert 0 < counts["draft_tokens_kept"] < counts["draft_tokens"]
