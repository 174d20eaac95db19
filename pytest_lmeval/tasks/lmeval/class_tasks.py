"""Running lm-eval's Python task classes (`class: !function task.SWDE`).

A class task runs the installed lm-eval class itself: it is built as lm-eval 0.4.13's
TaskFactory builds it (`cls(config=...)` when the constructor takes a config, else `cls()`),
then prepared as its simple_evaluate prepares it (--gen-kwargs, the n-shot rule, the few-shot
seed). Its own `fewshot_context`, `construct_requests`, `process_results`, `aggregation` and
`higher_is_better` give the prompts, the requests, the per-document metrics and how they
aggregate; only the model, the cache, the items and the reports are ours. Its data comes from
our data layer (the offline mirror with --data-dir, the hub otherwise): the class's
`download` is replaced by one that hands it a mapping of splits read on first use. A class
with a `download` of its own (SCROLLS reads zip files from the hub) keeps it, and runs only
without --data-dir.

Reading a class task's config, and refusing what cannot run here, is yaml_config.py's.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.errors import LmevalError
from ...core.requests import DocRequests, Request, Response
from ...scoring import lmeval_metrics
from ...scoring.filters import build_pipelines
from ..config import TaskConfig
from ..config_parsing import with_lmeval_filters
from ..outputs import OUTPUT_TYPES
from ..outputs.base import OutputType
from ..outputs.generation import is_sampling
from ..prompts import PLAIN, PromptStyle
from ..run_metadata import with_run_metadata
from ..sources import Hub
from ..task import Task
from .yaml_config import ClassRef, custom_dataset, first_line, load_class, without_remote_code


class _Splits(dict):
    """The `dataset` a class reads: each split loaded through our data layer on first use.
    A split that the mirror lacks is an empty placeholder, remembered: lm-eval builds a class's
    few-shot pool (often the train split) even for 0-shot runs, and only a run that uses it
    needs it."""

    def __init__(self, load: Callable[[str], list[dict[str, Any]]]) -> None:
        super().__init__()
        self._load = load
        self.missing: dict[str, LmevalError] = {}

    def __missing__(self, split: str) -> Any:
        import datasets

        try:
            rows = self._load(split)
        except LmevalError as exc:
            if "missing data" not in str(exc):
                raise
            self.missing[split] = exc
            rows = []
        self[split] = datasets.Dataset.from_list(rows)
        return self[split]


def _base_downloads() -> tuple[Any, ...]:
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.api.task import Task as LmTask

    return (ConfigurableTask.download, LmTask.download)


def _aggregation_spec(fn: Any) -> Any:
    """lm-eval's aggregation function by its registered name where it has one (so `mean` gets
    lm-eval's closed-form stderr, bleu its bootstrap), else the function itself."""
    registry = lmeval_metrics._registry()
    by_fn = {v: k for k, v in registry.AGGREGATION_REGISTRY.items()}
    name = by_fn.get(fn)
    return name if name is not None else fn


class ClassOutput(OutputType):
    """What a class task's documents ask: the class's own instances, each answered `repeats`
    times; the class's process_results scores them."""

    name = "class"

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats

    def build(self, task: Task, doc_id: int, contexts: list[str], target: Any) -> DocRequests:
        return task.build(doc_id)

    def instances(self, responses: list[Response]) -> list[list[Response]]:
        r = self.repeats
        return [list(responses[i : i + r]) for i in range(0, len(responses), r)]

    def compute(self, task: Task, work: DocRequests, results: list[Any], wanted: list[str]) -> tuple[dict, Any]:
        return {}, results[0] if results else None

    def sample_requests(self, work: DocRequests) -> list[Request]:
        return list(work.requests[:: self.repeats])


