"""A task at run time: its documents, their prompts (with few-shot examples) and requests.

Prompt assembly and few-shot sampling follow lm-evaluation-harness 0.4.13's ConfigurableTask
exactly (fewshot_context, build_qa_turn, construct_requests): the sampler is one
`random.Random(seed)` that advances document by document in data set order, so a document's
examples do not depend on which other documents were selected with `-k`.

Multiple-input tasks (Winogrande) are the one shape where the document's question is not text:
`doc_to_text` gives the index of the right choice, each "choice" is a whole context, and the
single continuation from `doc_to_target` is scored after each of them. The task states it
(`multiple_input`) and the requests say it plainly: one loglikelihood request per context,
all with the same continuation.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError
from ..core.requests import DocRequests
from . import templates
from .config import TaskConfig
from .data import apply_process_docs
from .outputs import output_type
from .prompts import PLAIN, Message, PromptStyle, maybe_delimit, qa_turn


def _ends_with_whitespace(text: str | None) -> bool:
    return bool(text) and text[-1].isspace()


class Task:
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
        self.config = config
        self.name = config.task
        self.data_dir = data_dir
        # lm-eval: --num_fewshot overrides the task's, except a task that fixes 0 shots.
        if num_fewshot is not None and config.num_fewshot != 0:
            self.num_fewshot = num_fewshot
        else:
            self.num_fewshot = config.num_fewshot or 0
        self.seed = config.fewshot_seed if config.fewshot_seed is not None else seed
        self.style = style
        self.output = output_type(config.output_type)
        self.generation_kwargs = self.output.run_kwargs(config, gen_kwargs)
        rows = config.source_data.rows(config.eval_split, data_dir, config.task)
        self.rows_read = len(rows)  # before process_docs: says why a task has no documents
        self.docs = apply_process_docs(config.process_docs, rows, config.task) if config.process_docs else rows
        self.original_size = len(self.docs)
        if limit is not None:
            n = int(limit) if limit >= 1 else math.ceil(len(self.docs) * limit)
            self.docs = self.docs[:n]
        # lm-eval's FewshotConfig: its own keys win over the task's (formatting fields only
        # when set, since a None there falls back to the task's field).
        fs = config.fewshot_config
        self._fs_text = fs.get("doc_to_text") if fs.get("doc_to_text") is not None else config.doc_to_text
        self._fs_choice = fs.get("doc_to_choice") if fs.get("doc_to_choice") is not None else config.doc_to_choice
        self._fs_target = fs.get("doc_to_target") if fs.get("doc_to_target") is not None else config.doc_to_target
        self._fs_target_delim = fs.get("target_delimiter", config.target_delimiter)
        self._fs_delim = fs.get("fewshot_delimiter", config.fewshot_delimiter)
        self._fs_gen_prefix = fs.get("gen_prefix", config.gen_prefix)
        self._fewshot_docs: list[dict[str, Any]] | None = None
        self._sampled: list[list[int]] = []
        self._rng = random.Random(self.seed)
        self.multiple_input = self._is_multiple_input()

    # -- data ---------------------------------------------------------------------------------
    def _load(self, split: str, process_docs: Any) -> list[dict[str, Any]]:
        cfg = self.config
        rows = cfg.source_data.rows(split, self.data_dir, cfg.task)
        return apply_process_docs(process_docs, rows, cfg.task) if process_docs else rows

    def empty_reason(self) -> str | None:
        """Why the task has no documents to evaluate, naming where they were read (None when
        it has some): a run that selects nothing must not pass as if it had evaluated them."""
        if self.docs:
            return None
        source = self.config.source_data
        try:
            split = self.config.eval_split
            where = source.where(split, self.data_dir) if hasattr(source, "where") else source.describe()
        except LmevalError:
            split, where = "?", source.describe()
        read = getattr(self, "rows_read", 0)
        if self.original_size:
            why = f"the limit kept none of its {self.original_size} documents"
        elif read:
            why = f"its process_docs kept none of the {read} rows of split {split!r}"
        else:
            why = f"split {split!r} has no rows"
        return f"no documents in {where} ({why})"

    def _is_multiple_input(self) -> bool:
        """lm-eval decides from the first document: an int question with choices."""
        if self.config.doc_to_choice is None or not self.docs:
            return False
        return isinstance(self._field("doc_to_text", self.config.doc_to_text, self.docs[0], "document 0"), int)

    @property
    def _fewshot_split(self) -> str | None:
        """lm-eval's fewshot_config.split: the config's own, else fewshot_split."""
        fs = self.config.fewshot_config
        return fs.get("split", self.config.fewshot_split)

    @property
    def fewshot_source(self) -> str:
        """Where few-shot examples come from, for messages and results."""
        if self._fewshot_split:
            return f"split {self._fewshot_split!r}"
        if self.config.fewshot_config.get("samples") is not None:
            return "the task's fewshot_config samples"
        return f"split {self.config.fewshot_source_split!r}"

    @property
    def fewshot_docs(self) -> list[dict[str, Any]]:
        """lm-eval's fewshot_docs: fewshot split, else fewshot_config samples, else the first
        of the training, validation and test splits; fewshot_indices narrows the pool."""
        if self._fewshot_docs is None:
            fs = self.config.fewshot_config
            samples = fs.get("samples")
            if self._fewshot_split:
                docs = self._load(self._fewshot_split, fs.get("process_docs", self.config.process_docs))
            elif samples is not None:
                docs = samples() if callable(samples) else samples
                if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
                    raise LmevalError(f"task {self.name!r}: fewshot_config samples must be a list of documents")
                docs = [dict(d) for d in docs]
            else:
                split = self.config.fewshot_source_split
                if split is None:
                    raise LmevalError(f"task {self.name!r}: {self.num_fewshot}-shot needs a few-shot split")
                docs = self._load(split, self.config.process_docs)
            indices = fs.get("fewshot_indices")
            if indices:
                docs = [docs[i] for i in indices]
            if len(docs) < self.num_fewshot:
                raise LmevalError(
                    f"task {self.name!r}: {self.num_fewshot}-shot asked, but {self.fewshot_source} "
                    f"holds only {len(docs)} documents"
                )
            self._fewshot_docs = docs
        return self._fewshot_docs

    @property
    def _excludes_eval_doc(self) -> bool:
        # lm-eval passes the evaluated document to the sampler (to leave it out) exactly when
        # fewshot_config.split equals test_split, which includes both being unset; a Python
        # task says it plainly.
        if self.config.fewshot_excludes_doc is not None:
            return self.config.fewshot_excludes_doc
        return self._fewshot_split == self.config.test_split

    # -- few-shot -----------------------------------------------------------------------------
    def fewshot_indices(self, doc_id: int) -> list[int]:
        n = self.num_fewshot
        if n == 0:
            return []
        pool = self.fewshot_docs
        doc = self.docs[doc_id]
        if self.config.sampler == "first_n":
            if self._excludes_eval_doc:
                return [i for i, d in enumerate(pool) if d != doc][:n]
            return list(range(n))
        if self.config.sampler != "default":
            raise LmevalError(f"task {self.name!r}: unknown few-shot sampler {self.config.sampler!r}")
        # The random sampler's state depends on every earlier document: replay in order.
        while len(self._sampled) <= doc_id:
            self._sampled.append(self._draw(self.docs[len(self._sampled)], pool, n))
        return self._sampled[doc_id]

    def _draw(self, doc: dict[str, Any], pool: list[dict[str, Any]], n: int) -> list[int]:
        if not self._excludes_eval_doc:
            return self._rng.sample(range(len(pool)), n)
        picked = [i for i in self._rng.sample(range(len(pool)), n + 1) if pool[i] != doc][:n]
        if len(picked) < n:  # several copies of the document in the pool: resample without it
            rest = [i for i, d in enumerate(pool) if d != doc]
            picked = [rest[j] for j in self._rng.sample(range(len(rest)), n)]
        return picked

    def _fewshot_turns(self, index: int) -> list[Message]:
        doc = self.fewshot_docs[index]
        where = f"few-shot document {index} of {self.fewshot_source}"
        q = self._field("doc_to_text", self._fs_text, doc, where)
        choices = self._field("doc_to_choice", self._fs_choice, doc, where) if self._fs_choice else None
        a = self._field("doc_to_target", self._fs_target, doc, where)
        prefix = templates.resolve_field(self._fs_gen_prefix, doc) if self._fs_gen_prefix else None
        if self.multiple_input:  # the question is the index of the right context
            q, choices = choices[q], None
        if a is None or a == "":
            answer = None
        elif choices and isinstance(a, int):
            answer = choices[a]
        elif isinstance(a, list):
            answer = a[0]
        else:
            answer = a
        if not isinstance(q, str) or (answer is not None and not isinstance(answer, str)):
            raise LmevalError(
                f"task {self.name!r}: {where}: few-shot question and answer must be text, "
                f"got {type(q).__name__} and {type(answer).__name__}"
            )
        return qa_turn(
            q,
            answer,
            gen_prefix=prefix or None,
            target_delimiter=self._fs_target_delim,
            fewshot_delimiter=self._fs_delim,
        )

    # -- prompts and requests -----------------------------------------------------------------
    def _field(self, name: str, spec: Any, doc: dict[str, Any], where: str) -> Any:
        has_choices = self.config.doc_to_choice is not None
        try:
            if name == "doc_to_text":
                return templates.doc_to_text(spec, doc, has_choices=has_choices)
            if name == "doc_to_target":
                return templates.doc_to_target(spec, doc, has_choices=has_choices)
            if name == "doc_to_choice":
                return templates.doc_to_choice(spec, doc)
            return templates.resolve_field(spec, doc)
        except templates.TemplateError as exc:
            raise LmevalError(f"task {self.name!r}: {name} failed on {where}: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LmevalError(f"task {self.name!r}: {name} failed on {where}: {type(exc).__name__}: {exc}") from None

    def gen_prefix(self, doc_id: int) -> str | None:
        spec = self.config.gen_prefix
        if spec is None:
            return None
        return self._field("gen_prefix", spec, self.docs[doc_id], f"document {doc_id}")

    def _shared_turns(self, doc_id: int) -> list[Message]:
        """System instruction and description, then the few-shot examples."""
        doc = self.docs[doc_id]
        description = self._field("description", self.config.description, doc, f"document {doc_id}") or ""
        system = maybe_delimit(self.style.system_instruction, description, self.config.fewshot_delimiter)
        turns = [Message("system", system)] if system else []
        for i in self.fewshot_indices(doc_id):
            turns += self._fewshot_turns(i)
        return turns

    def contexts(self, doc_id: int) -> list[str]:
        """The document's prompt; for a multiple-input task, one per choice."""
        doc = self.docs[doc_id]
        where = f"document {doc_id}"
        question = self._field("doc_to_text", self.config.doc_to_text, doc, where)
        prefix = self.gen_prefix(doc_id)
        shared = self._shared_turns(doc_id)
        if self.multiple_input:
            inputs = self._field("doc_to_choice", self.config.doc_to_choice, doc, where) or []
            if not isinstance(inputs, (list, tuple)):
                raise LmevalError(f"task {self.name!r}: doc_to_choice must give a list of contexts on {where}")
            return [
                self.style.render(shared + qa_turn(q, gen_prefix=prefix, target_delimiter=""), prefix) for q in inputs
            ]
        if question is None and not self.output.needs_prompt:
            question = ""
        if not isinstance(question, str):
            raise LmevalError(f"task {self.name!r}: doc_to_text must give text on {where}, got {question!r}")
        turns = shared + qa_turn(question, gen_prefix=prefix, target_delimiter=self.config.target_delimiter)
        return [self.style.render(turns, prefix)]

    def context(self, doc_id: int) -> str:
        return self.contexts(doc_id)[0]

    def field(self, name: str, spec: Any, doc_id: int) -> Any:
        """A prompt field of evaluated document `doc_id`, with errors naming task and document."""
        return self._field(name, spec, self.docs[doc_id], f"document {doc_id}")

    def continuation_delimiter(self) -> str:
        """lm-eval's construct_requests: under a chat template, the answer follows the
        assistant turn directly unless a gen_prefix without trailing space precedes it."""
        cfg = self.config
        if self.style.chat is None:
            return cfg.target_delimiter
        return cfg.target_delimiter if cfg.gen_prefix and not _ends_with_whitespace(cfg.gen_prefix) else ""

    def build(self, doc_id: int) -> DocRequests:
        target = self.field("doc_to_target", self.config.doc_to_target, doc_id)
        return self.output.build(self, doc_id, self.contexts(doc_id), target)

    def ids(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(len(self.docs))]
