"""Command-line options (each also settable as an `lmeval_*` ini key) and their parsing."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..core.files import default_cache_dir
from ..features.baseline_run import PER_DOC_FILE
from ..features.gates import parse_gates_file, parse_threshold
from ..features.judging import JudgeOptions
from ..models.known import resolve_known
from ..models.registry import check_device_name, parse_model
from ..models.spec import ModelSpec, parse_model_args
from ..tasks.judged_metrics import STRATEGIES
from .option_values import parse_flag, parse_float, parse_gen_kwargs, parse_int, parse_limit
from .task_settings import RunSettings, load_run_file, parse_task_args

# (flag, ini/dest name, help)
_OPTIONS = [
    ("--model", "model", "model to evaluate as BACKEND:NAME (hf:EleutherAI/pythia-160m, hf:/path)"),
    ("--model-args", "model_args", "comma-separated k=v passed to the backend / from_pretrained"),
    ("--device", "device", "device for the model (cuda, cuda:1, cpu); default: cuda if present"),
    ("--batch-size", "batch_size", "requests per forward pass, or 'auto' (default: auto)"),
    ("--tasks", "tasks", "tasks, groups, tags or wildcards, comma-separated; 'list' lists them"),
    ("--num-fewshot", "num_fewshot", "few-shot examples per prompt (default: the task's own)"),
    ("--limit", "limit", "first N documents per task, or a fraction (0.1) of each task"),
    ("--seed", "seed", "seed of the few-shot sampler (default 1234, as lm-eval)"),
    ("--data-dir", "data_dir", "offline data mirror folder (also LMEVAL_DATA_DIR)"),
    ("--output-path", "output_path", "output folder (default reports/<model>/<timestamp>/)"),
    ("--include-path", "include_path", "extra folder(s) of task YAML, os.pathsep-separated"),
    ("--gates", "gates", "YAML file of gates: per task and metric a min, max, or reference + rel_tol"),
    ("--baseline", "baseline", "an earlier run's output folder (or its results.json) to compare with, paired"),
    ("--max-drop", "max_drop", "baseline gate: largest allowed drop, in points (1.0 = 1 percentage point)"),
    ("--alpha", "alpha", "baseline gate: significance level of the paired test (default 0.05)"),
    ("--cache-dir", "cache_dir", "response cache folder (default ~/.cache/pytest-lmeval)"),
    ("--gen-kwargs", "gen_kwargs", "generation arguments k=v,... (temperature=0.8,top_p=0.95,do_sample=true)"),
    ("--system-instruction", "system_instruction", "system instruction put before every prompt"),
    ("--perturb", "perturb", "add one item per document and perturbation: typos,lowercase,... or robustness"),
    ("--run-file", "run_file", "YAML file of the run: its tasks with per-task settings, and run options"),
    ("--judge-model", "judge_model", "judge model for judged metrics, as BACKEND:NAME (local-chat-completions:gpt-4o)"),
    ("--judge-model-args", "judge_model_args", "comma-separated k=v for the judge's backend (base_url=...)"),
    ("--judge-concurrency", "judge_concurrency", "judge requests sent at once (default 4)"),
    ("--judge-strategy", "judge_strategy", "rule, llm, llm_recall or auto (default: auto, the benchmark decides)"),
]
# Plain run options a run file may set (the command line wins over it, it wins over the ini file).
RUN_FILE_OPTIONS = (
    "model", "model_args", "device", "batch_size", "num_fewshot", "limit", "seed", "gen_kwargs",
    "system_instruction", "judge_model", "judge_model_args", "judge_concurrency", "judge_strategy",
)  # fmt: skip


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmeval", "language-model evaluation (pytest-lmeval)")
    for flag, dest, help_text in _OPTIONS:
        group.addoption(flag, dest=f"lmeval_{dest}", default=None, help=help_text)
        parser.addini(f"lmeval_{dest}", help_text, default=None)
    group.addoption(
        "--log-samples",
        dest="lmeval_log_samples",
        action="store_true",
        default=None,
        help="write samples/<task>.jsonl with every document's prompt, answers and scores",
    )
    parser.addini("lmeval_log_samples", "write per-document samples", type="bool", default=False)
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
        "--apply-chat-template", "--chat-template", dest="lmeval_apply_chat_template", nargs="?", const=True,
        default=None, metavar="NAME|FILE|JINJA",
        help="render prompts with the model's chat template (optionally the named one), or with your own "
        "Jinja template: a file (.jinja) or the template text",
    )  # fmt: skip
    parser.addini("lmeval_apply_chat_template", "true, or the name of the chat template to apply", default=None)
    group.addoption(
        "--fewshot-as-multiturn", dest="lmeval_fewshot_as_multiturn", nargs="?", const="true", default=None,
        metavar="BOOL", help="few-shot examples as separate chat turns (default: true with a chat template)",
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
    parser.addini("lmeval_evals_dir", "folder(s) holding benchmark task YAML", default="evals")


@dataclass(frozen=True)
class RunOptions:
    model: ModelSpec | None
    device: str | None
    batch_size: int | str
    tasks: str | None
    num_fewshot: int | None
    limit: int | float | None
    seed: int
    data_dir: Path | None
    output_path: str | None
    include_paths: tuple[Path, ...]
    log_samples: bool
    item_outcome: str
    model_args_text: str | None
    cache_dir: Path | None  # None: caching off
    refresh_cache: bool
    thresholds: tuple[str, ...] = ()
    gates_file: Path | None = None
    baseline: Path | None = None  # an earlier run's output folder or results.json
    max_drop: float = 0.0  # points
    alpha: float = 0.05
    gen_kwargs: dict[str, Any] | None = None  # merged into generative tasks' generation_kwargs
    chat_template: bool | str | None = None  # None: plain prompts; True: the default template
    system_instruction: str | None = None
    fewshot_as_multiturn: bool = False
    ignore_errors: bool = False  # a request the backend gives up on fails its documents only
    task_settings: RunSettings = field(default_factory=RunSettings)  # --task-args and --run-file
    judge: JudgeOptions | None = None  # --judge-model and its companions

    def output_dir(self, rootdir: Path, started: datetime) -> Path:
        if self.output_path:
            return Path(self.output_path)
        name = self.model.name if self.model else "none"
        if os.path.isabs(name):  # a local folder or file: its own name, not the whole path
            name = Path(name).name
        label = re.sub(r"[^A-Za-z0-9._-]+", "__", name)
        return rootdir / "reports" / label.strip("_")[-80:] / started.strftime("%Y-%m-%dT%H-%M-%S")


def _raw_option(config: pytest.Config, name: str, run_file: dict[str, Any] | None = None) -> tuple[Any, bool]:
    """The option's value and whether it came from the ini file (the command line first, then
    the run file, then the ini file)."""
    value = config.getoption(f"lmeval_{name}")
    if value is not None:
        return value, False
    if run_file and run_file.get(name) is not None:
        return _run_file_text(name, run_file[name]), False
    ini = config.getini(f"lmeval_{name}")
    return (ini if ini not in ("", None) else None), True


def _run_file_text(name: str, value: Any) -> Any:
    """A run file's value as the command line would give it (mappings for k=v options)."""
    if isinstance(value, dict):
        if name == "gen_kwargs":
            return json.dumps(value)
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value) if not isinstance(value, str) else value


