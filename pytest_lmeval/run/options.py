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
from ..features.toxicity import parse_toxicity_model
from ..models.known import resolve_known
from ..models.registry import check_device_name, parse_model
from ..models.spec import ModelSpec, parse_model_args
from ..tasks.judged_metrics import STRATEGIES
from .option_table import RUN_FILE_OPTIONS
from .option_values import (
    parse_batch_size,
    parse_flag,
    parse_float,
    parse_gen_kwargs,
    parse_int,
    parse_json_object,
    parse_limit,
    parse_samples,
    parse_seed,
)
from .task_settings import RunSettings, load_run_file, parse_task_args


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
    toxicity_model: ModelSpec | None = None  # --toxicity-model hf:NAME
    notes: tuple[str, ...] = ()  # lines for the header: options accepted but without effect here
    samples: dict[str, tuple[int, ...]] | None = None  # --samples: exactly these documents of each task
    predict_only: bool = False  # answer and log samples, score nothing
    write_out: bool = False  # print each task's first prompt at collection end
    show_config: bool = False  # print each task's resolved configuration at collection end
    task_metadata: dict[str, Any] = field(default_factory=dict)  # --task-metadata: merged into every task's

    def run_metadata(self) -> dict[str, Any]:
        """What lm-eval merges into every task's metadata: the model's arguments (with the
        model as `pretrained` for local backends, as lm-eval's --model_args name it), then
        --task-metadata."""
        out: dict[str, Any] = {}
        if self.model is not None:
            if self.model.backend in ("hf", "vllm"):
                out["pretrained"] = self.model.name
            out.update(self.model.args)
        return {**out, **self.task_metadata}

    def output_dir(self, rootdir: Path, started: datetime) -> Path:
        if self.output_path:
            return Path(self.output_path)
        name = self.model.shown_name if self.model else "none"
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
    if config.getoption("lmeval_trust_remote_code") and "trust_remote_code" not in parse_model_args(model_args_text):
        model_args_text = ",".join(t for t in (model_args_text, "trust_remote_code=true") if t)
    model = None
    if model_text:
        backend, typed = parse_model(str(model_text))
        name, args = typed, parse_model_args(model_args_text)
        if backend == "hf":  # a short name the plugin fetches: show its progress past pytest's capture
            capman = config.pluginmanager.getplugin("capturemanager")
            with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                name, args = resolve_known(name, args)
        model = ModelSpec(backend, name, args, typed if name != typed else None)
    elif model_args_text:
        parse_model_args(model_args_text)  # still report malformed args at once

    batch, _ = _raw(config, "batch_size")
    batch_size = "auto" if batch is None else parse_batch_size(batch)
    notes: tuple[str, ...] = ()
    if config.getoption("lmeval_max_batch_size") is not None:
        notes += ("--max_batch_size is accepted and ignored (auto batches by a budget of padded tokens)",)

    shots, _ = _raw(config, "num_fewshot")
    num_fewshot = None if shots is None else parse_int("num-fewshot", shots)
    if num_fewshot is not None and num_fewshot < 0:
        raise LmevalError(f"--num-fewshot {shots!r}: must be 0 or more")

    limit_raw, _ = _raw(config, "limit")
    limit = None if limit_raw is None else parse_limit(limit_raw, f"--limit {limit_raw!r}")

    seed_raw, _ = _raw(config, "seed")
    seed = 1234 if seed_raw is None else parse_seed(seed_raw)

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
    samples = _samples(config, _raw, limit)
    metadata_text, _ = _raw(config, "task_metadata")
    task_metadata = parse_json_object("--task-metadata", metadata_text) if metadata_text else {}
    predict_only = _switch(config, "predict_only")
    if predict_only:
        log_samples = True  # lm-eval's: predictions are what the run writes
        scored = [n for n, on in (("--threshold", thresholds), ("--gates", gates_file), ("--baseline", baseline)) if on]
        if outcome == "correct":
            scored.append("--item-outcome correct")
        if scored:
            raise LmevalError(f"--predict-only scores nothing, and {', '.join(scored)} needs scores: drop one")
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
        task_metadata=task_metadata,
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
        toxicity_model=parse_toxicity_model(_raw(config, "toxicity_model")[0]),
        notes=notes,
        samples=samples,
        predict_only=predict_only,
        write_out=_switch(config, "write_out"),
        show_config=_switch(config, "show_config"),
    )


def _switch(config: pytest.Config, name: str) -> bool:
    value = config.getoption(f"lmeval_{name}")
    return bool(config.getini(f"lmeval_{name}") if value is None else value)


def _samples(config: pytest.Config, raw: Any, limit: Any) -> dict[str, tuple[int, ...]] | None:
    """--samples as lm-eval reads it: inline JSON, or a JSON file; never with --limit."""
    text, from_ini = raw(config, "samples")
    if text is None:
        return None
    text = str(text).strip()
    if limit is not None:
        raise LmevalError("--samples and --limit cannot be used together (lm-eval refuses both): drop one")
    if text.startswith("{"):
        return parse_samples(text)
    path = _ini_path(config, text, from_ini)
    if not path.is_file():
        raise LmevalError(f"--samples {text!r}: neither a JSON object nor a file ({path})")
    return parse_samples(text, path)


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
    typed = name
    if backend == "hf":
        name, args = resolve_known(name, args)
    spec = ModelSpec(backend, name, args, typed if name != typed else None)
    return JudgeOptions(spec, args_text, concurrency, strategy)


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