class ClassTask(Task):
    """A task run by lm-eval's class (see the module docstring); items, scoring and reports see
    what they see of any Task: docs, build(doc_id), config, output."""

    def __init__(
        self,
        config: TaskConfig,
        *,
        data_dir: Path | None,
        num_fewshot: int | None = None,
        limit: int | float | None = None,
        seed: int = 1234,
        style: PromptStyle = PLAIN,
        gen_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = config.task
        self.data_dir = data_dir
        self.style = style
        self.seed = config.fewshot_seed if config.fewshot_seed is not None else seed
        self.multiple_input = False
        self._splits: _Splits | None = None
        obj = self.lm_task = self._construct(config)
        where = f"task {self.name!r} (lm-eval's {type(obj).__name__})"
        # lm-eval's simple_evaluate: --gen_kwargs update a generative task's generation_kwargs,
        # --num_fewshot overrides unless the task fixes 0 shots, and the few-shot seed is set.
        if gen_kwargs and obj.get_config("output_type") == "generate_until":
            own = obj.get_config("generation_kwargs")
            obj.set_config("generation_kwargs", dict(gen_kwargs), update=isinstance(own, dict))
        if num_fewshot is not None and obj.get_config("num_fewshot") != 0:
            obj.set_config("num_fewshot", num_fewshot)
        elif obj.get_config("num_fewshot") is None:
            obj.set_config("num_fewshot", 0)
        self.num_fewshot = int(obj.get_config("num_fewshot"))
        obj.set_fewshot_seed(seed=self.seed)
        if self.num_fewshot and self._splits is not None and self._splits.missing:
            raise next(iter(self._splits.missing.values()))
        try:
            self.docs = list(obj.eval_docs)
        except Exception as exc:
            raise LmevalError(f"{where}: its documents failed to load: {first_line(exc)}") from None
        self.original_size = len(self.docs)
        if limit is not None:
            n = int(limit) if limit >= 1 else math.ceil(len(self.docs) * limit)
            self.docs = self.docs[:n]
        repeats = int(obj.get_config("repeats") or 1)
        self.output = ClassOutput(repeats)
        self.config = self._effective_config(config, obj)
        self.generation_kwargs = dict(obj.get_config("generation_kwargs") or {})
        self._built: list[DocRequests] = []

    # -- the class, with our data ---------------------------------------------------------------
    def _download(self) -> Callable[..., None]:
        task = self

        def download(lm_self: Any, dataset_kwargs: Any = None, *args: Any, **kwargs: Any) -> None:
            config = getattr(lm_self, "_config", None)
            custom = getattr(config, "custom_dataset", None) if config is not None else None
            if callable(custom):  # the class's config holds its metadata with config_source (_construct)
                metadata = dict(getattr(config, "metadata", None) or {})
                kwargs = getattr(config, "dataset_kwargs", None)
                source: Any = custom_dataset(custom, metadata, kwargs, f"task {task.name!r}")
            else:
                extra = without_remote_code(dict(dataset_kwargs)) if isinstance(dataset_kwargs, dict) else {}
                source = Hub(str(lm_self.DATASET_PATH), lm_self.DATASET_NAME, extra)
            task._splits = _Splits(lambda split: source.rows(split, task.data_dir, task.name))
            lm_self.dataset = task._splits

        return download

    def _construct(self, config: TaskConfig) -> Any:
        ref: ClassRef = config.task_class
        lmeval_metrics._registry()  # lm-eval's logging quietened, as for its metrics
        cls = load_class(ref.ref, f"{config.source}: task {self.name!r}")
        own_download = cls.download not in _base_downloads()
        if own_download and self.data_dir is not None:
            raise LmevalError(
                f"task {self.name!r}: lm-eval's class {cls.__name__} reads its data with its own download() "
                "(not a hub data set the offline mirror can serve): run it without --data-dir, "
                "where the hub is reachable"
            )
        run_cls = cls if own_download else type(cls.__name__, (cls,), {"download": self._download(),
                                                                       "__module__": cls.__module__})  # fmt: skip
        metadata = {**with_run_metadata(ref.config.get("metadata") or {}), "config_source": str(config.source)}
        ctor_config = {**ref.config, "task": self.name, "class": cls, "metadata": metadata}
        takes_config = "config" in inspect.signature(cls.__init__).parameters
        try:
            obj = run_cls(config=ctor_config) if takes_config else run_cls()
        except LmevalError:
            raise
        except Exception as exc:
            if self._splits is not None and self._splits.missing:
                raise next(iter(self._splits.missing.values())) from None
            raise LmevalError(
                f"task {self.name!r}: lm-eval's class {cls.__name__} failed to set up: {first_line(exc)}"
            ) from None
        if hasattr(obj, "config") and hasattr(obj.config, "task"):
            obj.config.task = self.name
        return obj

    def _effective_config(self, config: TaskConfig, obj: Any) -> TaskConfig:
        """Our config record of the class as it runs: its metrics, their aggregation and
        direction, its process_results, its filters."""
        where = f"task {self.name!r}"
        try:
            aggregation, higher = dict(obj.aggregation()), dict(obj.higher_is_better())
        except Exception as exc:
            raise LmevalError(
                f"{where}: lm-eval's class aggregation()/higher_is_better() failed: {first_line(exc)}"
            ) from None
        metric_list = [
            {"metric": m, "aggregation": _aggregation_spec(fn), "higher_is_better": bool(higher.get(m, True))}
            for m, fn in aggregation.items()
        ]
        filters = config.filters
        own_filters = obj.get_config("filter_list")
        if own_filters is not None:
            filters = build_pipelines(with_lmeval_filters(own_filters, {}, where), config.source, self.name)
        kind = obj.get_config("output_type")
        version = getattr(obj, "VERSION", None)
        return replace(
            config,
            dataset_path=getattr(obj, "DATASET_PATH", config.dataset_path),
            dataset_name=getattr(obj, "DATASET_NAME", config.dataset_name),
            metric_list=metric_list,
            process_results=obj.process_results,
            output_type=kind if kind in OUTPUT_TYPES else "generate_until",
            num_fewshot=self.num_fewshot,
            metadata={**config.metadata, **({"version": version} if version is not None else {})},
            filters=filters,
        )

    # -- requests ------------------------------------------------------------------------------
    def _chat_template(self) -> Callable[..., str] | None:
        chat = self.style.chat
        if chat is None:
            return None
        return lambda history, add_generation_prompt=True: chat(history, add_generation_prompt)

    def _call(self, what: str, doc_id: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LmevalError:
            raise
        except Exception as exc:
            raise LmevalError(
                f"task {self.name!r}: lm-eval's {type(self.lm_task).__name__}.{what} failed on document {doc_id}: "
                f"{first_line(exc)}"
            ) from None

    def _request(self, inst: Any, doc_id: int) -> list[Request]:
        """An lm-eval Instance as our requests, `repeats` of them (sampled ones seeded apart)."""
        kind, args = inst.request_type, tuple(inst.arguments)
        repeats = self.output.repeats
        if kind == "loglikelihood" and len(args) == 2:
            return [Request.loglikelihood(str(args[0]), str(args[1]))] * repeats
        if kind == "loglikelihood_rolling" and len(args) == 1:
            return [Request.loglikelihood_rolling(str(args[0]))] * repeats
        if kind == "generate_until" and len(args) == 2 and isinstance(args[1], dict):
            kwargs = dict(args[1])
            if not is_sampling(kwargs) or repeats == 1:
                return [Request.generate_until(str(args[0]), kwargs)] * repeats
            base = int(kwargs.pop("seed", self.seed))
            return [Request.generate_until(str(args[0]), {**kwargs, "seed": base + r}) for r in range(repeats)]
        raise LmevalError(
            f"task {self.name!r}: document {doc_id} asks for a {kind} request with {len(args)} arguments, "
            "which pytest-lmeval's text-only backends do not answer (images or audio?)"
        )

    def _build_next(self, doc_id: int) -> DocRequests:
        obj, doc = self.lm_task, self.docs[doc_id]
        chat = self._chat_template()
        ctx = self._call(
            "fewshot_context",
            doc_id,
            obj.fewshot_context,
            doc,
            num_fewshot=self.num_fewshot,
            system_instruction=self.style.system_instruction,
            apply_chat_template=chat is not None,
            fewshot_as_multiturn=self.style.fewshot_as_multiturn,
            chat_template=chat,
            gen_prefix=self._call("doc_to_prefix", doc_id, obj.doc_to_prefix, doc),
        )
        insts = self._call(
            "construct_requests",
            doc_id,
            obj.construct_requests,
            doc=doc,
            ctx=ctx,
            metadata=(self.name, doc_id, self.output.repeats),
            apply_chat_template=chat is not None,
            chat_template=chat,
        )
        insts = sorted(insts if isinstance(insts, list) else [insts], key=lambda i: i.idx)
        if not insts:
            raise LmevalError(f"task {self.name!r}: lm-eval's class built no requests for document {doc_id}")
        requests = tuple(r for inst in insts for r in self._request(inst, doc_id))
        target = self._call("doc_to_target", doc_id, obj.doc_to_target, doc)
        return DocRequests(self.name, doc_id, requests, (), target, None, requests[0].args[0])

    def build(self, doc_id: int) -> DocRequests:
        """The document's requests. The few-shot sampler advances document by document, as in
        lm-eval's build_all_requests, so earlier documents are built first."""
        while len(self._built) <= doc_id:
            self._built.append(self._build_next(len(self._built)))
        return self._built[doc_id]

    def contexts(self, doc_id: int) -> list[str]:
        return [r.args[0] for r in self.output.sample_requests(self.build(doc_id))]

    @property
    def fewshot_source(self) -> str:
        return f"lm-eval's {type(self.lm_task).__name__}.fewshot_docs()"


def task_for(config: TaskConfig, **kwargs: Any) -> Task:
    """The Task that runs a config: lm-eval's class for a `class:` task, else ours."""
    return ClassTask(config, **kwargs) if config.task_class is not None else Task(config, **kwargs)
