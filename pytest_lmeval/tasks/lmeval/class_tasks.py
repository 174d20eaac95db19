"""lm-eval's Python task classes (`class: !function task.SWDE`) and `custom_dataset` loaders.

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

What a class cannot run here is refused when its config is read, in one line: unitxt recipes
without the `unitxt` package, multimodal classes, classes that execute model-written code,
and classes whose module loads an HF `evaluate` metric that cannot be loaded.

A `custom_dataset: !function` loader is called as lm-eval calls it (the task's metadata and
dataset_kwargs as keyword arguments) when the documents are first needed.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...core.errors import LmevalError
from ...core.requests import DocRequests, Request, Response
from ...scoring.filters import DEFAULT_PIPELINE, build_pipelines
from ..config import TaskConfig
from ..outputs import OUTPUT_TYPES, OutputType, is_sampling
from ..prompts import PLAIN, PromptStyle
from ..sources import Hub
from ..task import Task
from . import catalogue_metrics

# Keys of a class task's YAML that are the registry's, not the class's.
_STRUCTURAL_KEYS = ("task", "class", "tag", "group", "task_list")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass(frozen=True, eq=False)
class ClassRef:
    """The `class:` reference of a task's YAML, with the rest of that YAML (what lm-eval hands
    the constructor); results.json shows it as the reference."""

    ref: Any
    config: Mapping[str, Any]

    def load(self) -> type:
        return self.ref.load() if hasattr(self.ref, "load") else self.ref

    def describe(self) -> str:
        return repr(self.ref) if hasattr(self.ref, "dotted") else f"{self.ref.__module__}.{self.ref.__qualname__}"

    def __repr__(self) -> str:
        return self.describe()


def _load_class(ref: Any, where: str) -> type:
    try:
        cls = ref.load() if hasattr(ref, "load") else ref
    except LmevalError as exc:
        raise LmevalError(f"{where}: {exc}") from None
    except Exception as exc:  # the class's module imports packages that are not installed
        raise LmevalError(
            f"{where}: its task class {ref!r} does not import ({_first_line(exc)}): install what its module needs"
        ) from None
    from lm_eval.api.task import Task as LmTask

    if not (isinstance(cls, type) and issubclass(cls, LmTask)):
        raise LmevalError(f"{where}: 'class' must name a subclass of lm-eval's Task, got {ref!r}")
    return cls


_EVALUATE_LOAD = re.compile(r"""evaluate\.load\(\s*["']([\w\-/]+)["']""")


def _evaluate_metrics(cls: type) -> list[str]:
    """The HF evaluate metrics the class's module loads by name (`evaluate.load("squad_v2")`)."""
    try:
        text = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return []
    return sorted(set(_EVALUATE_LOAD.findall(text)))


def class_task_config(name: str, data: dict[str, Any], source: Path) -> TaskConfig:
    """The config of a `class:` task: the class and its YAML, checked for what cannot run."""
    where = f"{source}: task {name!r}"
    ref = data["class"]
    if ("unitxt" in repr(ref).lower() or data.get("recipe") is not None) and importlib.util.find_spec("unitxt") is None:
        raise LmevalError(
            f"{where} is a unitxt recipe ({ref!r}): lm-eval's class runs it with the unitxt package, "
            "which is not installed: pip install unitxt"
        )
    if not catalogue_metrics.installed():
        raise LmevalError(f'{where} is lm-eval\'s task class {ref!r}: pip install "pytest-lmeval[catalogue]"')
    cls = _load_class(ref, where)
    if getattr(cls, "MULTIMODAL", False) or data.get("doc_to_image") is not None:
        raise LmevalError(f"{where}: image inputs (the multimodal task class {cls.__name__}) are not supported")
    if getattr(cls, "UNSAFE_CODE", False) or data.get("unsafe_code"):
        raise LmevalError(
            f"{where} executes model-written code (task class {cls.__name__}); pytest-lmeval does not run such tasks"
        )
    for metric in _evaluate_metrics(cls):
        problem = catalogue_metrics.hf_evaluate_problem(metric)
        if problem:
            raise LmevalError(f"{where}: metric {metric!r} is an HF evaluate metric, which {problem}")
    tags = data.get("tag") or []
    metadata = data.get("metadata")
    return TaskConfig(
        task=name,
        source=source,
        dataset_path=getattr(cls, "DATASET_PATH", None),
        dataset_name=getattr(cls, "DATASET_NAME", None),
        tag=[tags] if isinstance(tags, str) else list(tags),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        task_class=ClassRef(ref, {k: v for k, v in data.items() if k not in _STRUCTURAL_KEYS[1:]}),
        filters=(DEFAULT_PIPELINE,),
    )


# -- custom_dataset ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CustomDataset:
    """The documents a `custom_dataset` loader returns (a mapping of split to rows), loaded once."""

    loader: Callable[..., Any]
    kwargs: Mapping[str, Any]
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def _splits(self, task: str) -> Mapping[str, Any]:
        if "splits" not in self._loaded:
            try:
                out = self.loader(**self.kwargs)
            except LmevalError:
                raise
            except Exception as exc:  # offline, a missing package, a bad argument
                raise LmevalError(
                    f"task {task!r}: its custom_dataset loader {self.loader!r} failed ({_first_line(exc)}); "
                    "it reads its data itself (usually from the hub), so run where that works"
                ) from None
            if not isinstance(out, Mapping):
                raise LmevalError(
                    f"task {task!r}: custom_dataset loader {self.loader!r} must return a mapping of split to "
                    f"documents, got {type(out).__name__}"
                )
            self._loaded["splits"] = out
        return self._loaded["splits"]

    def rows(self, split: str, data_dir: Path | None, task: str) -> list[dict[str, Any]]:
        splits = self._splits(task)
        if split not in splits:
            raise LmevalError(
                f"task {task!r}: custom_dataset loader {self.loader!r} gave no {split!r} split "
                f"(it gave {sorted(splits)})"
            )
        docs = splits[split]
        return docs.to_list() if hasattr(docs, "to_list") else [dict(d) for d in docs]

    def describe(self) -> str:
        return f"custom_dataset {self.loader!r}"


def _without_remote_code(kwargs: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's download drops trust_remote_code under datasets 4, which has no loading scripts."""
    import datasets
    from packaging.version import parse

    if parse(datasets.__version__) >= parse("4.0.0"):
        kwargs.pop("trust_remote_code", None)
    return kwargs


def _custom_dataset(loader: Any, metadata: Mapping[str, Any], dataset_kwargs: Any, where: str) -> CustomDataset:
    """lm-eval's call: `custom_dataset(**metadata, **dataset_kwargs)`."""
    if not callable(loader):
        raise LmevalError(f"{where}: custom_dataset must be a !function loader, got {loader!r}")
    kwargs = _without_remote_code(dict(dataset_kwargs or {}))
    both = set(metadata) & set(kwargs)
    if both:
        raise LmevalError(f"{where}: custom_dataset gets {sorted(both)} from both metadata and dataset_kwargs")
    return CustomDataset(loader, {**metadata, **kwargs})


def custom_dataset_source(cfg: TaskConfig, where: str) -> CustomDataset:
    """A YAML task's loader, the metadata with the config's source as lm-eval's TaskFactory adds it."""
    metadata = {**(cfg.metadata or {}), "config_source": str(cfg.source)}
    return _custom_dataset(cfg.custom_dataset, metadata, cfg.dataset_kwargs, where)


# -- running a class --------------------------------------------------------------------------
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
    registry = catalogue_metrics._registry()
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
            raise LmevalError(f"{where}: its documents failed to load: {_first_line(exc)}") from None
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
                source: Any = _custom_dataset(custom, metadata, kwargs, f"task {task.name!r}")
            else:
                extra = _without_remote_code(dict(dataset_kwargs)) if isinstance(dataset_kwargs, dict) else {}
                source = Hub(str(lm_self.DATASET_PATH), lm_self.DATASET_NAME, extra)
            task._splits = _Splits(lambda split: source.rows(split, task.data_dir, task.name))
            lm_self.dataset = task._splits

        return download

    def _construct(self, config: TaskConfig) -> Any:
        ref: ClassRef = config.task_class
        catalogue_metrics._registry()  # lm-eval's logging quietened, as for its metrics
        cls = _load_class(ref.ref, f"{config.source}: task {self.name!r}")
        own_download = cls.download not in _base_downloads()
        if own_download and self.data_dir is not None:
            raise LmevalError(
                f"task {self.name!r}: lm-eval's class {cls.__name__} reads its data with its own download() "
                "(not a hub data set the offline mirror can serve): run it without --data-dir, "
                "where the hub is reachable"
            )
        run_cls = cls if own_download else type(cls.__name__, (cls,), {"download": self._download(),
                                                                       "__module__": cls.__module__})  # fmt: skip
        metadata = {**dict(ref.config.get("metadata") or {}), "config_source": str(config.source)}
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
                f"task {self.name!r}: lm-eval's class {cls.__name__} failed to set up: {_first_line(exc)}"
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
                f"{where}: lm-eval's class aggregation()/higher_is_better() failed: {_first_line(exc)}"
            ) from None
        metric_list = [
            {"metric": m, "aggregation": _aggregation_spec(fn), "higher_is_better": bool(higher.get(m, True))}
            for m, fn in aggregation.items()
        ]
        filters = config.filters
        own_filters = obj.get_config("filter_list")
        if own_filters is not None:
            from ..config import _with_lmeval_filters

            filters = build_pipelines(_with_lmeval_filters(own_filters, {}, where), config.source, self.name)
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
                f"{_first_line(exc)}"
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


__all__ = ["ClassTask", "CustomDataset", "class_task_config", "custom_dataset_source", "task_for"]
