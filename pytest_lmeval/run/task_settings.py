"""Per-task settings in one run: `--task-args` and `--run-file`.

EvalScope's `--dataset-args` gives each benchmark its own n-shot, limit, few-shot seed,
generation arguments, system prompt, subsets and answer filters; `--task-args` does the same
here, per task or group (a group's settings reach every task under it; a task's own win):

    --task-args '{"gsm8k": {"num_fewshot": 5, "limit": 50}, "mmlu": {"subset_list": ["anatomy"]}}'
    --task-args 'gsm8k:num_fewshot=5;limit=50;filters={"remove_until": "</think>"}'   (repeatable)

A run file (`--run-file run.yaml`) holds the same settings, and the tasks themselves, so a CI
job's whole evaluation is one reviewed file:

    model: hf:EleutherAI/pythia-160m      # any of the plain run options (the command line wins)
    limit: 100
    tasks:
      - arc_easy                          # as it is
      - task: gsm8k
        num_fewshot: 5
        filters: {remove_until: "</think>"}

The settings each task ran with go into results.json (`configs.<task>.task_settings`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LmevalError
from ..scoring.filters import with_answer_filters
from .option_values import check_gen_kwargs, kv_value, parse_bool, parse_gen_kwargs, parse_limit, split_top_level

if TYPE_CHECKING:
    from ..tasks.config import TaskConfig
    from ..tasks.prompts import PromptStyle

# Our names, and EvalScope's / lm-eval's names for the same setting.
ALIASES = {
    "num_fewshot": "num_fewshot",
    "few_shot_num": "num_fewshot",
    "n_shot": "num_fewshot",
    "limit": "limit",
    "fewshot_seed": "fewshot_seed",
    "few_shot_seed": "fewshot_seed",
    "seed": "fewshot_seed",
    "gen_kwargs": "gen_kwargs",
    "generation_kwargs": "gen_kwargs",
    "generation_config": "gen_kwargs",
    "system_prompt": "system_prompt",
    "system_instruction": "system_prompt",
    "chat_template": "chat_template",
    "apply_chat_template": "chat_template",
    "subset_list": "subset_list",
    "subsets": "subset_list",
    "filters": "filters",
}
FILTER_KINDS = ("remove_until", "extract", "strip")


@dataclass(frozen=True)
class TaskSettings:
    """What a run sets for one task (None: the run's, or the task's own, value)."""

    num_fewshot: int | None = None
    limit: int | float | None = None
    fewshot_seed: int | None = None
    gen_kwargs: dict[str, Any] | None = None
    system_prompt: str | None = None
    chat_template: bool | None = None
    subset_list: tuple[str, ...] | None = None
    filters: tuple[tuple[str, str], ...] = ()  # (kind, argument), applied in order before scoring

    def merged(self, over: TaskSettings) -> TaskSettings:
        """These settings with `over`'s set values on top (generation arguments key by key)."""
        out = {k: getattr(self, k) for k in _FIELDS}
        for key in _FIELDS:
            value = getattr(over, key)
            if value is None or value == ():
                continue
            if key == "gen_kwargs" and self.gen_kwargs:
                value = {**self.gen_kwargs, **value}
            out[key] = value
        return TaskSettings(**out)

    @property
    def empty(self) -> bool:
        return self == TaskSettings()

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _FIELDS:
            value = getattr(self, key)
            if value is None or value == ():
                continue
            if key == "subset_list":
                value = list(value)
            elif key == "filters":
                value = [{kind: arg} for kind, arg in value]
            out[key] = value
        return out


_FIELDS = ("num_fewshot", "limit", "fewshot_seed", "gen_kwargs", "system_prompt", "chat_template", "subset_list",
           "filters")  # fmt: skip


@dataclass(frozen=True)
class RunSettings:
    """Every task's or group's settings, in the order given (a later entry for the same name
    adds to an earlier one)."""

    by_name: dict[str, TaskSettings] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()  # the run file's tasks, in its order: the run's --tasks when not given
    options: dict[str, Any] = field(default_factory=dict)  # the run file's plain run options
    thresholds: tuple[str, ...] = ()  # the run file's gates, TASK:METRIC>=VALUE (a task's own `threshold`)

    def add(self, name: str, settings: TaskSettings) -> RunSettings:
        by_name = dict(self.by_name)
        by_name[name] = by_name[name].merged(settings) if name in by_name else settings
        return RunSettings(by_name, self.tasks, self.options, self.thresholds)

    def for_task(self, task: str, groups_of: Mapping[str, Iterable[str]]) -> TaskSettings:
        """The task's settings: those of every group above it (outermost first), then its own.
        `groups_of[name]` lists the tasks under a group name."""
        out = TaskSettings()
        for name, settings in self.by_name.items():
            if name != task and task in groups_of.get(name, ()):
                out = out.merged(settings)
        own = self.by_name.get(task)
        return out.merged(own) if own is not None else out


