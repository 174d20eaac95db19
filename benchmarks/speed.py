"""Wall time, throughput and peak memory of lm-eval and of pytest-lmeval, side by side.

Each job runs both tools as fresh processes on the same model, data and limit; the table
shows wall time (model loading included, as a user waits for it), tokens per second (the
tokens of the job's requests, the same for both tools, over each tool's wall time),
peak resident memory (GNU time's max RSS), the time ratio ours/lm-eval, and the scores of
both so equal scores can be seen next to the speed. Ours runs with --no-cache so the model
really computes everything.

    python benchmarks/gguf_to_hf.py ~/.cache/pytest-lmeval/smollm2 SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
    python benchmarks/speed.py --model-dir /tmp/smollm2-hf --data-dir ../shared/data --concurrent
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (job name, --tasks, num_fewshot, limit)
JOBS = [
    ("arc_easy 0-shot", "arc_easy", 0, 100),
    ("arc_challenge 25-shot", "arc_challenge", 25, 12),
    ("hellaswag 0-shot", "hellaswag", 0, 100),
    ("mmlu 5-shot", "mmlu", 5, 5),  # 5 questions a subject share its few-shot prefix
    ("lambada_openai", "lambada_openai", 0, 200),
]

COLUMNS = [
    "job", "docs", "tokens", "lm-eval s", "ours s", "ratio", "lm-eval tok/s", "ours tok/s", "lm-eval MiB",
    "ours MiB", "scores",
]  # fmt: skip

_REFERENCE = """
import json, sys
sys.path.insert(0, {here!r})
from pathlib import Path
from lmeval_offline import run_reference
out = run_reference({model_args!r}, [{tasks!r}], num_fewshot={shots}, limit={limit}, batch_size={batch!r},
                    data_dir=Path({data!r}))
json.dump({{"results": out["results"], "n": sum(len(v) for v in out["samples"].values())}}, open({dest!r}, "w"))
"""


def _start(cmd: list[str], timing: Path, env: dict[str, str]) -> subprocess.Popen:
    """The command under GNU time, its output kept beside the timing file."""
    with timing.with_suffix(".log").open("wb") as log:  # the child holds its own copy
        return subprocess.Popen(
            ["/usr/bin/time", "-f", "%e %M", "-o", str(timing), *cmd],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def _timed(cmds: list[list[str]], concurrent: bool) -> list[tuple[float, float]]:
    """(wall seconds, peak RSS in MiB) of each command, by GNU time. Concurrent: all start at
    once with one thread each, so background load hits every tool alike and the ratio holds."""
    env = dict(os.environ)
    if concurrent:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        timings = [Path(tmp) / f"{i}.time" for i in range(len(cmds))]
        if concurrent:
            procs = [_start(c, t, env) for c, t in zip(cmds, timings, strict=True)]
        else:
            procs = []
            for c, t in zip(cmds, timings, strict=True):
                procs.append(_start(c, t, env))
                procs[-1].wait()
        for proc, cmd, t in zip(procs, cmds, timings, strict=True):
            if proc.wait() != 0:
                tail = t.with_suffix(".log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; its output ends:\n{tail}")
        out = []
        for t in timings:
            wall, kib = t.read_text().split()[-2:]
            out.append((float(wall), int(kib) / 1024))
    return out


def _scores(results: dict, tasks: str) -> str:
    row = results.get(tasks) or next(iter(results.values()))
    return " ".join(
        f"{k.split(',')[0]}={v:.4f}" for k, v in row.items() if "," in k and "stderr" not in k and isinstance(v, float)
    )


def run_job(job, model_dir: str, data: Path, batch: str, concurrent: bool) -> dict:
    name, tasks, shots, limit = job
    with tempfile.TemporaryDirectory() as tmp:
        ref_json = Path(tmp) / "ref.json"
        code = _REFERENCE.format(
            here=str(HERE), model_args=f"pretrained={model_dir}", tasks=tasks, shots=shots, limit=limit,
            batch=batch, data=str(data), dest=str(ref_json),
        )  # fmt: skip
        out = Path(tmp) / "ours"
        ours_cmd = [
            sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider", "--no-cache",
            "--tasks", tasks, "--num-fewshot", str(shots), "--limit", str(limit), "--model", f"hf:{model_dir}",
            "--data-dir", str(data), "--output-path", str(out),
        ]  # fmt: skip
        (ref_wall, ref_mem), (ours_wall, ours_mem) = _timed([[sys.executable, "-c", code], ours_cmd], concurrent)
        ref = json.loads(ref_json.read_text())
        ours = json.loads((out / "results.json").read_text())
    # The same requests for both tools: their tokens (context + continuation, as our backend
    # encodes them) over each tool's wall time.
    tokens = ours["engine"]["tokens"]
    return {
        "job": name,
        "docs": ref["n"],
        "requests": ours["engine"]["requests"],
        "tokens": tokens,
        "forward_tokens": ours["engine"]["forward_tokens"],
        "lmeval_s": ref_wall,
        "ours_s": ours_wall,
        "ratio": ours_wall / ref_wall,
        "lmeval_tok_s": tokens / ref_wall,
        "ours_tok_s": tokens / ours_wall,
        "lmeval_mib": ref_mem,
        "ours_mib": ours_mem,
        "lmeval_scores": _scores(ref["results"], tasks),
        "ours_scores": _scores(ours["results"], tasks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--jobs", default=None, help="comma-separated --tasks names of the jobs to run")
    parser.add_argument("--lmeval-batch-size", default="1", help="lm-eval's batch size (its default is 1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--concurrent", action="store_true",
        help="run both tools at once, one thread each (fair ratios on a machine with background load)",
    )  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job's --limit")
    args = parser.parse_args()
    wanted = set(args.jobs.split(",")) if args.jobs else None
    rows = []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---" * len(COLUMNS) + "|")
    for job in JOBS:
        if wanted and job[1] not in wanted:
            continue
        job = (*job[:3], max(1, round(job[3] * args.scale)))
        r = run_job(job, args.model_dir, args.data_dir.resolve(), args.lmeval_batch_size, args.concurrent)
        rows.append(r)
        scores = r["ours_scores"] + " (same)" if r["lmeval_scores"] == r["ours_scores"] else (
            f"DIFFER: lm-eval {r['lmeval_scores']} | ours {r['ours_scores']}"
        )  # fmt: skip
        print(
            f"| {r['job']} | {r['docs']} | {r['tokens']} | {r['lmeval_s']:.1f} | {r['ours_s']:.1f} | {r['ratio']:.2f} "
            f"| {r['lmeval_tok_s']:.0f} | {r['ours_tok_s']:.0f} | {r['lmeval_mib']:.0f} | {r['ours_mib']:.0f} "
            f"| {scores} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
