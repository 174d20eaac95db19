"""Which tasks a run evaluates: --tasks resolved against the registry, each task built with
its settings; the benchmark files collection should read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..tasks.chat import ChatTemplate, load_chat_template
from ..tasks.config import GroupConfig, TaskConfig
from ..tasks.lmeval.class_tasks import task_for
from ..tasks.prompts import PromptStyle
from ..tasks.registry import Registry
from ..tasks.task import Task
from .options import RunOptions, evals_dirs, library_dir
from .task_settings import check_subsets, configured, in_subsets, styled


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class Selection:
    """Which tasks the run evaluates and their documents: resolved from --tasks (or the
    benchmark files collected), each task built with its per-task settings, before collection
    parametrizes one item per document."""

    def __init__(self, config: pytest.Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self._registry: Registry | None = None
        self.picked: list[str] | None = None  # what --tasks named (groups kept as groups)
        self.tasks: dict[str, Task] = {}
        self.parametrized: set[str] = set()  # tasks some collected test function runs
        self.chat_template: ChatTemplate | None = None  # with --apply-chat-template, once tasks are chosen
        self._style: PromptStyle | None = None
        self._task_chat: ChatTemplate | None = None  # the model's template, for tasks whose settings turn it on
        self._collection_error: LmevalError | None = None  # raised once collection is over (see benchmark_tasks)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.scan(
                evals_dirs(self.config, self.options), lm_eval_catalogue=True, library=library_dir()
            )
        return self._registry

    @property
    def tasks_only(self) -> bool:
        """`--tasks` with no paths on the command line: run the selected tasks, not the
        project's testpaths or whatever test files the current folder holds."""
        return bool(self.options.tasks) and self.config.args_source != pytest.Config.ArgsSource.ARGS

    # -- selection and data -------------------------------------------------------------------
    def prepare(self, args: list[str]) -> None:
        """Resolve which tasks run and load their documents, before collection."""
        registry = self.registry
        if self.tasks_only:
            args = []  # the testpaths or the current folder were not asked for
        paths = [Path(a.split("::")[0]) for a in args]
        roots = [r.parent if r.is_file() else r for r in paths]
        # Benchmark files given on the command line outside the benchmark folders: read now, so
        # --tasks can name their tasks and an xdist controller (which collects nothing) knows them.
        for path in paths:
            if path.exists() and not any(_under(path, d) for d in evals_dirs(self.config, self.options)):
                registry.scan_python(path, tests_only=True)
        if self.options.tasks:
            self.picked = registry.resolve(self.options.tasks)
            for name in self.picked:
                registry.check_not_shadowing(name)
            configs = registry.configs_for(self.picked)  # with the overrides of the groups named
        else:
            configs = {name: cfg for name, cfg in registry.tasks.items() if any(_under(cfg.source, r) for r in roots)}
        settings = self.options.task_settings
        for name in settings.by_name if self.picked is not None else ():
            registry.leaves(name)  # --task-args or the run file naming no known task: one clear line
        check_subsets(settings, self._groups_of())
        for name, cfg in configs.items():
            if self._in_subsets(name):
                self.tasks[name] = self._task(cfg)

    def _groups_of(self) -> dict[str, list[str]]:
        """The tasks under each name --task-args or the run file gives settings for."""
        out: dict[str, list[str]] = {}
        for name in self.options.task_settings.by_name:
            try:
                out[name] = self.registry.leaves(name)
            except LmevalError:  # a benchmark file not read yet may declare it
                out[name] = []
        return out

    def _in_subsets(self, task: str) -> bool:
        """Whether a task is kept by the subset_list of each group above it (task_settings.py)."""
        for name, members in self._groups_of().items():
            subsets = self.options.task_settings.by_name[name].subset_list
            if subsets and task in members and name != task and not in_subsets(task, name, subsets):
                return False
        return True

    def _task(self, cfg: TaskConfig) -> Task:
        """The task as this run evaluates it. One with no documents (an empty split, a
        process_docs that keeps none) stops the run: as zero items it would pass a CI gate
        having evaluated nothing."""
        self.registry.check_not_shadowing(cfg.task)
        task = self._build(cfg)
        empty = task.empty_reason()
        if empty is not None:
            raise LmevalError(f"{cfg.task}: {empty}")
        return task

    def _build(self, cfg: TaskConfig) -> Task:
        if self._style is None:
            self._style = self._prompt_style()
        opts = self.options
        settings = opts.task_settings.for_task(cfg.task, self._groups_of())
        gen_kwargs = {**(opts.gen_kwargs or {}), **settings.gen_kwargs} if settings.gen_kwargs else opts.gen_kwargs
        return task_for(  # lm-eval's class for a `class:` task, else our Task
            configured(cfg, settings),
            data_dir=opts.data_dir,
            num_fewshot=settings.num_fewshot if settings.num_fewshot is not None else opts.num_fewshot,
            limit=settings.limit if settings.limit is not None else opts.limit,
            seed=opts.seed,
            style=styled(self._style, settings, self._model_chat_template),
            gen_kwargs=gen_kwargs,
        )

    def _model_chat_template(self) -> ChatTemplate:
        """The model's chat template, for a task whose settings turn it on."""
        if self.options.model is None:
            raise LmevalError("chat_template in --task-args needs --model (the template is the model's)")
        if self._task_chat is None:
            self._task_chat = load_chat_template(self.options.model, None)
        return self._task_chat

    def benchmark_tasks(self, runs: tuple[Any, ...], module: Path) -> list[str]:
        """The selected tasks a @benchmark function runs. Without --tasks, a declaration that
        the benchmark folders did not hold (a file collected from elsewhere) joins the run.

        Bad input found here (a task without documents or data, a name clash) would surface
        as a collection error with pytest's traceback: it is kept, and raised as the run's one
        line once collection is over (`uncollected_tasks`)."""
        try:
            return self._benchmark_tasks(runs, module)
        except LmevalError as exc:
            self._collection_error = self._collection_error or exc
            return []

    def _benchmark_tasks(self, runs: tuple[Any, ...], module: Path) -> list[str]:
        names: list[str] = []
        groups: list[tuple[str, list[str]]] = []
        for run in runs:
            if isinstance(run, (TaskConfig, GroupConfig)):
                self.registry.add_declared(run, module.parent)
                name = run.task if isinstance(run, TaskConfig) else run.group
                self.registry.owners.setdefault(name, module.resolve())
            else:
                name = str(run)
            leaves = self.registry.leaves(name)
            if name not in leaves:  # a group or tag: its own name may clash too (tasks: in _task)
                groups.append((name, leaves))
            names.extend(n for n in leaves if n not in names)
        if self.picked is not None:
            names = [n for n in names if n in self.tasks]
        else:
            names = [n for n in names if n in self.tasks or self._in_subsets(n)]
            for name in names:
                if name not in self.tasks:
                    self.tasks[name] = self._task(self.registry.tasks[name])
        for group, leaves in groups:
            if any(n in names for n in leaves):
                self.registry.check_not_shadowing(group)
        return names

    def _prompt_style(self) -> PromptStyle:
        """System instruction and chat template, as lm-eval applies them (prompts are built
        at collection time, so only the model's tokenizer is loaded for its template)."""
        opts = self.options
        if opts.chat_template:
            if opts.model is None:
                raise LmevalError("--apply-chat-template needs --model (the template is the model's)")
            name = opts.chat_template if isinstance(opts.chat_template, str) else None
            self.chat_template = load_chat_template(opts.model, name)
        return PromptStyle(opts.system_instruction, self.chat_template, opts.fewshot_as_multiturn)

    def uncollected_tasks(self) -> list[str]:
        """Selected tasks that no collected test function runs (the benchmark file lies outside
        the collected paths, or the task is YAML with no benchmark file at all). Asked once
        collection is over: bad input a benchmark function's tasks held stops the run here."""
        if self._collection_error is not None:
            raise self._collection_error
        return [name for name in self.tasks if name not in self.parametrized]

    def doc_ids(self, name: str) -> range | list[int]:
        """The documents of a task the run evaluates: all it kept (after --limit), or those
        --samples lists for it (a task it does not name keeps all, as in lm-eval)."""
        count = len(self.tasks[name].docs)
        wanted = (self.options.samples or {}).get(name)
        return range(count) if wanted is None else [i for i in wanted if i < count]

    def check_samples(self) -> None:
        """--samples names only tasks the run evaluates, and documents they have."""
        for name, ids in (self.options.samples or {}).items():
            if name not in self.tasks:
                known = ", ".join(sorted(self.tasks)[:10]) or "none"
                raise LmevalError(f"--samples names {name!r}, which this run does not evaluate (its tasks: {known})")
            count = len(self.tasks[name].docs)
            if ids[-1] >= count:
                raise LmevalError(
                    f"--samples {name}: document {ids[-1]} is out of range (the task has {count}: ids 0 to {count - 1})"
                )

    def owns_test_file(self, path: Path) -> bool | None:
        """For a test file inside a benchmark folder: whether it runs any selected task. None
        for files outside the benchmark folders (not ours to judge)."""
        dirs = evals_dirs(self.config, self.options)
        if not any(_under(path, d) for d in dirs):
            return None
        return any(self.registry.owner(name) == path.resolve() for name in self.tasks)
