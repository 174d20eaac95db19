"""Bad benchmark data, as a user meets it: a task with no documents, a data file that is not
UTF-8 or not JSON, a document whose target or choices cannot be scored, data set names that
climb out of --data-dir, and a task of the user's taking a library task's name.

Whatever stops the run is one `ERROR:` line naming the file (exit 4, before any model loads,
no traceback); a fault of one document fails that document's item alone, with one line that
results.json's `not_scored` repeats, while the other documents are scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quiz_project import EXPECTED, QUIZ_A, TASK_YAML, error_lines, read_json, run, write_quiz, write_rows

from pytest_lmeval.run.options import library_dir
from pytest_lmeval.tasks.lmeval.catalogue import lm_eval_tasks_dir

DUMMY = ("--model", "dummy:d")


def _one_error(result: pytest.RunResult) -> str:
    """The run stopped on bad input: one ERROR line, nothing loaded, no traceback."""
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    errors = error_lines(result)
    assert len(errors) == 1, result.errlines
    assert "loading" not in result.stdout.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    assert "skipped" not in result.stdout.str()
    return errors[0]


def _quiz(pytester: pytest.Pytester) -> Path:
    write_quiz(pytester.path)
    return pytester.path / "data" / "local" / "quiz" / "b" / "test.jsonl"


# -- a task with no documents ---------------------------------------------------------------------
@pytest.mark.parametrize("tasks", [(), ("--tasks", "quiz_b")], ids=["collected", "--tasks"])
def test_an_empty_split_fails_the_run(pytester: pytest.Pytester, tasks: tuple[str, ...]) -> None:
    _quiz(pytester).write_text("")
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, *tasks)
    assert (
        _one_error(result) == "ERROR: quiz_b: no documents in data/local/quiz/b/test.jsonl (split 'test' has no rows)"
    )


def test_a_process_docs_that_keeps_none_fails_the_run(pytester: pytest.Pytester) -> None:
    _quiz(pytester)
    folder = pytester.path / "evals" / "quiz"
    (folder / "helpers.py").write_text("def none(dataset):\n    return dataset.filter(lambda doc: False)\n")
    text = (folder / "quiz_b.yaml").read_text()
    (folder / "quiz_b.yaml").write_text(text + "process_docs: !function helpers.none\n")
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY)
    assert _one_error(result) == (
        "ERROR: quiz_b: no documents in data/local/quiz/b/test.jsonl "
        "(its process_docs kept none of the 3 rows of split 'test')"
    )


def test_inline_rows_without_documents(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("test_none.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'none = lm.multiple_choice("none", data=lm.rows([]), prompt="{q}", choices=["a", "b"], target=0)\n\n\n'
        "@lm.benchmark(none)\ndef test_none(doc):\n    doc.score()\n"
    )
    result = run(pytester, "test_none.py", *DUMMY)
    assert _one_error(result) == "ERROR: none: no documents in its inline rows (split 'test' has no rows)"


def test_a_library_task_named_in_a_file_with_an_empty_mirror_file(pytester: pytest.Pytester) -> None:
    """The task is built while pytest collects the file: still one line, not a collection error."""
    write_rows(pytester.path / "data" / "aps" / "super_glue" / "boolq" / "validation.jsonl", [])
    pytester.path.joinpath("test_mine.py").write_text(
        'import pytest_lmeval as lm\n\n\n@lm.benchmark("boolq")\ndef test_mine(doc):\n    doc.score()\n'
    )
    result = run(pytester, "test_mine.py", "--data-dir", "data", *DUMMY)
    assert _one_error(result) == (
        "ERROR: boolq: no documents in data/aps/super_glue/boolq/validation.jsonl (split 'validation' has no rows)"
    )


# -- data files that cannot be read -----------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"question": "caf\xe9?"}\n', "not UTF-8 text (byte 0xe9 at column 18): save the file as UTF-8"),
        (b'{"question": "Why?", "choices": ["a"\n', "invalid JSON: Expecting ',' delimiter at column 37"),
        (b'{"question": "Why?\n', "invalid JSON: Unterminated string starting at column 14"),
        (b'["a", "b"]\n', "expected one JSON object per line (a document), got list"),
    ],
    ids=["latin-1", "cut short", "unterminated", "not an object"],
)
def test_a_bad_line_names_the_file_and_line(pytester: pytest.Pytester, content: bytes, message: str) -> None:
    path = _quiz(pytester)
    path.write_bytes(path.read_bytes() + content)  # line 4, after the three good documents
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY)
    assert _one_error(result) == f"ERROR: data/local/quiz/b/test.jsonl:4: {message}"


def test_a_csv_that_is_not_utf8(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("qs.csv").write_bytes(b"q,a\nTwo plus two?,4\nQu'est-ce qu'un caf\xe9?,x\n")
    pytester.path.joinpath("test_sums.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'sums = lm.generate("sums", data=lm.local("qs.csv"), prompt="{q}", target="a", until=["\\n"])\n\n\n'
        "@lm.benchmark(sums)\ndef test_sums(doc):\n    doc.score()\n"
    )
    result = run(pytester, "test_sums.py", *DUMMY)
    path = pytester.path / "qs.csv"
    assert _one_error(result) == f"ERROR: {path}:3: not UTF-8 text (byte 0xe9 at column 20): save the file as UTF-8"


# -- a document that cannot be scored: its item fails, the others are scored ----------------------
FAULTY = """
import pytest_lmeval as lm

