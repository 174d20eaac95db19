"""Write tests/data/lmeval_reference.json: lm-eval's per-document answers on SmolLM2-135M.

The end-to-end tests compare ours against this file within 1e-4 per request, so CI checks
parity without running lm-eval. Regenerate after changing a task or the reference version:

    python benchmarks/reference_fixture.py --model-dir DIR --gguf SmolLM2-135M-Instruct.Q4_1.gguf \
        --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# (task, num_fewshot, limit): small, so the test stays fast on CPU
CASES = [("arc_easy", 0, 6), ("mmlu_anatomy", 5, 4), ("hellaswag", 0, 4), ("boolq", 0, 3)]


def main() -> int:
    from lmeval_offline import run_reference

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    out = {"lm_eval_version": version("lm-eval"), "model": args.gguf, "cases": []}
    for task, shots, limit in CASES:
        ref = run_reference(
            f"pretrained={args.model_dir},gguf_file={args.gguf}", [task], num_fewshot=shots, limit=limit,
            batch_size=1, data_dir=args.data_dir,
        )  # fmt: skip
        samples = [
            {"doc_id": s["doc_id"], "lls": [float(r[0][0]) for r in s["resps"]],
             "greedy": [str(r[0][1]) == "True" for r in s["resps"]],
             "context": s["arguments"][0][0]}
            for s in ref["samples"][task]
        ]  # fmt: skip
        metrics = {k: v for k, v in ref["results"][task].items() if "," in k}
        out["cases"].append(
            {"task": task, "num_fewshot": shots, "limit": limit, "samples": samples, "metrics": metrics}
        )
    path = HERE.parent / "tests" / "data" / "lmeval_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
