"""CPU kernels (models/cpu_kernels.py). Linear layers on oneDNN-packed weights while a model
generates: the model computes what it computed before, to float rounding, and unpacked for
scoring exactly what it computed before; an embedding tied to the output projection keeps its
weight; `packed_linear=false` keeps PyTorch's kernel, with the same texts. Grouped-query
attention without copied KV heads: the same logits to the bit, with padding, a cache and
several queries a row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.models.hf import cpu_kernels  # noqa: E402
from pytest_lmeval.models.hf.backend import HFBackend  # noqa: E402
from pytest_lmeval.models.hf.cpu_kernels import PackedLinear  # noqa: E402
from pytest_lmeval.models.hf.kv_cache import cache_argument, returned_cache  # noqa: E402
from pytest_lmeval.models.spec import ModelSpec  # noqa: E402

needs_onednn = pytest.mark.skipif(not cpu_kernels.available(), reason="this PyTorch has no oneDNN packed linear")


def _llama(tied: bool) -> Any:
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def _backend(folder: Path, batch_size: int, **args: Any) -> HFBackend:
    return HFBackend(ModelSpec("hf", str(folder), args), device="cpu", batch_size=batch_size)


@needs_onednn
@pytest.mark.parametrize("tied", [False, True])
def test_packed_model_computes_the_same_logits_and_unpacks_to_the_same_weights(tied: bool) -> None:
    model = _llama(tied)
    ids = torch.randint(0, 300, (3, 17))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        want = model(ids).logits
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    params = sum(p.numel() for p in model.parameters())
    assert cpu_kernels.pack(model) == linears == 2 * 7 + 1  # q k v o gate up down per layer, and the head
    assert all(type(m) is not torch.nn.Linear for m in model.modules())
    with torch.no_grad():
        got = model(ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == params  # shapes are kept for code that reads them
    q = model.model.layers[0].self_attn.q_proj.weight
    assert q.shape == (48, 48) and q.untyped_storage().nbytes() == 4  # the plain copy is freed
    head, embed = model.lm_head.weight, model.model.embed_tokens.weight
    if tied:  # the embedding still looks its rows up in the shared weight
        assert head is embed and embed.untyped_storage().nbytes() == 300 * 48 * 4
    else:
        assert head.untyped_storage().nbytes() == 4 and embed.untyped_storage().nbytes() == 300 * 48 * 4
    assert cpu_kernels.unpack(model) == linears
    assert all(type(m) is not PackedLinear for m in model.modules())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, want)


@needs_onednn
def test_only_float32_linears_on_the_cpu_are_packed() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8).to(torch.bfloat16), torch.nn.ReLU())
    assert cpu_kernels.pack(model) == 1
    assert type(model[0]) is PackedLinear and type(model[1]) is torch.nn.Linear


def test_without_onednn_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    model = _llama(tied=False)
    assert cpu_kernels.pack(model) == 0
    assert type(model.lm_head) is torch.nn.Linear


@needs_onednn
def test_backend_generates_packed_and_scores_plain(tiny_model: Path) -> None:
    packed, plain = _backend(tiny_model, 4), _backend(tiny_model, 4, packed_linear=False)
    pairs = [Request.loglikelihood(f"Q: {q}\nA:", f" {a}") for q, a in [("sky", "blue"), ("grass", "green is it")]]
    want = plain.loglikelihood(pairs, lambda n: None)
    assert packed.loglikelihood(pairs, lambda n: None) == want
    # three rows decode together: PyTorch's head gets blank rows (cpu.py), the packed one none
    reqs = [Request.generate_until(p, {"until": ["\n\n"], "max_gen_toks": 24}) for p in ("one two", "A B C", "the sun")]
    texts = plain.generate_until(reqs, lambda n: None)
    assert all(type(m) is not PackedLinear for m in plain.model.modules())
    assert packed.generate_until(reqs, lambda n: None) == texts
    assert type(packed.model.lm_head) is PackedLinear
    assert packed.loglikelihood(pairs, lambda n: None) == want  # unpacked again: the same numbers
    assert type(packed.model.lm_head) is torch.nn.Linear


def test_grouped_attention_gives_the_same_logits_to_the_bit() -> None:
    model = _llama(tied=False)  # 4 query heads on 2 KV heads
    ids = torch.randint(0, 300, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = mask[2, :7] = 0  # left padding
    more = torch.randint(0, 300, (3, 3))  # three queries a row on the cache, as a draft pass feeds

    def run():
        with torch.no_grad():
            first = model(ids, attention_mask=mask, use_cache=True)
            full = torch.cat([mask, torch.ones_like(more)], dim=1)
            past = {cache_argument(model): returned_cache(first)}
            second = model(more, attention_mask=full, **past)
        return first.logits, second.logits

    want = run()
    assert cpu_kernels.group_attention(model)
    assert model.config._attn_implementation == cpu_kernels.GROUPED_SDPA
    got = run()
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_grouped_attention_leaves_other_implementations() -> None:
    model = _llama(tied=False)
    model.set_attn_implementation("eager")
    assert not cpu_kernels.group_attention(model)
    assert model.config._attn_implementation == "eager"


def test_grouped_attention_hands_what_it_does_not_handle_to_transformers() -> None:
    module = _llama(tied=False).model.layers[0].self_attn
    q, kv = torch.randn(1, 4, 3, 12), torch.randn(1, 2, 3, 12)
    with pytest.raises(ValueError, match="softcap"):  # transformers' sdpa refuses a soft cap; so do we
        cpu_kernels._grouped_sdpa(module, q, kv, kv, None, softcap=30.0)
    bias = torch.zeros(1, 4, 3, 3)
    got, _ = cpu_kernels._grouped_sdpa(module, q, kv, kv, None, position_bias=bias)
    want, _ = cpu_kernels._grouped_sdpa(module, q, kv, kv, None)
    assert torch.allclose(got, want, atol=1e-6)  # a zero bias on a causal pass: the same attention


def _resident_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@needs_onednn
@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux's /proc/self/smaps")
def test_packing_hands_back_the_pages_of_weights_it_frees_from_the_mapped_file(tmp_path: Path) -> None:
    """The weights transformers maps from model.safetensors: once packed, the freed ones' pages
    leave the process, and the weights still in use (the tied embedding) read what they read."""
    config = transformers.LlamaConfig(
        vocab_size=2000, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 2000, (2, 9))
    with torch.no_grad():
        want = model(ids).logits  # every weight read: all of the file's pages resident
    file = (tmp_path / "model.safetensors").resolve()
    before = _resident_kib(file)
    layers = [m.weight.numel() * 4 for m in model.model.layers.modules() if type(m) is torch.nn.Linear]
    cpu_kernels.pack(model)
    # what remains resident: the embedding (also the head) and the norms, and at most one
    # page at either end of each freed weight
    assert before - _resident_kib(file) >= (sum(layers) - 2 * 4096 * len(layers)) // 1024
    assert torch.equal(model.model.embed_tokens.weight, weights["model.embed_tokens.weight"])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, want, atol=1e-5)
    cpu_kernels.unpack(model)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
