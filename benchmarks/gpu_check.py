"""GPU check of the HF backend, for a machine with CUDA (run by hand on a lent GPU).

Builds a randomly initialised model with SmolLM2-135M's architecture and tokenizer (the
weights are too large to carry; speed and agreement do not depend on their values), then on
real prompts (ARC-Easy 0-shot, ARC-Challenge 25-shot, MMLU 5-shot) measures:
- the plain lm-eval-identical path vs shared-prefix reuse: time and max |Δ log-likelihood|;
- fixed batch 1 (lm-eval's default) vs the auto token budget;
- a tiny model's log-likelihoods on GPU vs the ones computed on CPU (--cpu-reference).

    python benchmarks/gpu_check.py --model-config DIR --data-dir DIR [--tiny DIR --cpu-reference F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.models.hf.backend import HFBackend  # noqa: E402
from pytest_lmeval.models.spec import ModelSpec  # noqa: E402
from pytest_lmeval.tasks.registry import Registry  # noqa: E402
from pytest_lmeval.tasks.task import Task  # noqa: E402

JOBS = [("arc_easy", 0, 300), ("arc_challenge", 25, 60), ("mmlu_high_school_psychology", 5, 150)]


def build_random(config_dir: Path, out: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def requests_for(data: Path, jobs=JOBS):
    reg = Registry.scan([ROOT / "evals"])
    out = {}
    for name, shots, limit in jobs:
        task = Task(reg.tasks[name], data_dir=data, num_fewshot=shots, limit=limit)
        out[name] = [r for i in range(len(task.docs)) for r in task.build(i).requests]
    return out


def timed(backend: HFBackend, reqs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    res = backend.loglikelihood(reqs, lambda n: None)
    torch.cuda.synchronize()
    return time.perf_counter() - start, res


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-config", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tiny", type=Path, default=None)
    parser.add_argument("--cpu-reference", type=Path, default=None, help="JSON of CPU lls for the tiny model")
    parser.add_argument("--write-cpu-reference", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    tiny_jobs = [("arc_easy", 0, 40), ("mmlu_anatomy", 2, 20)]
    if args.write_cpu_reference:  # run here on CPU: the tiny model's answers for later comparison
        backend = HFBackend(ModelSpec("hf", str(args.tiny), {}), device="cpu", batch_size=1)
        reqs = requests_for(args.data_dir, tiny_jobs)
        lls = {k: [r[0] for r in backend.loglikelihood(v, lambda n: None)] for k, v in reqs.items()}
        args.write_cpu_reference.write_text(json.dumps(lls))
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.tiny and args.cpu_reference:
        ref = json.loads(args.cpu_reference.read_text())
        backend = HFBackend(ModelSpec("hf", str(args.tiny), {}), device="cuda", batch_size="auto")
        reqs = requests_for(args.data_dir, tiny_jobs)
        report["tiny_gpu_vs_cpu_max_abs_diff"] = max(
            abs(a[0] - b)
            for k, v in reqs.items()
            for a, b in zip(backend.loglikelihood(v, lambda n: None), ref[k], strict=True)
        )
    model_dir = build_random(args.model_config, Path("/tmp/rand_smollm2"))
    reqs = requests_for(args.data_dir)
    for name, job_reqs in reqs.items():
        row = {"requests": len(job_reqs)}
        results = {}
        for label, bs, reuse in [("plain_bs1", 1, False), ("plain_auto", "auto", False), ("reuse_auto", "auto", True)]:
            backend = HFBackend(ModelSpec("hf", str(model_dir), {"prefix_reuse": reuse}), device="cuda", batch_size=bs)
            timed(backend, job_reqs[:8])  # warm-up
            backend.scorer.forward_tokens = 0
            seconds, res = timed(backend, job_reqs)
            row[f"{label}_s"] = round(seconds, 3)
            row[f"{label}_tokens"] = backend.scorer.forward_tokens
            results[label] = res
        base = results["plain_bs1"]
        for label in ("plain_auto", "reuse_auto"):
            row[f"{label}_max_abs_diff"] = max(abs(a[0] - b[0]) for a, b in zip(results[label], base, strict=True))
            row[f"{label}_greedy_flips"] = sum(a[1] != b[1] for a, b in zip(results[label], base, strict=True))
        report[name] = row
        print(name, row, flush=True)
    # Generation: greedy texts must not depend on the batch size.
    prompts = [r.args[0] for r in reqs["arc_easy"][::4][:64]]
    gen_reqs = [Request.generate_until(p, {"until": ["\n"], "max_gen_toks": 32}) for p in prompts]
    texts = {}
    for bs in (1, "auto"):
        backend = HFBackend(ModelSpec("hf", str(model_dir), {}), device="cuda", batch_size=bs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        texts[bs] = backend.generate_until(gen_reqs, lambda n: None)
        torch.cuda.synchronize()
        report[f"generate_bs{bs}_s"] = round(time.perf_counter() - start, 3)
    report["generate_texts_equal"] = sum(a == b for a, b in zip(texts[1], texts["auto"], strict=True))
    report["generate_requests"] = len(gen_reqs)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
