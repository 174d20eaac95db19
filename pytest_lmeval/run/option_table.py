"""The command line's options (each also settable as an `lmeval_*` ini key): our spellings
and lm-eval's (`--model_args`, `--num_fewshot`, ...) as names of the same options."""

from __future__ import annotations

import pytest

# (flags: ours, then lm-eval's spelling where it differs; ini/dest name; help)
_OPTIONS = [
    (("--model",), "model", "model to evaluate as BACKEND:NAME (hf:EleutherAI/pythia-160m, hf:/path)"),
    (("--model-args", "--model_args"), "model_args", "comma-separated k=v passed to the backend / from_pretrained"),
    (("--device",), "device", "device for the model (cuda, cuda:1, cpu); default: cuda if present"),
    (
        ("--batch-size", "--batch_size"),
        "batch_size",
        "requests per forward pass, or 'auto' (default: auto; lm-eval's auto:N is auto)",
    ),
    (("--tasks",), "tasks", "tasks, groups, tags or wildcards, comma-separated; 'list' lists them"),
    (("--num-fewshot", "--num_fewshot"), "num_fewshot", "few-shot examples per prompt (default: the task's own)"),
    (("--limit",), "limit", "first N documents per task, or a fraction (0.1) of each task"),
    (("--seed",), "seed", "seed of the few-shot sampler (default 1234, as lm-eval); lm-eval's four seeds A,B,C,D: D"),
    (("--data-dir",), "data_dir", "offline data mirror folder (also LMEVAL_DATA_DIR)"),
    (("--output-path", "--output_path"), "output_path", "output folder (default reports/<model>/<timestamp>/)"),
    (("--include-path", "--include_path"), "include_path", "extra folder(s) of task YAML, os.pathsep-separated"),
    (("--gates",), "gates", "YAML file of gates: per task and metric a min, max, or reference + rel_tol"),
    (("--baseline",), "baseline", "an earlier run's output folder (or its results.json) to compare with, paired"),
    (("--max-drop",), "max_drop", "baseline gate: largest allowed drop, in points (1.0 = 1 percentage point)"),
    (("--alpha",), "alpha", "baseline gate: significance level of the paired test (default 0.05)"),
    (("--cache-dir", "--use_cache"), "cache_dir", "response cache folder (default ~/.cache/pytest-lmeval)"),
    (
        ("--gen-kwargs", "--gen_kwargs"),
        "gen_kwargs",
        "generation arguments k=v,... (temperature=0.8,top_p=0.95,do_sample=true)",
    ),
    (
        ("--system-instruction", "--system_instruction"),
        "system_instruction",
        "system instruction put before every prompt",
    ),
    (
        ("--perturb",),
        "perturb",
        "add one item per document and perturbation: typos,lowercase,... or robustness; dialect,names,... or fairness",
    ),
    (
        ("--toxicity-model",),
        "toxicity_model",
        "toxicity classifier for generated text, hf:NAME (hf:unitary/toxic-bert): HELM's toxic fraction",
    ),
    (("--run-file",), "run_file", "YAML file of the run: its tasks with per-task settings, and run options"),
    (
        ("--judge-model",),
        "judge_model",
        "judge model for judged metrics, as BACKEND:NAME (local-chat-completions:gpt-4o)",
    ),
    (("--judge-model-args",), "judge_model_args", "comma-separated k=v for the judge's backend (base_url=...)"),
    (("--judge-concurrency",), "judge_concurrency", "judge requests sent at once (default 4)"),
    (("--judge-strategy",), "judge_strategy", "rule, llm, llm_recall or auto (default: auto, the benchmark decides)"),
    (
        ("--samples",),
        "samples",
        'exactly these documents of each task, as lm-eval: JSON {"task": [doc ids]} or a JSON file (not with --limit)',
    ),
]
# lm-eval's switches (ours, then lm-eval's spelling; ini/dest name; help)
_SWITCHES = [
    (
        ("--predict-only", "--predict_only"),
        "predict_only",
        "answer every document and log the samples, score nothing (implies --log-samples)",
    ),
    (("--write-out", "--write_out"), "write_out", "print each task's first document's prompt and target, then run"),
    (("--show-config", "--show_config"), "show_config", "print each task's resolved configuration, then run"),
]
# Plain run options a run file may set (the command line wins over it, it wins over the ini file).
RUN_FILE_OPTIONS = (
    "model", "model_args", "device", "batch_size", "num_fewshot", "limit", "seed", "gen_kwargs",
    "system_instruction", "judge_model", "judge_model_args", "judge_concurrency", "judge_strategy", "toxicity_model",
)  # fmt: skip


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmeval", "language-model evaluation (pytest-lmeval)")
    for flags, dest, help_text in _OPTIONS:
        group.addoption(*flags, dest=f"lmeval_{dest}", default=None, help=help_text)
        parser.addini(f"lmeval_{dest}", help_text, default=None)
    group.addoption(
        "--log-samples",
        "--log_samples",
        dest="lmeval_log_samples",
        action="store_true",
        default=None,
        help="write samples/<task>.jsonl with every document's prompt, answers and scores",
    )
    parser.addini("lmeval_log_samples", "write per-document samples", type="bool", default=False)
    for flags, dest, help_text in _SWITCHES:
        group.addoption(*flags, dest=f"lmeval_{dest}", action="store_true", default=None, help=help_text)
        parser.addini(f"lmeval_{dest}", help_text, type="bool", default=False)
    group.addoption(
        "--item-outcome",
        dest="lmeval_item_outcome",
        choices=("scored", "correct"),
        default=None,
        help="'scored' (default): an item passes when scored; 'correct': it fails when wrong",
    )
    parser.addini("lmeval_item_outcome", "scored or correct", default=None)
    group.addoption(
        "--no-cache", dest="lmeval_no_cache", action="store_true", default=False,
        help="neither read nor write the response cache",
    )  # fmt: skip
    group.addoption(
        "--refresh-cache", dest="lmeval_refresh_cache", action="store_true", default=False,
        help="recompute every request and overwrite its cached answer",
    )  # fmt: skip
    group.addoption(
        "--ignore-errors", dest="lmeval_ignore_errors", action="store_true", default=None,
        help="when the backend gives up on a request, fail only the documents that asked and "
        "score the rest (default: stop there and report the run as partial)",
    )  # fmt: skip
    parser.addini("lmeval_ignore_errors", "go on past requests the backend gives up on", type="bool", default=False)
    group.addoption(
        "--apply-chat-template", "--apply_chat_template", "--chat-template", dest="lmeval_apply_chat_template",
        nargs="?", const=True, default=None, metavar="NAME|FILE|JINJA",
        help="render prompts with the model's chat template (optionally the named one), or with your own "
        "Jinja template: a file (.jinja) or the template text",
    )  # fmt: skip
    parser.addini("lmeval_apply_chat_template", "true, or the name of the chat template to apply", default=None)
    group.addoption(
        "--fewshot-as-multiturn", "--fewshot_as_multiturn", dest="lmeval_fewshot_as_multiturn", nargs="?",
        const="true", default=None, metavar="BOOL",
        help="few-shot examples as separate chat turns (default: true with a chat template)",
    )  # fmt: skip
    parser.addini("lmeval_fewshot_as_multiturn", "few-shot examples as chat turns", default=None)
    group.addoption(
        "--threshold", dest="lmeval_threshold", action="append", default=None,
        help="gate TASK:METRIC>=VALUE (or <=); repeatable",
    )  # fmt: skip
    parser.addini("lmeval_threshold", "gates TASK:METRIC>=VALUE", type="linelist", default=[])
    group.addoption(
        "--task-args", dest="lmeval_task_args", action="append", default=None,
        help="per-task settings: JSON {task: {num_fewshot, limit, fewshot_seed, gen_kwargs, system_prompt, "
        "chat_template, subset_list, filters}} or TASK:key=value;key=value; repeatable",
    )  # fmt: skip
    parser.addini("lmeval_task_args", "per-task settings, one TASK:key=value;... or JSON per line", type="linelist",
                  default=[])  # fmt: skip
    group.addoption(
        "--task-metadata", dest="lmeval_task_metadata", default=None, metavar="JSON",
        help="lm-eval's --metadata: merged into every task's metadata after the model's arguments "
        "(RULER's tokenizer and max_seq_lengths, e.g. '{\"max_seq_lengths\": [4096]}')",
    )  # fmt: skip
    parser.addini("lmeval_task_metadata", "JSON merged into every task's metadata", default=None)
    parser.addini("lmeval_evals_dir", "folder(s) holding benchmark task YAML", default="evals")
    group.addoption(
        "--trust-remote-code", "--trust_remote_code", dest="lmeval_trust_remote_code", action="store_true",
        default=False, help="run the model repository's own code (model arg trust_remote_code=true)",
    )  # fmt: skip
    group.addoption(
        "--max-batch-size", "--max_batch_size", dest="lmeval_max_batch_size", default=None, metavar="N",
        help="lm-eval's cap on auto batch sizes: accepted and ignored (auto batches by a budget of tokens)",
    )  # fmt: skip
