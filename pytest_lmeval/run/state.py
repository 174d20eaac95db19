"""The run's state, one object per pytest session (kept on `config.stash`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..core.requests import Request, Response
from ..engine.cache import ResponseCache, fingerprint_record, open_response_cache
from ..features.perturbation import perturb_work
from ..models.base import redact_args
from ..tasks import DocRequests, GroupConfig, Registry, Task, TaskConfig
from ..tasks.chat import ChatTemplate, load_chat_template
from ..tasks.lmeval.class_tasks import task_for
from ..tasks.lmeval.yaml_loader import reset_run_random
from ..tasks.prompts import PromptStyle
from .options import RunOptions, evals_dirs, parse_options
from .task_settings import check_subsets, configured, in_subsets, styled


@dataclass(frozen=True)
class DocRef:
    """The parameter of a document's item: small, so collection stays light."""

    task: str
    doc_id: int
    perturbation: str | None = None  # perturb.py: the document's question perturbed so

    def __str__(self) -> str:
        base = f"{self.task}-{self.doc_id}"
        return f"{base}[{self.perturbation}]" if self.perturbation else base


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


@dataclass
class LmevalState:
    config: pytest.Config
    options: RunOptions
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _registry: Registry | None = None
    picked: list[str] | None = None  # what --tasks named (groups kept as groups)
    tasks: dict[str, Task] = field(default_factory=dict)
    work: dict[str, DocRequests] = field(default_factory=dict)  # nodeid -> requests
    answers: dict[Request, Response] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # controller only
    perturbed: list[dict[str, Any]] = field(default_factory=list)  # controller: records of perturbed items
    perturb: tuple[str, ...] = ()  # --perturb
    request_costs: dict[Request, Any] = field(default_factory=dict)  # efficiency.Cost of each computed request
    failures: list[dict[str, Any]] = field(default_factory=list)  # documents not scored
    model_info: dict[str, Any] = field(default_factory=dict)
    engine_stats: dict[str, Any] = field(default_factory=dict)
    answered: float | None = None  # perf_counter() once this process's answers (judged ones too) were in
    stopped: str | None = None  # why the run stopped early (a backend gave up): no results written
    results: Any = None  # report.aggregate.Results, once the run is over
    output_files: list[Path] = field(default_factory=list)
    gates: list[Any] = field(default_factory=list)  # report.gates.Gate, judged on the controller
    comparisons: list[Any] = field(default_factory=list)  # report.baseline.Comparison
    baseline: Any = None  # report.baseline.BaselineRun, with --baseline
    _cache: ResponseCache | None = None
    chat_template: ChatTemplate | None = None  # with --apply-chat-template, once tasks are chosen
    parametrized: set[str] = field(default_factory=set)  # tasks some collected test function runs
    worker_cache: dict[str, Any] | None = None  # xdist controller: a worker's cache_record()
    _style: PromptStyle | None = None
    _task_chat: ChatTemplate | None = None  # the model's template, for tasks whose settings turn it on

    @classmethod
    def from_config(cls, config: pytest.Config) -> LmevalState:
        return cls(config=config, options=parse_options(config))

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.scan(evals_dirs(self.config, self.options), lm_eval_catalogue=True)
        return self._registry

    @property
    def tasks_only(self) -> bool:
        """`--tasks` with no paths on the command line: run the selected tasks, not the
        project's testpaths or whatever test files the current folder holds."""
        return bool(self.options.tasks) and self.config.args_source != pytest.Config.ArgsSource.ARGS

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # -- selection and data -------------------------------------------------------------------
    def prepare(self, args: list[str]) -> None:
        """Resolve which tasks run and load their documents, before collection."""
        reset_run_random()  # process_docs helpers see the global generator as one lm-eval run does
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
        the benchmark folders did not hold (a file collected from elsewhere) joins the run."""
        names: list[str] = []
        for run in runs:
            if isinstance(run, (TaskConfig, GroupConfig)):
                self.registry.add_declared(run, module.parent)
                name = run.task if isinstance(run, TaskConfig) else run.group
                self.registry.owners.setdefault(name, module.resolve())
            else:
                name = str(run)
            names.extend(n for n in self.registry.leaves(name) if n not in names)
        if self.picked is not None:
            return [n for n in names if n in self.tasks]
        names = [n for n in names if n in self.tasks or self._in_subsets(n)]
        for name in names:
            if name not in self.tasks:
                self.tasks[name] = self._task(self.registry.tasks[name])
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
        the collected paths, or the task is YAML with no benchmark file at all)."""
        return [name for name in self.tasks if name not in self.parametrized]

    def owns_test_file(self, path: Path) -> bool | None:
        """For a test file inside a benchmark folder: whether it runs any selected task. None
        for files outside the benchmark folders (not ours to judge)."""
        dirs = evals_dirs(self.config, self.options)
        if not any(_under(path, d) for d in dirs):
            return None
        return any(self.registry.owner(name) == path.resolve() for name in self.tasks)

    def build_requests(self, items: list[pytest.Item]) -> None:
        keep = not self.config.option.collectonly  # a dry run validates prompts, keeps nothing
        for item in items:
            ref = lmeval_ref(item)
            if ref is not None:
                work = self.tasks[ref.task].build(ref.doc_id)
                if ref.perturbation:
                    work = perturb_work(self.tasks[ref.task], work, ref.perturbation, self.options.seed)
                if keep:
                    self.work[item.nodeid] = work
        if self.work and self.options.model is None:
            raise LmevalError(
                f"{len(self.work)} documents selected but no model given: "
                "pass --model BACKEND:NAME (e.g. --model hf:EleutherAI/pythia-160m)"
            )

    @property
    def wants_samples(self) -> bool:
        """Per-document samples travel on reports when logged, or when a baseline comparison
        shows flipped documents with their prompts."""
        return self.options.log_samples or self.options.baseline is not None

    def merge_worker(self, engine: dict[str, Any], model_info: dict[str, Any]) -> None:
        """Add one xdist worker's engine figures to the run's."""
        self.model_info = self.model_info or model_info
        for key, value in engine.items():
            if isinstance(value, (int, float)):
                self.engine_stats[key] = self.engine_stats.get(key, 0) + value
        workers = self.engine_stats.setdefault("workers", [])
        workers.append(engine)

    def cache_record(self) -> dict[str, Any]:
        """Whether answers were cached and why (the terminal's line), and the fingerprint they
        were keyed by (results.json), as this process saw them; under xdist the controller
        shows the workers' (it answers nothing itself)."""
        if self._cache is None:
            return self.worker_cache or {}
        spec = self.options.model
        record = fingerprint_record(spec.backend, spec.name, redact_args(spec.args)) if spec else None
        return {"note": self._cache.note, "fingerprint": record}

    def open_cache(self) -> ResponseCache | None:
        """The response cache, or None when answers are not cached (--no-cache, or an API
        server that states no model identity; `self._cache.note` says which)."""
        opts = self.options
        if opts.cache_dir is None or opts.model is None:
            return None
        if self._cache is None:
            config = self.config
            explicit = config.getoption("lmeval_cache_dir") is not None or bool(config.getini("lmeval_cache_dir"))
            path = opts.cache_dir / "responses.sqlite"
            self._cache = open_response_cache(path, opts.model, explicit=explicit, batch_size=opts.batch_size)
        return self._cache if self._cache.enabled else None

    def output_dir(self) -> Path:
        # reports/ under the folder pytest was started in (not the rootdir, which outside a
        # project can be the data mirror's folder)
        return self.options.output_dir(self.config.invocation_params.dir, self.started)


def lmeval_ref(item: pytest.Item) -> DocRef | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return next((v for v in callspec.params.values() if isinstance(v, DocRef)), None)