ROWS = [
    {"q": "Is it a?", "choices": ["a", "bb"], "label": 0},
    {"q": "No label", "choices": ["a", "bb"], "label": -1},
    {"q": "Too far", "choices": ["a", "bb"], "label": 2},
    {"q": "Not a choice", "choices": ["a", "bb"], "label": "c"},
    {"q": "Nothing to pick", "choices": [], "label": 0},
    {"q": "Is it bb?", "choices": ["a", "bb"], "label": 1},
]

faulty = lm.multiple_choice(
    "faulty", data=lm.rows(ROWS), prompt="{q}", choices=lambda doc: doc["choices"], target="label"
)


@lm.benchmark(faulty)
def test_faulty(doc):
    doc.score()
"""
REASONS = {
    1: "target -1 is out of range for the document's 2 choices (0 to 1)",
    2: "target 2 is out of range for the document's 2 choices (0 to 1)",
    3: "target 'c' is not one of the document's 2 choices",
    4: "no choices: doc_to_choice gave an empty list, so there is nothing to choose from",
}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two workers"])
def test_a_bad_target_or_no_choices_fails_that_document_alone(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.path.joinpath("test_faulty.py").write_text(FAULTY)
    result = run(pytester, "test_faulty.py", *DUMMY, "--output-path", "out", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=4)
    text = result.stdout.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text and "doc.score()" not in text  # no traceback
    for doc_id, reason in REASONS.items():  # the item's one line, and the summary's the same
        result.stdout.fnmatch_lines([f"*_ test_faulty[[]faulty-{doc_id}[]] _*", reason])
        result.stdout.fnmatch_lines([f"  faulty-{doc_id} (error): {reason}"])
        result.stdout.fnmatch_lines([f"FAILED test_faulty.py::test_faulty[[]faulty-{doc_id}[]] - NotScored: *"])
    doc = read_json(pytester.path / "out" / "results.json")
    assert [(e["id"], e["status"], e["reason"]) for e in doc["not_scored"]] == [
        (f"faulty-{i}", "error", reason) for i, reason in REASONS.items()
    ]
    # the two good documents: the dummy picks the shorter choice, "a": right, then wrong
    assert doc["results"]["faulty"]["acc,none"] == 0.5


def test_a_label_of_minus_one_in_yaml_data_is_not_scored(pytester: pytest.Pytester) -> None:
    """The issue's case: a "no label" -1 in a data set's rows was scored as wrong, silently."""
    path = _quiz(pytester)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["label"] = -1
    write_rows(path, rows)
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--output-path", "out")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=len(QUIZ_A) + 2, failed=1)
    reason = "target -1 is out of range for the document's 2 choices (0 to 1)"
    result.stdout.fnmatch_lines(["*_ test_quiz[[]quiz_b-1[]] _*", reason, f"  quiz_b-1 (error): {reason}"])
    result.stdout.fnmatch_lines(["FAILED *quiz_b-1[]] - NotScored: target -1*"])
    doc = read_json(pytester.path / "out" / "results.json")
    assert [(e["id"], e["reason"]) for e in doc["not_scored"]] == [("quiz_b-1", reason)]
    kept = [acc for i, (_, acc, _) in enumerate(EXPECTED["quiz_b"]) if i != 1]
    assert doc["results"]["quiz_b"]["acc,none"] == pytest.approx(sum(kept) / len(kept))


# -- data stays under --data-dir ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [("dataset_path", "../secret"), ("dataset_path", "ABSOLUTE"), ("dataset_name", "../../../secret/b")],
)
def test_a_yaml_data_set_name_that_is_a_path(pytester: pytest.Pytester, key: str, value: str) -> None:
    _quiz(pytester)
    secret = pytester.path / "secret"  # a readable file where the path points: never read
    write_rows(secret / "b" / "test.jsonl", [{"question": "leaked", "choices": ["a"], "label": 0}])
    write_rows(secret / "default" / "test.jsonl", [{"question": "leaked", "choices": ["a"], "label": 0}])
    value = str(secret) if value == "ABSOLUTE" else value
    yaml = pytester.path / "evals" / "quiz" / "quiz_b.yaml"
    given = {"dataset_path": "local/quiz", "dataset_name": "b"}[key]
    yaml.write_text(yaml.read_text().replace(f"{key}: {given}\n", f"{key}: {value}\n"))
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY)
    assert _one_error(result) == (
        f"ERROR: task 'quiz_b': {key} {value!r} is a path, not a data set name: data sets are named as on the hub "
        "(org/name) and read from under --data-dir; for files of your own use lm.local(...) or dataset_kwargs "
        "data_files"
    )


def test_a_hub_name_is_a_name(pytester: pytest.Pytester) -> None:
    write_rows(pytester.path / "x" / "default" / "test.jsonl", [{"q": "leaked"}])
    (pytester.path / "data").mkdir()
    pytester.path.joinpath("test_hub.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'up = lm.generate("up", data=lm.hub("../x", split="test"), prompt="{q}", target="q")\n\n\n'
        "@lm.benchmark(up)\ndef test_up(doc):\n    doc.score()\n"
    )
    for data_dir in (("--data-dir", "data"), ()):  # offline, and for the hub alike
        result = run(pytester, "test_hub.py", *DUMMY, *data_dir)
        assert _one_error(result).startswith("ERROR: task 'up': dataset_path '../x' is a path, not a data set name:")


def test_a_split_name_that_is_a_path(pytester: pytest.Pytester) -> None:
    _quiz(pytester)
    yaml = pytester.path / "evals" / "quiz" / "quiz_b.yaml"
    yaml.write_text(yaml.read_text().replace("test_split: test", "test_split: ../../b/test"))
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY)
    assert _one_error(result) == "ERROR: task 'quiz_b': split '../../b/test' is a path, not a split name"


# -- a library task's name -----------------------------------------------------------------------
RENAME = (
    "rename yours, or mark it as the replacement: override=True in its declaration (YAML: metadata: {override: true})"
)


def _library_file(name: str) -> Path:
    folder = library_dir()
    if folder is None:
        pytest.skip("the benchmark library is not installed")
    return (folder / name).resolve()


def _named(pytester: pytest.Pytester, name: str, extra: str = "") -> Path:
    """The quiz project with one more task, a copy of quiz_a under `name`."""
    write_quiz(pytester.path)
    yaml = pytester.path / "evals" / "quiz" / f"{name}.yaml"
    yaml.write_text(TASK_YAML.format(name=name, subset="a", version="1.0") + extra)
    return yaml.resolve()


def test_a_yaml_task_named_like_a_library_task(pytester: pytest.Pytester) -> None:
    library = _library_file("arc/test_arc.py")
    yaml = _named(pytester, "arc_easy")
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--tasks", "quiz_a")
    assert _one_error(result) == f"ERROR: {yaml}: task 'arc_easy' is already a library task ({library}): {RENAME}"


def test_a_yaml_task_that_says_it_replaces_the_library_task(pytester: pytest.Pytester) -> None:
    _library_file("arc/test_arc.py")
    _named(pytester, "arc_easy", "  override: true\n")  # under metadata:, the template's last key
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--tasks", "arc_easy", "--output-path", "out")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=len(QUIZ_A))  # the user's documents, not ARC's
    doc = read_json(pytester.path / "out" / "results.json")
    assert doc["results"]["arc_easy"]["acc,none"] == pytest.approx(sum(a for _, a, _ in QUIZ_A) / len(QUIZ_A))


def test_a_python_task_named_like_a_library_task(pytester: pytest.Pytester) -> None:
    library = _library_file("boolq/test_boolq.py")
    pytester.path.joinpath("test_mine.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'boolq = lm.multiple_choice("boolq", data=lm.rows([{"q": "x"}]), prompt="{q}", choices=["a"], target=0)\n\n\n'
        "@lm.benchmark(boolq)\ndef test_mine(doc):\n    doc.score()\n"
    )
    result = run(pytester, "test_mine.py", *DUMMY)
    mine = pytester.path / "test_mine.py"
    assert _one_error(result) == f"ERROR: {mine}: task 'boolq' is already a library task ({library}): {RENAME}"


def test_a_python_task_that_says_it_replaces_the_library_task(pytester: pytest.Pytester) -> None:
    _library_file("boolq/test_boolq.py")
    pytester.path.joinpath("test_mine.py").write_text(
        "import pytest_lmeval as lm\n\n"
        'boolq = lm.multiple_choice("boolq", data=lm.rows([{"q": "x"}]), prompt="{q}", choices=["a"], target=0,\n'
        "                           override=True)\n\n\n"
        "@lm.benchmark(boolq)\ndef test_mine(doc):\n    doc.score()\n"
    )
    result = run(pytester, "test_mine.py", *DUMMY, "--output-path", "out")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_a_task_named_like_one_of_lm_evals_catalogue(pytester: pytest.Pytester) -> None:
    tasks = lm_eval_tasks_dir()
    if tasks is None:
        pytest.skip("lm-eval is not installed")
    yaml = _named(pytester, "cola")
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--tasks", "cola")
    theirs = (tasks / "glue" / "cola" / "default.yaml").resolve()
    assert (
        _one_error(result)
        == f"ERROR: {yaml}: task 'cola' is already a task of lm-eval's catalogue ({theirs}): {RENAME}"
    )
    _named(pytester, "cola", "  override: true\n")
    result = run(pytester, "evals", "--data-dir", "data", *DUMMY, "--tasks", "cola", "--output-path", "out")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=len(QUIZ_A))