# -- parsing ------------------------------------------------------------------------------------
def _where(source: str, name: str) -> str:
    return f"{source}: {name!r}"


def _whole(value: Any, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise LmevalError(f"{where}: {key} must be a whole number, got {value!r}")
    n = int(value)
    if n < minimum:
        raise LmevalError(f"{where}: {key} must be {minimum} or more, got {n}")
    return n


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        value = [v.strip().strip("'\"") for v in text.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value) or not value:
        raise LmevalError(f"{where}: subset_list must be a list of names, got {value!r}")
    return tuple(value)


def _filters(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """`{"remove_until": "</think>"}` (EvalScope's form), or a list of such one-key mappings."""
    items: list[tuple[Any, Any]] = []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        for entry in value:
            if not isinstance(entry, Mapping):
                raise LmevalError(f"{where}: each filter is a mapping like {{remove_until: '</think>'}}, got {entry!r}")
            items += list(entry.items())
    else:
        raise LmevalError(f"{where}: filters must be a mapping like {{remove_until: '</think>'}}, got {value!r}")
    out = []
    for kind, arg in items:
        if kind not in FILTER_KINDS:
            raise LmevalError(f"{where}: unknown filter {kind!r} (known: {', '.join(FILTER_KINDS)})")
        if kind == "strip":
            arg = "" if arg in (True, None) else arg
        if not isinstance(arg, str) or (kind != "strip" and not arg):
            raise LmevalError(f"{where}: filter {kind} needs text, got {arg!r}")
        if kind == "extract":
            try:
                re.compile(arg)
            except re.error as exc:
                raise LmevalError(f"{where}: filter extract {arg!r} is not a regular expression: {exc}") from None
        out.append((str(kind), arg))
    return tuple(out)


def settings_from_mapping(data: Any, where: str) -> TaskSettings:
    """One task's settings from a mapping of setting names (ours or EvalScope's) to values."""
    if not isinstance(data, Mapping):
        raise LmevalError(f"{where}: settings must be a mapping of setting names to values, got {data!r}")
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = ALIASES.get(str(raw_key))
        if key is None:
            known = ", ".join(sorted(set(ALIASES.values())))
            raise LmevalError(f"{where}: unknown setting {raw_key!r} (known: {known})")
        if key in out:
            raise LmevalError(f"{where}: {key} is given twice")
        if value is None:
            continue
        if key == "num_fewshot":
            out[key] = _whole(value, key, where, 0)
        elif key == "fewshot_seed":
            out[key] = _whole(value, key, where, -(2**63))
        elif key == "limit":
            out[key] = parse_limit(value, f"{where}: limit {value!r}")
        elif key == "gen_kwargs":
            if isinstance(value, str):
                value = parse_gen_kwargs(value, f"{where}: gen_kwargs") or {}
            if not isinstance(value, Mapping):
                raise LmevalError(f"{where}: gen_kwargs must be a mapping, got {value!r}")
            out[key] = check_gen_kwargs(dict(value), f"{where}: gen_kwargs")
        elif key == "system_prompt":
            out[key] = str(value)
        elif key == "chat_template":
            out[key] = parse_bool(value, f"{where}: {key} {value!r}")
        elif key == "subset_list":
            out[key] = _names(value, where)
        else:
            out[key] = _filters(value, where)
    return TaskSettings(**out)


def parse_task_args(values: Iterable[str], run: RunSettings | None = None) -> RunSettings:
    """`--task-args` values: each a JSON object of task names to settings, or one task's
    `task:key=value;key=value`."""
    run = run or RunSettings()
    for text in values:
        text = text.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LmevalError(f"--task-args: not valid JSON ({exc.msg} at character {exc.pos})") from None
            if not isinstance(data, dict):
                raise LmevalError("--task-args: the JSON must map task names to their settings")
            for name, settings in data.items():
                run = run.add(name, settings_from_mapping(settings, _where("--task-args", name)))
            continue
        name, sep, rest = text.partition(":")
        if not sep or not name.strip() or "=" in name:
            raise LmevalError(
                f"--task-args {text!r}: expected TASK:key=value;key=value (e.g. gsm8k:num_fewshot=5;limit=10) or JSON"
            )
        data: dict[str, Any] = {}
        for pair in split_top_level(rest, ";"):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise LmevalError(f"--task-args {name.strip()}: {pair!r} is not key=value")
            data[key.strip()] = kv_value(value)
        run = run.add(name.strip(), settings_from_mapping(data, _where("--task-args", name.strip())))
    return run


def load_run_file(path: Path, run_options: Iterable[str]) -> RunSettings:
    """A run file: `tasks` (a list of names or {task: NAME, settings...}, or a mapping of names
    to settings; a task's `threshold` gates it: `acc>=0.4` or a list of such), `threshold` (a
    list of TASK:METRIC>=VALUE gates) and any of `run_options` (plain run options, e.g. model)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LmevalError(f"--run-file {str(path)!r}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise LmevalError(f"--run-file {path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise LmevalError(f"--run-file {path}: expected a mapping with a 'tasks' list")
    allowed = set(run_options)
    unknown = set(data) - allowed - {"tasks", "threshold"}
    if unknown:
        raise LmevalError(
            f"--run-file {path}: unknown keys {sorted(unknown)} (known: tasks, threshold, {', '.join(sorted(allowed))})"
        )
    entries = data.get("tasks")
    if isinstance(entries, dict):
        entries = [{"task": name, **(settings or {})} for name, settings in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise LmevalError(f"--run-file {path}: 'tasks' must list at least one task")
    run = RunSettings(options={k: v for k, v in data.items() if k not in ("tasks", "threshold")})
    gates = list(_gate_list(data.get("threshold"), f"--run-file {path}: threshold"))
    names: list[str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            names.append(entry)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise LmevalError(
                f"--run-file {path}: tasks[{i}] must be a task name or a mapping with 'task', got {entry!r}"
            )
        name = entry["task"]
        names.append(name)
        where = f"--run-file {path}: tasks[{i}] {name!r}"
        gates += [f"{name}:{g}" for g in _gate_list(entry.get("threshold"), f"{where}: threshold")]
        settings = {k: v for k, v in entry.items() if k not in ("task", "threshold")}
        run = run.add(name, settings_from_mapping(settings, where))
    return RunSettings(run.by_name, tuple(dict.fromkeys(names)), run.options, tuple(gates))


def _gate_list(value: Any, where: str) -> Iterable[str]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise LmevalError(f"{where}: expected a gate like 'acc>=0.4', or a list of them, got {value!r}")
    return [v.strip() for v in items]


# -- applying -----------------------------------------------------------------------------------
def check_subsets(run: RunSettings, groups_of: Mapping[str, list[str]]) -> None:
    """Each subset_list names members of a group: a task's own subset_list, or a name none of
    the group's tasks has, is one clear line (names not known yet are left alone)."""
    for name, settings in run.by_name.items():
        members = groups_of.get(name) or []
        if not settings.subset_list or not members:
            continue
        if members == [name]:
            raise LmevalError(f"subset_list for {name!r}: it is a task; subset_list picks a group's tasks")
        for subset in settings.subset_list:
            if not any(in_subsets(m, name, [subset]) for m in members):
                raise LmevalError(
                    f"subset_list for {name!r}: {subset!r} is none of its tasks ({', '.join(members[:8])}"
                    f"{', ...' if len(members) > 8 else ''})"
                )


def in_subsets(task: str, group: str, subsets: Iterable[str]) -> bool:
    """Whether a task under `group` is one of the subsets named: its full name, or the part
    after the group's name (`anatomy` for `mmlu_anatomy` under `mmlu`)."""
    return any(task in (s, f"{group}_{s}") for s in subsets)


def configured(cfg: TaskConfig, settings: TaskSettings) -> TaskConfig:
    """The task's config with the settings that live in it: n-shot (also for a task that fixes
    0 shots: the run asked for it by name), few-shot seed, answer filters run before the task's
    own, and the settings themselves (results.json shows them under the task's config)."""
    if settings.empty:
        return cfg
    changes: dict[str, Any] = {"extra": {**cfg.extra, "task_settings": settings.to_record()}}
    if settings.num_fewshot is not None:
        changes["num_fewshot"] = settings.num_fewshot
    if settings.fewshot_seed is not None:
        changes["fewshot_seed"] = settings.fewshot_seed
    if settings.filters:
        changes["filters"] = with_answer_filters(cfg.filters, settings.filters)
    return replace(cfg, **changes)


def styled(style: PromptStyle, settings: TaskSettings, chat: Callable[[], Any]) -> PromptStyle:
    """The run's prompt style with the task's system prompt and chat template on/off (`chat()`
    gives the model's template, loaded only when a task turns it on)."""
    if settings.system_prompt is not None:
        style = replace(style, system_instruction=settings.system_prompt)
    if settings.chat_template is False:
        style = replace(style, chat=None, fewshot_as_multiturn=False)
    elif settings.chat_template and style.chat is None:
        style = replace(style, chat=chat())
    return style
