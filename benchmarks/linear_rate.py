"""The fastest a causal LM's linear layers run on this machine: the arithmetic floor of scoring.

Every forward token goes through each decoder layer's linear layers (attention projections and
MLP), and every scored position through the output projection as well. This times exactly
that work with PyTorch's own kernel (what both lm-eval and pytest-lmeval score with) for
M tokens at once, on the real weights, and prints tokens per second and GFLOP/s by M. The
best rate sets a floor under any job's model time:

    forward tokens / body rate + scored positions / head rate

however the tokens are batched or shared; attention, norms and activations come on top.
speed.py's table gives each job's forward tokens.

    python benchmarks/linear_rate.py --model-dir /tmp/smollm2-hf --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def _timed(linears: list[torch.nn.Linear], inputs: dict[int, torch.Tensor], rounds: int) -> float:
    """Seconds one pass of these layers over the inputs takes, the best of `rounds`."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for layer in linears:
            F.linear(inputs[layer.in_features], layer.weight, layer.bias)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="64,128,256,512,1024,2048", help="tokens per pass (M)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    head = model.get_output_embeddings()
    body = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    body_flops = 2 * sum(m.in_features * m.out_features for m in body)
    head_flops = 2 * head.in_features * head.out_features
    print(
        f"{len(body)} linear layers, {body_flops / 2e6:.1f}M weights: {body_flops / 1e6:.0f} MFLOP a forward token; "
        f"output projection {head_flops / 1e6:.0f} MFLOP a scored position; {args.threads} thread(s)"
    )
    print("| M | body tok/s | body GFLOP/s | head positions/s |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for m in (int(s) for s in args.sizes.split(",")):
            inputs = {n: torch.randn(m, n) * 0.1 for n in {layer.in_features for layer in body + [head]}}
            _timed(body + [head], inputs, 1)  # first touch of the weights and kernel set-up
            seconds = _timed(body, inputs, args.rounds)
            head_seconds = _timed([head], inputs, args.rounds)
            print(f"| {m} | {m / seconds:.0f} | {body_flops * m / seconds / 1e9:.1f} | {m / head_seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
