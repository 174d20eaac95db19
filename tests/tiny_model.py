"""A tiny random causal LM with a real byte-level BPE tokenizer, saved as a local folder.

Built in seconds from nothing on disk, so fast tests exercise the real transformers loading
and scoring code (`hf:/path/to/folder`) without any download.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Question: What is the capital of France?\nAnswer: Paris",
    "The quick brown fox jumps over the lazy dog.",
    "A B C D yes no true false the a an of to in is it that",
    "Science questions about plants, animals, water, energy and the sun.",
]


def build_tiny_model(folder: Path, *, seed: int = 0, vocab_size: int = 400, head_dim: int = 8) -> Path:
    """`head_dim=32` for vLLM's CPU build, whose attention takes no head narrower than 32."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=4 * head_dim if head_dim == 8 else 2 * head_dim,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4 if head_dim == 8 else 2,
        num_key_value_heads=2 if head_dim == 8 else 1,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
