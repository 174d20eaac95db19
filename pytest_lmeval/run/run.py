"""The run: one object per pytest session that owns the evaluation's life, from options to the
typed result.

    options -> selection (tasks, documents) -> requests (one DocRequests per item)
            -> answers (engine, cache) -> records (scored documents, per item)
            -> RunResult (aggregated, features' parts, documents not scored and why)

The pytest hooks (collection.py, items.py, ending.py) call into it; features keep their own
state and add their part through the run's hooks (hookspecs.py). Nothing of a run outlives it:
a second run in the same process starts from a new Run.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError
from ..core.requests import DocRequests, Request, Response
from ..engine.cache import ResponseCache, open_response_cache
from ..engine.fingerprint import fingerprint_record
from ..engine.unscored import ERROR, NOT_RUN, Unscored, doc_of_nodeid, entries, refused
from ..features.perturbation import perturb_work
from ..features.xdist import Xdist
from ..models.hub import pinned_revisions
from ..models.spec import redact_args, redact_args_text
from ..scoring.aggregate import aggregate
from ..scoring.document import sha256
from ..tasks.lmeval.yaml_loader import run_random
from ..tasks.run_metadata import task_metadata
from .doc_ref import lmeval_ref
from .options import RunOptions
from .result import RunResult
from .selection import Selection
from .signals import StopSignals


class Run:
    stash_key = pytest.StashKey["Run"]()

    def __init__(self, config: pytest.Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.started = datetime.now(timezone.utc)
        self.selection = Selection(config, options)
        self.work: dict[str, DocRequests] = {}  # nodeid -> requests (this process's items)
        self.answers: dict[Request, Response] | None = None
        self.records: list[dict[str, Any]] = []  # controller: scored documents
        self.perturbed: list[dict[str, Any]] = []  # controller: records of perturbed documents
        self.failures: list[dict[str, Any]] = []  # controller: documents whose scoring broke
        self.unscored = Unscored()  # controller: selected documents with no score, and why
        self.model_info: dict[str, Any] = {}
        self.engine_stats: dict[str, Any] = {}
        self.answered: float | None = None  # perf_counter() once this process's answers were in
        self.stopped: str | None = None  # why the run stopped early (a backend gave up, an interruption)
        self.stop_repeats = False  # the fault the run stopped at would happen again: no "rerun" advice
        self.interrupted_by: str | None = None  # Ctrl-C or a stop signal's name, once one stopped the run
        self.result: RunResult | None = None
        self._cache: ResponseCache | None = None
        self._worker_cache: dict[str, Any] | None = None  # xdist controller: the workers' cache record
        self.signals = StopSignals()  # SIGTERM and SIGHUP stop the run as Ctrl-C does
        self._resources = contextlib.ExitStack()  # what the run holds open until it closes
        self._resources.enter_context(pinned_revisions())
        # process_docs helpers see the global generator as one lm-eval run advances it
        self._resources.enter_context(run_random())
        # what lm-eval merges into every task's metadata: the model's arguments, --task-metadata
        self._resources.enter_context(task_metadata(options.run_metadata()))

    def close(self) -> None:
        """Release what the run holds: its cache connection, its pinned hub revisions, its
        process_docs generator."""
        if self._cache is not None:
            self._cache.close()
        self.signals.restore()
        self._resources.close()

    @classmethod
    def of(cls, config: pytest.Config) -> Run:
        return config.stash[cls.stash_key]

    @property
    def tasks(self) -> dict[str, Any]:
        return self.selection.tasks

    @property
    def registry(self) -> Any:
        return self.selection.registry

    @property
    def xdist(self) -> Xdist:
        return Xdist.of(self.config)

    @property
    def is_worker(self) -> bool:
        return self.xdist.is_worker

    @property
    def wants_samples(self) -> bool:
        """Per-document samples travel on reports when logged, or when a baseline comparison
        shows flipped documents with their prompts."""
        return self.options.log_samples or self.options.baseline is not None

    # -- requests and answers ------------------------------------------------------------------
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

    def cache_record(self) -> dict[str, Any]:
        """Whether answers were cached and why (the terminal's line), and the fingerprint they
        were keyed by (results.json), as this process saw them; under xdist the controller
        shows the workers' (it answers nothing itself)."""
        if self._cache is None:
            return self._worker_cache or {}
        spec = self.options.model
        record = self._cache.record() or None
        if record is None and spec is not None:
            record = fingerprint_record(spec.backend, spec.name, redact_args(spec.args))
        return {"note": self._cache.note, "fingerprint": record, "stored": self._cache.enabled and self._cache.writable}

    def keep(self, record: dict[str, Any]) -> None:
        """A document's record as its report arrives on the controller."""
        if "error" in record:
            self.failures.append(record)
        else:
            (self.perturbed if record.get("perturbation") else self.records).append(record)

    # -- the end ---------------------------------------------------------------------------------
    def worker_output(self, items: list[pytest.Item]) -> dict[str, Any]:
        """What an xdist worker sends the controller at its end (see Xdist.outputs)."""
        mine = [self.work[i.nodeid] for i in items if i.nodeid in self.work]
        out: dict[str, Any] = {"engine": self.engine_stats, "model_info": self.model_info, "stopped": self.stopped}
        out["cache"] = self.cache_record()  # the controller opens no cache: it reports the workers'
        out["unscored"] = [[t, d, status, why] for (t, d), (status, why) in refused(mine, self.answers).items()]
        return out

    def gather(self, session: pytest.Session, exitstatus: int) -> None:
        """On the controller: what the workers sent, and every selected document with neither
        a score nor an error, and why."""
        for out in self.xdist.outputs:
            self.model_info = self.model_info or out["model_info"]
            for key, value in out["engine"].items():
                if isinstance(value, (int, float)):
                    self.engine_stats[key] = self.engine_stats.get(key, 0) + value
            self.engine_stats.setdefault("workers", []).append(out["engine"])
            self._worker_cache = self._worker_cache or out.get("cache")
            self.stopped = self.stopped or out.get("stopped")
            for task, doc_id, status, reason in out.get("unscored", ()):
                self.unscored.add((task, doc_id), reason, status)
        for key, (status, why) in self.xdist.not_run().items():
            self.unscored.add(key, why, status)
        gaps = self.unscored
        gaps.interrupted = self.interrupted_by is not None
        if gaps.interrupted:
            why = f"the run was interrupted ({self.interrupted_by}) before it was scored"
        else:
            why = f"the session stopped early ({session.shouldfail or session.shouldstop or 'before it ran'})"
        if self.work:  # a run without xdist: this process ran every document
            gaps.docs.update(refused(self.work.values(), self.answers))
            done = {(r["task"], r["doc_id"]) for r in self.records + self.failures + self.perturbed}
            for work in self.work.values():
                if (work.task, work.doc_id) not in done:
                    gaps.add((work.task, work.doc_id), why)
            cache = self.open_cache()
            if gaps.interrupted and cache is not None:
                needed = {r for w in self.work.values() for r in w.requests}
                gaps.cached, gaps.total = len(cache.lookup(needed)), len(needed)
        else:  # xdist: what no worker got to
            for nodeid in self.xdist.left_over():
                key = doc_of_nodeid(nodeid)
                if key is not None:
                    gaps.add(key, why)

    @property
    def has_output(self) -> bool:
        """Whether anything was scored, or broke: a run that did neither writes no reports."""
        errors = any(status == ERROR for status, _ in self.unscored.docs.values())
        return bool(self.records or self.failures or self.stopped or errors)

    def conclude(self) -> RunResult:
        """Aggregate the scored documents and let every feature add its part (gates, baseline,
        robustness, efficiency): the run's result, built once on the controller when every
        document ran; called again at the session's end, it takes in what was learnt since
        (the documents not scored, the workers' figures)."""
        if self.result is None:
            # in document order, as one process scores them: under xdist reports arrive in any
            # order, and a float sum in another order can differ in its last digit
            self.records.sort(key=lambda r: (r["task"], r["doc_id"]))
            sel = self.selection
            self.result = RunResult(
                model=self.options.model.label if self.options.model else None,
                config={},
                results=aggregate(self.records, sel.tasks, sel.registry, sel.picked),
                tasks=sel.tasks,
                registry=sel.registry,
                records=self.records,
                perturbed=self.perturbed,
                prompts=self._prompt_record(),
            )
            self.config.hook.pytest_lmeval_conclude(result=self.result)
            if self.options.predict_only:
                self.result.lines.append(
                    f"lmeval: --predict-only: {len(self.records)} documents answered and logged (samples/), none scored"
                )
        result = self.result
        result.not_scored = entries(self.failures, self.unscored.docs, self.records)
        cache = self.cache_record()  # a fingerprint is hashed files: asked once
        result.config = self._config_record(cache)
        result.model_info = self.model_info
        result.engine = self.engine_stats
        result.stopped = self.stopped
        result.cache_note = cache.get("note")
        ended = datetime.now(timezone.utc)
        result.timings = {
            "start_time": self.started.isoformat(),
            "end_time": ended.isoformat(),
            "total_evaluation_time_seconds": str((ended - self.started).total_seconds()),
            # from the last answer to these results: scoring every document, aggregating, gates
            # (null where this process computed no answers: an xdist controller)
            "scoring_seconds": None if self.answered is None else round(time.perf_counter() - self.answered, 3),
        }
        result.resume_note = self._resume_note()
        return result

    def output_dir(self) -> Path:
        # reports/ under the folder pytest was started in (not the rootdir, which outside a
        # project can be the data mirror's folder)
        return self.options.output_dir(self.config.invocation_params.dir, self.started)

    def _config_record(self, cache: dict[str, Any]) -> dict[str, Any]:
        opts = self.options
        return {
            "model": opts.model.backend if opts.model else None,
            "model_name": opts.model.shown_name if opts.model else None,  # as typed
            "model_path": opts.model.name if opts.model else None,  # what it resolved to, and loaded
            "model_args": redact_args_text(opts.model_args_text),
            "model_args_parsed": redact_args(opts.model.args) if opts.model else {},
            "batch_size": opts.batch_size,
            "device": opts.device,
            "limit": opts.limit,
            "samples": {k: list(v) for k, v in opts.samples.items()} if opts.samples else None,
            "predict_only": opts.predict_only,
            "num_fewshot": opts.num_fewshot,
            "fewshot_seed": opts.seed,
            "tasks": opts.tasks,
            "data_dir": str(opts.data_dir) if opts.data_dir else None,
            "log_samples": opts.log_samples,
            "item_outcome": opts.item_outcome,
            "gen_kwargs": opts.gen_kwargs,
            "task_metadata": redact_args(opts.task_metadata) or None,
            "model_fingerprint": cache.get("fingerprint"),
        }

    def _prompt_record(self) -> dict[str, Any]:
        """How prompts were rendered, under lm-eval's top-level results.json keys."""
        chat = self.selection.chat_template
        instruction = self.options.system_instruction
        return {
            "system_instruction": instruction,
            "system_instruction_sha": sha256(instruction) if instruction else None,
            "fewshot_as_multiturn": self.options.fewshot_as_multiturn,
            "chat_template": chat.source if chat else None,
            "chat_template_name": chat.name if chat else None,
            "chat_template_sha": chat.sha256 if chat else None,
        }

    def _resume_note(self) -> tuple[str, str] | None:
        """What a rerun of the same command does, as (colour, line), when part of the run is
        missing: resume from the cache, or start over."""
        gaps = self.unscored
        # whether this run's answers were stored: this process's cache (never opened here just to
        # ask: an xdist controller answers nothing), else what the workers said of theirs
        if self._cache is not None:
            cached = self._cache.enabled and self._cache.writable
        else:
            cached = bool((self._worker_cache or {}).get("stored"))
        if gaps.interrupted:
            if gaps.cached is not None:
                left = (gaps.total or 0) - gaps.cached
                return "yellow", (
                    f"lmeval: interrupted: {gaps.cached} answers cached; rerun the same command to resume "
                    f"({left} left to compute)"
                )
            if cached:
                return "yellow", (
                    "lmeval: interrupted: the answers finished are cached; rerun the same command to resume"
                )
            return "yellow", "lmeval: interrupted: nothing is cached (--no-cache); a rerun starts over"
        if self.stop_repeats:  # out of memory at one row: the same command fails the same way
            return "", (
                "lmeval: the answers finished are cached; the rest need more memory than was free "
                "(the same command with more free memory computes only them)"
            )
        if cached and any(status == NOT_RUN for status, _ in gaps.docs.values()):
            return "", "lmeval: the answers finished are cached; rerun the same command to compute the rest"
        return None