def _task_settings(config: pytest.Config) -> RunSettings:
    """--run-file, then --task-args on top (also the ini file's lmeval_task_args)."""
    path_raw, from_ini = _raw_option(config, "run_file")
    run = RunSettings()
    if path_raw:
        path = _ini_path(config, str(path_raw), from_ini)
        if not path.is_file():
            raise LmevalError(f"--run-file {path_raw!r}: no such file")
        run = load_run_file(path, RUN_FILE_OPTIONS)
    texts = config.getoption("lmeval_task_args") or config.getini("lmeval_task_args") or []
    return parse_task_args(texts, run)


def _ini_path(config: pytest.Config, value: str, from_ini: bool) -> Path:
    path = Path(os.path.expanduser(value))
    if from_ini and not path.is_absolute():
        path = config.rootpath / path
    return path


def parse_options(config: pytest.Config) -> RunOptions:
    task_settings = _task_settings(config)
    run_file = task_settings.options

    def _raw(config: pytest.Config, name: str) -> tuple[Any, bool]:  # the run file's values count too
        return _raw_option(config, name, run_file)

    model_text, _ = _raw(config, "model")
    model_args_text, _ = _raw(config, "model_args")
    model = None
    if model_text:
        backend, name = parse_model(str(model_text))
        args = parse_model_args(model_args_text)
        if backend == "hf":  # a short name the plugin fetches: show its progress past pytest's capture
            capman = config.pluginmanager.getplugin("capturemanager")
            with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                name, args = resolve_known(name, args)
        model = ModelSpec(backend, name, args)
    elif model_args_text:
        parse_model_args(model_args_text)  # still report malformed args at once

    batch, _ = _raw(config, "batch_size")
    batch_size: int | str = "auto"
    if batch is not None and str(batch) != "auto":
        batch_size = parse_int("batch-size", batch)
        if batch_size < 1:
            raise LmevalError(f"--batch-size {batch!r}: must be at least 1, or 'auto'")

    shots, _ = _raw(config, "num_fewshot")
    num_fewshot = None if shots is None else parse_int("num-fewshot", shots)
    if num_fewshot is not None and num_fewshot < 0:
        raise LmevalError(f"--num-fewshot {shots!r}: must be 0 or more")

    limit_raw, _ = _raw(config, "limit")
    limit = None if limit_raw is None else parse_limit(limit_raw, f"--limit {limit_raw!r}")

    seed_raw, _ = _raw(config, "seed")
    seed = 1234 if seed_raw is None else parse_int("seed", seed_raw)

    data_raw, from_ini = _raw(config, "data_dir")
    data_dir = None
    if data_raw is None and os.environ.get("LMEVAL_DATA_DIR"):
        data_raw, from_ini = os.environ["LMEVAL_DATA_DIR"], False
    if data_raw is not None:
        data_dir = _ini_path(config, str(data_raw), from_ini)
        if not data_dir.is_dir():
            raise LmevalError(f"--data-dir {data_raw!r}: no such folder ({data_dir.resolve()})")

    include_raw, from_ini = _raw(config, "include_path")
    includes = tuple(_ini_path(config, p, from_ini) for p in str(include_raw or "").split(os.pathsep) if p)
    for path in includes:
        if not path.is_dir():
            raise LmevalError(f"--include-path {str(path)!r}: no such folder")

    log_samples = config.getoption("lmeval_log_samples")
    if log_samples is None:
        log_samples = bool(config.getini("lmeval_log_samples"))
    outcome, _ = _raw(config, "item_outcome")
    outcome = outcome or "scored"
    if outcome not in ("scored", "correct"):
        raise LmevalError(f"lmeval_item_outcome {outcome!r}: use 'scored' or 'correct'")

    cache_raw, from_ini = _raw(config, "cache_dir")
    cache_dir = None
    if not config.getoption("lmeval_no_cache"):
        cache_dir = _ini_path(config, str(cache_raw), from_ini) if cache_raw else default_cache_dir()

    thresholds = tuple(config.getoption("lmeval_threshold") or config.getini("lmeval_threshold") or ())
    thresholds += tuple(t for t in task_settings.thresholds if t not in thresholds)  # the run file's gates
    for text in thresholds:
        parse_threshold(text)  # a malformed threshold is an error before anything runs
    gates_raw, from_ini = _raw(config, "gates")
    gates_file = _ini_path(config, str(gates_raw), from_ini) if gates_raw else None
    if gates_file is not None:
        parse_gates_file(gates_file)
    baseline_raw, from_ini = _raw(config, "baseline")
    baseline = _ini_path(config, str(baseline_raw), from_ini) if baseline_raw else None
    if baseline is not None and not baseline.exists():
        raise LmevalError(f"--baseline {baseline_raw!r}: no such file or folder")
    if baseline is not None and baseline.is_dir() and not (baseline / "results.json").is_file():
        raise LmevalError(f"--baseline {baseline_raw!r}: no results.json there; pass an earlier run's output folder")
    folder = baseline.parent if baseline is not None and baseline.is_file() else baseline
    if folder is not None and not (folder / PER_DOC_FILE).is_file() and not any(folder.glob("samples/*.jsonl")):
        raise LmevalError(
            f"--baseline {baseline_raw!r}: that run wrote no per-document file ({PER_DOC_FILE}, or samples/*.jsonl "
            "with --log-samples), and a paired comparison needs one: run the baseline again, or pass a run that did"
        )
    max_drop = parse_float("max-drop", _raw(config, "max_drop")[0], 0.0)
    alpha = parse_float("alpha", _raw(config, "alpha")[0], 0.05)
    if not 0 < alpha < 1:
        raise LmevalError(f"--alpha {alpha}: must be between 0 and 1")

    output, from_ini = _raw(config, "output_path")
    device, _ = _raw(config, "device")
    check_device_name(device)
    tasks, _ = _raw(config, "tasks")
    if tasks is None and task_settings.tasks:
        tasks = ",".join(task_settings.tasks)
    if tasks is not None and not str(tasks).replace(",", "").strip():
        raise LmevalError(f"--tasks {tasks!r}: names no task (--tasks list shows them)")
    gen_text, _ = _raw(config, "gen_kwargs")
    chat, _ = _raw(config, "apply_chat_template")
    if isinstance(chat, str):  # from the ini file, or a name
        low = chat.strip().lower()
        chat = True if low in ("true", "1", "yes") else None if low in ("false", "0", "no", "") else chat
        chat = chat.strip() if isinstance(chat, str) and "{" not in chat else chat  # a template's text as given
    multiturn_raw, _ = _raw(config, "fewshot_as_multiturn")
    multiturn = None if multiturn_raw is None else parse_flag("fewshot-as-multiturn", multiturn_raw)
    if multiturn and not chat:
        raise LmevalError("--fewshot-as-multiturn needs --apply-chat-template (few-shot turns are chat messages)")
    system_instruction, _ = _raw(config, "system_instruction")
    ignore_errors = config.getoption("lmeval_ignore_errors")
    if ignore_errors is None:
        ignore_errors = config.getini("lmeval_ignore_errors")
    return RunOptions(
        model=model,
        device=device,
        batch_size=batch_size,
        tasks=tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        seed=seed,
        data_dir=data_dir,
        output_path=str(_ini_path(config, output, from_ini)) if output else None,
        include_paths=includes,
        log_samples=log_samples,
        item_outcome=outcome,
        model_args_text=model_args_text,
        cache_dir=cache_dir,
        thresholds=thresholds,
        gates_file=gates_file,
        baseline=baseline,
        max_drop=max_drop,
        alpha=alpha,
        refresh_cache=bool(config.getoption("lmeval_refresh_cache")),
        gen_kwargs=parse_gen_kwargs(gen_text),
        chat_template=chat,
        system_instruction=system_instruction,
        fewshot_as_multiturn=bool(chat) if multiturn is None else multiturn,  # lm-eval's default
        ignore_errors=bool(ignore_errors),
        task_settings=task_settings,
        judge=_judge_options(_raw, config),
    )


