"""A task at run time: its documents, their prompts (with few-shot examples) and requests.

Prompt assembly and few-shot sampling follow lm-evaluation-harness 0.4.x exactly: the sampler
is one `random.Random(seed)` that advances document by document in data set order, so a
document's examples do not depend on which other documents were selected with `-k`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LmevalError
from ..requests import Request
from . import templates
from .config import TaskConfig
from .data import apply_process_docs, load_split


@dataclass(frozen=True)
class DocRequests:
    """What one document asks of the model, and what scoring needs besides the answers."""

    task: str
    doc_id: int
    requests: tuple[Request, ...]
    choices: tuple[str, ...]
    target: Any


def _maybe_delimit(prefix: str | None, suffix: str | None, delimiter: str = " ") -> str:
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


class Task:
    def __init__(
        self,
        config: TaskConfig,
        *,
        data_dir: Path | None,
        num_fewshot: int | None = None,
        limit: int | float | None = None,
        seed: int = 1234,
    ) -> None:
        self.config = config
        self.name = config.task
        self.data_dir = data_dir
        self.num_fewshot = num_fewshot if num_fewshot is not None else (config.num_fewshot or 0)
        self.seed = seed
        self.docs = self._load(config.eval_split, config.process_docs)
        self.original_size = len(self.docs)
        if limit is not None:
            n = int(limit) if limit >= 1 else math.ceil(len(self.docs) * limit)
            self.docs = self.docs[:n]
        fs = config.fewshot_config
        self._fs_text = fs.get("doc_to_text") or config.doc_to_text
        self._fs_choice = fs.get("doc_to_choice") or config.doc_to_choice
        self._fs_target = fs.get("doc_to_target") or config.doc_to_target
        self._fs_target_delim = fs.get("target_delimiter", config.target_delimiter)
        self._fs_delim = fs.get("fewshot_delimiter", config.fewshot_delimiter)
        self._fs_gen_prefix = fs.get("gen_prefix", config.gen_prefix)
        self._fewshot_docs: list[dict[str, Any]] | None = None
        self._fewshot_text: dict[int, str] = {}
        self._sampled: list[list[int]] = []
        self._rng = random.Random(seed)

    # -- data ---------------------------------------------------------------------------------
    def _load(self, split: str, process_docs: Any) -> list[dict[str, Any]]:
        cfg = self.config
        rows = load_split(cfg.dataset_path, cfg.dataset_name, split, self.data_dir, cfg.task)
        return apply_process_docs(process_docs, rows, cfg.task) if process_docs else rows

    @property
    def fewshot_docs(self) -> list[dict[str, Any]]:
        if self._fewshot_docs is None:
            split = self.config.fewshot_source_split
            if split is None:
                raise LmevalError(f"task {self.name!r}: {self.num_fewshot}-shot needs a few-shot split")
            process = self.config.fewshot_config.get("process_docs", self.config.process_docs)
            self._fewshot_docs = self._load(split, process)
            if len(self._fewshot_docs) < self.num_fewshot:
                raise LmevalError(
                    f"task {self.name!r}: {self.num_fewshot}-shot asked, but split {split!r} "
                    f"holds only {len(self._fewshot_docs)} documents"
                )
        return self._fewshot_docs

    @property
    def _excludes_eval_doc(self) -> bool:
        return self.config.fewshot_source_split == self.config.test_split

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

    def _fewshot_example(self, index: int) -> str:
        text = self._fewshot_text.get(index)
        if text is None:
            doc = self.fewshot_docs[index]
            where = f"few-shot document {index} of split {self.config.fewshot_source_split!r}"
            q = self._field("doc_to_text", self._fs_text, doc, where)
            choices = self._field("doc_to_choice", self._fs_choice, doc, where) if self._fs_choice else None
            a = self._field("doc_to_target", self._fs_target, doc, where)
            if isinstance(a, int) and choices:
                answer = choices[a]
            elif isinstance(a, list):
                answer = a[0]
            else:
                answer = a
            if not isinstance(q, str) or not isinstance(answer, str):
                raise LmevalError(
                    f"task {self.name!r}: {where}: few-shot question and answer must be text, "
                    f"got {type(q).__name__} and {type(answer).__name__}"
                )
            prefix = templates.resolve_field(self._fs_gen_prefix, doc) if self._fs_gen_prefix else None
            text = q + self._fs_target_delim + _maybe_delimit(prefix, answer) + self._fs_delim
            self._fewshot_text[index] = text
        return text

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

    def context(self, doc_id: int) -> str:
        doc = self.docs[doc_id]
        where = f"document {doc_id}"
        description = self._field("description", self.config.description, doc, where)
        question = self._field("doc_to_text", self.config.doc_to_text, doc, where)
        if not isinstance(question, str):
            raise LmevalError(f"task {self.name!r}: doc_to_text must give text on {where}, got {question!r}")
        shots = "".join(self._fewshot_example(i) for i in self.fewshot_indices(doc_id))
        return description + shots + question

    def build(self, doc_id: int) -> DocRequests:
        cfg = self.config
        doc = self.docs[doc_id]
        where = f"document {doc_id}"
        ctx = self.context(doc_id)
        target = self._field("doc_to_target", cfg.doc_to_target, doc, where)
        if cfg.output_type == "multiple_choice":
            choices = tuple(self._field("doc_to_choice", cfg.doc_to_choice, doc, where))
            if not choices or not all(isinstance(c, str) for c in choices):
                raise LmevalError(f"task {self.name!r}: doc_to_choice must give a list of strings on {where}")
            requests = tuple(Request.loglikelihood(ctx, f"{cfg.target_delimiter}{c}") for c in choices)
        else:  # loglikelihood
            if not isinstance(target, str):
                raise LmevalError(f"task {self.name!r}: doc_to_target must give text on {where}")
            choices = ()
            requests = (Request.loglikelihood(ctx, target),)
        return DocRequests(self.name, doc_id, requests, choices, target)

    def ids(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(len(self.docs))]
