"""`evaluate(...)`: a run from Python, returning its `RunResult`.

It is the command line's run, in this process: the keywords become the command line's options
(`--limit=50`, `--threshold=...`), read from the option table the plugin registers (options.py),
so a new option is a keyword without any change here, and `pytest.main` runs them with a plugin
of our own that keeps the result the run concluded and the one-line error of bad input. Nothing
outlives the call: each call is its own pytest session with its own Run.

A model already in memory (a transformers model and its tokenizer) is the run's `lm` fixture,
overridden by that plugin (models/hf/in_memory.py); the run names it by a folder of its identity
files, so its answers are cached under a hash of its weights like a checkpoint's.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import LmevalError, interruption_name
from ..core.files import default_cache_dir
from .option_table import addoptions
from .result import RunResult
from .run import Run

# evaluate's own keywords (the rest are the command line's options)
OWN = ("model", "tasks", "tokenizer", "write_reports", "quiet", "pytest_args")
_JSON = ("gen_kwargs", "task_args", "samples", "task_metadata")  # options that read a JSON object
_JOIN = {"include_path": os.pathsep}  # how a list is joined, where not by commas


class EvaluationError(RuntimeError):
    """The run ended before it had a result: bad input (its one `ERROR:` line is the message),
    no document selected, or pytest's own failure. `output` holds what the run printed."""

    def __init__(self, message: str, exit_code: int, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output


@dataclass(frozen=True)
class Flag:
    """One command-line option as a keyword: `--model-args` is `model_args`."""

    flag: str
    dest: str
    action: str | None = None
    nargs: str | None = None

    def args(self, value: Any) -> list[str]:
        """The option's command-line words for `value` (none for None or a false switch)."""
        if value is None:
            return []
        if self.action == "store_true":
            return [self.flag] if value else []
        if self.action == "append":
            values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            return [f"{self.flag}={_text(self.dest, v)}" for v in values]
        if self.nargs == "?" and value is True:
            return [self.flag]
        if self.nargs == "?" and value is False and self.dest == "apply_chat_template":
            return []
        return [f"{self.flag}={_text(self.dest, value)}"]


def _text(dest: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        if dest in _JSON:
            return json.dumps(value)
        return ",".join(f"{k}={_text(dest, v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return _JOIN.get(dest, ",").join(_text(dest, v) for v in value)
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


class _Recorder:
    """Stands in for pytest's parser to read the options `addoptions` registers."""

    def __init__(self) -> None:
        self.flags: list[Flag] = []

    def getgroup(self, *args: Any, **kwargs: Any) -> _Recorder:
        return self

    def addoption(self, *names: str, **attrs: Any) -> None:
        dest = attrs["dest"].removeprefix("lmeval_")
        for name in names:
            self.flags.append(Flag(name, dest, attrs.get("action"), attrs.get("nargs")))

    def addini(self, *args: Any, **kwargs: Any) -> None:
        pass


def option_flags() -> dict[str, Flag]:
    """Keyword -> option, for every option of the command line: its destination's name
    (`model_args`, `apply_chat_template`) and each flag's own (`chat_template`)."""
    recorder = _Recorder()
    addoptions(recorder)  # type: ignore[arg-type]
    out: dict[str, Flag] = {}
    for flag in recorder.flags:  # a destination's first flag is its keyword's
        out.setdefault(flag.dest, flag)
        out.setdefault(flag.flag.lstrip("-").replace("-", "_"), flag)
    return out


def command_line(tasks: Any, options: dict[str, Any], flags: dict[str, Flag] | None = None) -> list[str]:
    """The command line's options for evaluate's keywords (TypeError naming an unknown one)."""
    flags = flags if flags is not None else option_flags()
    unknown = [k for k in options if k not in flags]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, [*flags, *OWN], n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise TypeError(
            f"evaluate() got an unexpected keyword argument {name!r}{hint} (its keywords are the command line's "
            f"options: {', '.join(sorted(k for k in flags if k == flags[k].dest))})"
        )
    args: list[str] = []
    if tasks is not None:
        args += flags["tasks"].args(tasks)
    for name, value in options.items():
        args += flags[name].args(value)
    return args


class _Kept(io.StringIO):
    """What a quiet run prints (sys.stdout and sys.stderr), kept for a failed run's error."""

    encoding = "utf-8"  # pytest's terminal writer asks; a StringIO says None


@contextlib.contextmanager
def _captured(quiet: bool) -> Iterator[io.StringIO]:
    kept = _Kept()
    if not quiet:  # shown as the command line shows it
        yield kept
        return
    with contextlib.redirect_stdout(kept), contextlib.redirect_stderr(kept):
        yield kept


class InMemoryModel:
    """A model object in memory for one run: the folder of its identity files the run names as
    its model (`--model hf:FOLDER`, see models/hf/in_memory.py), its `lm` fixture, and its mode
    (training or eval) put back after the run."""

    def __init__(self, model: Any, tokenizer: Any, folder: Path, cache_note: str | None) -> None:
        from ..models.hf.in_memory import model_name

        self.model = model
        self.tokenizer = tokenizer
        self.folder = folder
        self.cache_note = cache_note
        self.label = f"hf:{model_name(model)} (in memory)"

    @property
    def spec_text(self) -> str:
        return f"hf:{self.folder}"

    @classmethod
    @contextlib.contextmanager
    def prepared(cls, model: Any, tokenizer: Any, options: dict[str, Any]) -> Iterator[InMemoryModel]:
        """Its identity folder, hashed unless `no_cache` (or too large to hash: then not
        cached, which sets `no_cache` and says so in one line), for the length of the run."""
        from ..models.hf import in_memory
        from ..models.spec import parse_model_args

        if tokenizer is None:
            raise TypeError("evaluate(): a model in memory needs its tokenizer= (the tokenizer it was trained with)")
        model = in_memory.unwrapped(model)
        args = options.get("model_args")
        in_memory.check_args(parse_model_args(args) if isinstance(args, str) else dict(args or {}))
        store = None if options.get("no_cache") else Path(options.get("cache_dir") or default_cache_dir()) / "in-memory"
        training = model.training
        with contextlib.ExitStack() as stack:
            stack.callback(model.train, training)  # eval mode for the run, then as it was
            folder, note = stack.enter_context(in_memory.identity(model, tokenizer, store))
            if note is not None:  # not hashed: not cached
                options["no_cache"] = True
                warnings.warn(note, stacklevel=4)
            yield cls(model, tokenizer, folder, note)

    def attach(self, config: pytest.Config) -> None:
        """The run's `lm` fixture is this model (registered after the plugin's own, it wins)."""
        if config.getoption("numprocesses", None):
            raise LmevalError("-n: a model in memory cannot go to pytest-xdist's worker processes; run without -n")
        config.pluginmanager.register(_fixture(self), "lmeval-in-memory-model")

    def backend(self, config: pytest.Config) -> Any:
        from ..models.hf.in_memory import InMemoryBackend

        run = Run.of(config)
        assert run.options.model is not None
        backend = InMemoryBackend(self.model, self.tokenizer, run.options.model, batch_size=run.options.batch_size)
        run.model_info = backend.info()
        return backend


def _fixture(model: InMemoryModel) -> object:
    """A plugin holding the `lm` fixture that gives `model` (a module, as plugins are)."""

    def lm(pytestconfig: pytest.Config) -> Any:
        """The model under evaluation: the one in memory."""
        return model.backend(pytestconfig)

    holder = types.ModuleType("pytest_lmeval_in_memory_model")
    holder.lm = pytest.fixture(scope="session", name="lm")(lm)  # type: ignore[attr-defined]
    return holder


class ApiPlugin:
    """Registered with the run (`pytest.main(plugins=[...])`): keeps the result the run
    concluded, the error that stopped it and the test files it imported; with a model in
    memory, its `lm` fixture."""

    def __init__(self, in_memory: InMemoryModel | None = None) -> None:
        self.in_memory = in_memory
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.interrupted: str | None = None  # Ctrl-C or a stop signal, by name
        self.collect_errors: list[str] = []
        self.files: set[Path] = set()  # the benchmark files collected

    @pytest.hookimpl(wrapper=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> Any:
        try:
            return (yield)
        except pytest.UsageError as exc:  # LmevalError: bad input, one line
            self.error = exc
            raise

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        if self.in_memory is not None:
            self.in_memory.attach(config)  # after the plugin's own `lm`, so this one wins

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
            last = next((line[1:].strip() for line in reversed(lines) if line.startswith("E ")), None)
            self.collect_errors.append(f"collecting {report.nodeid}: {last or (lines[0] if lines else 'failed')}")

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self.files.add(Path(item.path).resolve())

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if isinstance(excinfo.value, KeyboardInterrupt):
            self.interrupted = interruption_name(excinfo.value)

    def pytest_lmeval_conclude(self, result: RunResult) -> None:
        if self.in_memory is not None:
            result.model = self.in_memory.label

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = session.config.stash.get(Run.stash_key, None)
        if run is not None:
            self.result = run.result
            if run.stopped is not None and run.interrupted_by is not None:  # stopped while the model answered
                self.interrupted = run.interrupted_by


def _first_error(output: str) -> str | None:
    lines = [line.strip() for line in output.splitlines()]
    for line in lines:
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()
    internal = [line.removeprefix("INTERNALERROR>").strip() for line in lines if line.startswith("INTERNALERROR>")]
    if internal:
        return f"pytest internal error: {internal[-1]}"
    return next((line.removeprefix("E").strip() for line in reversed(lines) if line.startswith("E ")), None)


@contextlib.contextmanager
def _leaving_no_trace(plugin: ApiPlugin) -> Iterator[None]:
    """sys.path as it was, and the benchmark files the run imported forgotten: pytest imports a
    test file outside a package by its bare name (`test_quiz`), and the next run's file of that
    name in another folder would collide with it."""
    modules, path = set(sys.modules), list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules.get(name), "__file__", None)
            if file and Path(file).resolve() in plugin.files:
                sys.modules.pop(name, None)


def run_pytest(args: list[str], plugin: ApiPlugin, quiet: bool) -> RunResult:
    """`pytest.main` on `args` with `plugin`; the result, or EvaluationError."""
    with _leaving_no_trace(plugin), _captured(quiet) as kept:
        code = pytest.main(args, plugins=[plugin])
    output = kept.getvalue()
    if plugin.interrupted is not None:
        raise KeyboardInterrupt(f"the evaluation was interrupted ({plugin.interrupted})")
    if plugin.error is not None:
        raise EvaluationError(str(plugin.error).strip(), int(code), output) from plugin.error
    if plugin.collect_errors:
        raise EvaluationError(plugin.collect_errors[0], int(code), output)
    if plugin.result is None or code == pytest.ExitCode.INTERNAL_ERROR:
        why = _first_error(output)
        if code == pytest.ExitCode.NO_TESTS_COLLECTED:
            why = why or "no document was selected (check tasks=, limit= and pytest_args)"
        raise EvaluationError(why or f"the run ended with exit code {int(code)} and no result", int(code), output)
    result = plugin.result
    if not result.records and result.not_scored and result.stopped is None:
        # every document failed (the model did not load, a scorer broke): an error, not a score
        why = _first_error(output) or f"{result.not_scored[0]['id']}: {result.not_scored[0]['reason']}"
        raise EvaluationError(f"no document was scored: {why}", int(code), output)
    return result


def evaluate(
    model: Any,
    tasks: str | Sequence[str] | None = None,
    *,
    tokenizer: Any = None,
    write_reports: bool = True,
    quiet: bool = True,
    pytest_args: Sequence[str] = (),
    **options: Any,
) -> RunResult:
    """Evaluate `model` on `tasks` as `pytest --model ... --tasks ...` would, in this process.

    `model`: the command line's spec (`"hf:smollm2-135m"`, `"dummy:x"`), or a transformers model
    in memory with its `tokenizer`, evaluated where it sits (no copy, nothing saved; its answers
    cached under a hash of its weights, config and tokenizer). `tasks`: a list or a comma string.
    Every other keyword is a command-line option (`limit=50`, `num_fewshot=5`, `data_dir=...`,
    `model_args={"dtype": "float32"}`, `gen_kwargs={...}`, `threshold=["arc_easy:acc>=0.5"]`,
    `no_cache=True`, `log_samples=True`); an unknown one is a TypeError naming the close ones.
    `write_reports=False` writes the reports to a temporary folder removed before returning
    (`result.output_files` empty). `quiet` keeps pytest's output off the terminal (it is in the
    EvaluationError of a failed run); `pytest_args`: more of pytest's own (`["-k", "anatomy"]`).
    The run reads no project configuration (the current folder's ini file and conftest.py).

    Returns the run's RunResult: `result.passed` is False when a gate failed or a document
    was not scored. Raises EvaluationError when the run stopped before it had a result (bad
    input: the message is its one `ERROR:` line), KeyboardInterrupt when it was interrupted.
    """
    flags = option_flags()
    options = dict(options)
    if "model" in options or "tasks" in options:  # spelt as options (tasks=... is the parameter already)
        raise TypeError("evaluate(): pass model and tasks as evaluate's own arguments")
    command_line(None, options, flags)  # unknown keywords first, before anything is written
    with contextlib.ExitStack() as stack:
        if not write_reports:
            if options.get("output_path") is not None:
                raise TypeError("evaluate(): output_path= writes the reports; write_reports=False writes none")
            options["output_path"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="lmeval-reports-"))
        in_memory = None
        if isinstance(model, str):
            if tokenizer is not None:
                raise TypeError("evaluate(): tokenizer= goes with a model object in memory, not a spec string")
            spec = model
        else:
            if options.get("device") is not None:
                raise TypeError("evaluate(): device= moves nothing: a model in memory is evaluated on its own device")
            try:
                in_memory = stack.enter_context(InMemoryModel.prepared(model, tokenizer, options))
            except LmevalError as exc:  # its model_args, a model without a transformers config
                raise EvaluationError(str(exc), int(pytest.ExitCode.USAGE_ERROR)) from exc
            spec = in_memory.spec_text
        # the run's own settings alone: no project's ini file (its addopts, testpaths) or conftest.py
        ini = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lmeval-ini-"))) / "pytest.ini"
        ini.write_text("[pytest]\n")
        args = ["-p", "lmeval", "-p", "no:cacheprovider", "-c", str(ini), f"--rootdir={os.getcwd()}", "--noconftest"]
        # a second run in one process finds the plugins imported already: nothing to rewrite, nothing to say
        args += ["-W", "ignore::pytest.PytestAssertRewriteWarning", *(["-q"] if quiet else [])]
        args.append(f"--model={spec}")
        args += command_line(tasks, options, flags) + [str(a) for a in pytest_args]
        result = run_pytest(args, ApiPlugin(in_memory), quiet)
        if in_memory is not None and in_memory.cache_note and result.cache_note is None:
            result.cache_note = in_memory.cache_note
        if not write_reports:
            result.output_files = []
        return result