def _judge_options(raw: Any, config: pytest.Config) -> JudgeOptions | None:
    """--judge-model BACKEND:NAME, its --judge-model-args, --judge-concurrency, --judge-strategy."""
    model_text, _ = raw(config, "judge_model")
    args_text, _ = raw(config, "judge_model_args")
    concurrency_raw, _ = raw(config, "judge_concurrency")
    strategy, _ = raw(config, "judge_strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise LmevalError(f"--judge-strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    concurrency = 4 if concurrency_raw is None else parse_int("judge-concurrency", concurrency_raw)
    if concurrency < 1:
        raise LmevalError(f"--judge-concurrency {concurrency_raw!r}: must be at least 1")
    if not model_text:
        if args_text:
            raise LmevalError("--judge-model-args needs --judge-model BACKEND:NAME")
        return JudgeOptions(None, None, concurrency, strategy) if strategy else None
    backend, name = parse_model(str(model_text), "--judge-model")
    try:
        args = parse_model_args(args_text)
    except LmevalError as exc:  # its message names --model-args
        raise LmevalError(str(exc).replace("--model-args", "--judge-model-args", 1)) from None
    if backend == "hf":
        name, args = resolve_known(name, args)
    return JudgeOptions(ModelSpec(backend, name, args), args_text, concurrency, strategy)


def library_dir() -> Path | None:
    """The benchmark library installed with the plugin (evals/ of the repository)."""
    spec = importlib.util.find_spec("pytest_lmeval_evals")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def evals_dirs(config: pytest.Config, options: RunOptions) -> list[Path]:
    """The installed library, then the project's benchmark folders, then --include-path ones
    (a later folder's task overrides an earlier one's of the same name; one that takes a library
    task's name must say so: see Registry.scan)."""
    library = library_dir()
    dirs = [library] if library is not None else []
    dirs += [config.rootpath / d for d in str(config.getini("lmeval_evals_dir")).split()]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out + list(options.include_paths)
