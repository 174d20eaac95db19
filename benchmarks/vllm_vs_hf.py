"""vLLM against transformers on the same model and documents: speed and per-document agreement.

Runs the user's command twice (or more), `pytest evals --tasks T --limit N` with `--model hf:M`
and `--model vllm:M`, without the response cache, and compares the per-document samples:

    python benchmarks/vllm_vs_hf.py --model Qwen/Qwen2.5-0.5B --data-dir ../shared/data \
        [--tasks arc_easy] [--limit 500] [--hf-args dtype=bfloat16] \
        [--vllm-args dtype=bfloat16 --vllm-args dtype=bfloat16,shared_context=false]

With `--lmeval-vllm ARGS`, lm-eval's own `--model vllm` runs the same tasks and documents too
(benchmarks/lmeval_offline.py, `pretrained=MODEL,ARGS`), compared with our first vLLM run.

Prints, per run, the wall time of the whole process (model loading included) and, for ours, the
engine's model time from results.json; per task and vLLM run, the largest and mean per-document
max |Δ log-likelihood| against hf, the greedy flags that differ, the generated texts that differ,
and the metrics side by side. Everything is also written to OUT/summary.json. Needs vLLM: its
GPU build (`pip install vllm`), or its CPU build (README, "vLLM"):

    python benchmarks/vllm_vs_hf.py --model /tmp/smollm2-hf --data-dir /tmp/mirror \
        --tasks arc_easy --limit 100 --hf-args dtype=float32 \
        --vllm-args dtype=float32,max_model_len=2048,enforce_eager=true \
        --lmeval-vllm dtype=float32,max_model_len=2048,enforce_eager=True,kv_cache_memory_bytes=4294967296
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, model: str, args: str, opts: argparse.Namespace) -> dict:
    out = Path(opts.out) / name
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider", "--no-cache",
        "--tasks", opts.tasks, "--limit", str(opts.limit), "--model", model, "--data-dir", opts.data_dir,
        "--output-path", str(out), "--log-samples",
    ]  # fmt: skip
    if opts.gen_kwargs:
        cmd += ["--gen-kwargs", opts.gen_kwargs]
    if args:
        cmd += ["--model-args", args]
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} run failed with exit code {proc.returncode}")
    results = json.loads((out / "results.json").read_text())
    samples: dict[str, dict[int, list[tuple[float, bool]]]] = {}
    for path in sorted((out / "samples").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        samples[path.stem] = {r["doc_id"]: [_answer(x[0]) for x in r["resps"]] for r in rows}
    return {
        "wall_s": round(wall, 2),
        "model_s": results["engine"].get("model_seconds"),
        "results": results["results"],
        "samples": samples,
    }


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _answer(resp: object) -> object:
    """A log-likelihood answer as (float, greedy), a generated text as it is."""
    if isinstance(resp, str):
        return resp
    return (float(resp[0]), resp[1] in (True, "True"))


def lmeval_vllm(opts: argparse.Namespace) -> dict:
    """lm-eval's own --model vllm on the same tasks and documents, timed as a whole process."""
    out = Path(opts.out) / "lmeval_vllm.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "lmeval_offline.py"), "--model", "vllm", "--model-args",
        f"pretrained={opts.model},{opts.lmeval_vllm}", "--tasks", opts.tasks, "--limit", str(opts.limit),
        "--batch-size", "auto", "--data-dir", opts.data_dir, "--output", str(out),
    ]  # fmt: skip
    if opts.gen_kwargs:
        cmd += ["--gen-kwargs", opts.gen_kwargs]
    print(f"== lmeval-vllm: {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise SystemExit("lm-eval's vllm run failed")
    wall = time.perf_counter() - started
    data = json.loads(out.read_text())
    samples = {
        task: {s["doc_id"]: [_answer(r[0]) for r in s["resps"]] for s in rows} for task, rows in data["samples"].items()
    }
    return {"wall_s": round(wall, 2), "model_s": None, "results": data["results"], "samples": samples}


def compare(base: dict, other: dict) -> dict:
    out = {}
    for task, docs in base["samples"].items():
        per_doc = []
        flips = texts = 0
        for doc_id, answers in docs.items():
            theirs = other["samples"][task][doc_id]
            if isinstance(answers[0], str):
                texts += sum(a != b for a, b in zip(answers, theirs, strict=True))
                continue
            per_doc.append(max(abs(a[0] - b[0]) for a, b in zip(answers, theirs, strict=True)))
            flips += sum(a[1] != b[1] for a, b in zip(answers, theirs, strict=True))
        out[task] = {
            "docs": len(docs),
            "max_abs_dll": max(per_doc) if per_doc else None,
            "mean_doc_max_abs_dll": sum(per_doc) / len(per_doc) if per_doc else None,
            "greedy_flips": flips,
            "texts_differing": texts,
            "metrics_hf": {k: v for k, v in base["results"][task].items() if "," in k and _number(v)},
            "metrics_vllm": {k: v for k, v in other["results"][task].items() if "," in k and _number(v)},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder or hub name, as after hf: / vllm:")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tasks", default="arc_easy")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--hf-args", default="")
    parser.add_argument("--vllm-args", action="append", default=None, help="repeat for several vLLM runs")
    parser.add_argument("--gen-kwargs", default="", help="for generation tasks, e.g. max_gen_toks=64")
    parser.add_argument("--lmeval-vllm", default="", help="also run lm-eval's --model vllm with these model args")
    parser.add_argument("--out", default="reports/vllm_vs_hf")
    opts = parser.parse_args()
    Path(opts.out).mkdir(parents=True, exist_ok=True)

    runs = {"hf": run("hf", f"hf:{opts.model}", opts.hf_args, opts)}
    for i, args in enumerate(opts.vllm_args or [""]):
        runs[f"vllm{i or ''}"] = run(f"vllm{i or ''}", f"vllm:{opts.model}", args, opts)
    if opts.lmeval_vllm:
        runs["lmeval-vllm"] = lmeval_vllm(opts)

    summary: dict = {"model": opts.model, "tasks": opts.tasks, "limit": opts.limit, "runs": {}}
    print(f"\n{'run':<8} {'model args':<40} {'wall s':>8} {'model s':>8}")
    for name, res in runs.items():
        args = {"hf": opts.hf_args, "lmeval-vllm": opts.lmeval_vllm}.get(name)
        args = args if args is not None else (opts.vllm_args or [""])[int(name[4:] or 0)]
        print(f"{name:<8} {args or '-':<40} {res['wall_s']:>8.1f} {res['model_s'] or 0:>8.1f}")
        summary["runs"][name] = {"model_args": args, "wall_s": res["wall_s"], "model_s": res["model_s"]}
    for name, res in runs.items():
        if name == "hf":
            continue
        base = "vllm" if name == "lmeval-vllm" else "hf"  # lm-eval's vLLM against ours
        diff = compare(runs[base], res)
        summary["runs"][name][f"vs_{base}"] = diff
        for task, d in diff.items():
            dll = f"max |dll| {d['max_abs_dll']:.2e}, " if d["max_abs_dll"] is not None else ""
            print(
                f"{name} vs {base}, {task}: {d['docs']} docs, {dll}greedy flips {d['greedy_flips']}, "
                f"texts differing {d['texts_differing']}"
            )
            for key, value in d["metrics_hf"].items():
                print(f"    {key:<24} {base} {value:.4f}   {name} {d['metrics_vllm'].get(key, float('nan')):.4f}")
    path = Path(opts.out) / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
