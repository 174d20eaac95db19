"""Per-document scores and task aggregates equal lm-eval's for the same answers.

Both sides get the same made-up model answers for the same documents (log-likelihoods from a
hash of the request, generations from a fixed list), then lm-eval's filters, process_results and
aggregations are compared with ours: mc2, multiple-input acc, exact_match under each filter,
perplexity, and the rolling perplexities with their weighted aggregations.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import lm_eval_tasks_dir, lm_task, lmeval_mirror  # noqa: E402
from mirror import LibraryTasks, merged_mirror, shared_mirror  # noqa: E402

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.scoring import metrics  # noqa: E402
from pytest_lmeval.scoring.document import score  # noqa: E402
from pytest_lmeval.tasks.task import Task  # noqa: E402

pytest.importorskip("lm_eval")
from lm_eval.api.metrics import bits_per_byte, exact_match_hf_evaluate, weighted_perplexity  # noqa: E402

# Generation i answers document i (shifted per task by SHIFT): some right, some not, under
# one filter or the other.
GENERATIONS = [
    "7 + 5 = 12 cows.\n#### 12",
    "Each bag has 8, so 9 * 8 = 72.",
    "#### 1,250",
    "It is -7 degrees. #### -7.",
    "The answer is 1,250.",
    "so the answer is (B).",
    "The answer is apple mango pear.",
    "Let's think. So the answer is False.",
    "I count four of them.",
]
SHIFT = {
    "bbh_cot_fewshot_date_understanding": 4,
    "bbh_zeroshot_date_understanding": 4,
    "bbh_zeroshot_word_sorting": 6,
    "bbh_zeroshot_object_counting": 8,
}


def _fake_ll(args: tuple) -> tuple[float, bool]:
    h = int(hashlib.sha256(repr(args).encode()).hexdigest(), 16)
    return -((h % 5000) / 1000.0) - 0.01, h % 3 == 0


def _answer(kind: str, args: tuple, index: int):
    if kind == "loglikelihood":
        return _fake_ll(args)
    if kind == "loglikelihood_rolling":
        return -0.73 * len(args[0]) - 1.5
    return GENERATIONS[index % len(GENERATIONS)]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    if shared_mirror() is None:
        pytest.skip("the shared benchmark mirror is not available (set LMEVAL_DATA_DIR)")
    return merged_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def registry() -> LibraryTasks:
    return LibraryTasks()


CASES = [
    ("truthfulqa_mc2", ["truthfulqa"], 20),
    ("truthfulqa_mc1", ["truthfulqa"], 20),
    ("winogrande", ["winogrande"], 20),
    ("lambada_openai", ["lambada"], 20),
    ("gsm8k", ["gsm8k"], 6),
    ("gsm8k_cot", ["gsm8k"], 6),
    ("wikitext", ["wikitext"], 3),
    ("bbh_cot_fewshot_date_understanding", ["bbh/cot_fewshot"], 2),
    ("bbh_zeroshot_date_understanding", ["bbh/zeroshot"], 2),
    ("bbh_zeroshot_word_sorting", ["bbh/zeroshot"], 2),
    ("bbh_zeroshot_object_counting", ["bbh/zeroshot"], 2),
]


@pytest.mark.parametrize(("name", "folders", "limit"), CASES, ids=lambda v: str(v))
def test_scores_equal_lm_eval(name, folders, limit, mirror, registry) -> None:
    task = Task(registry.tasks[name], data_dir=mirror, limit=limit)
    ours: dict[str, list] = {}
    for doc_id in range(len(task.docs)):
        work = task.build(doc_id)
        answers = {r: _answer(r.kind, _args(r), doc_id + SHIFT.get(name, 0)) for r in work.requests}
        for key, value in score(task, work, answers, log_sample=False).record["metrics"].items():
            ours.setdefault(key, []).append(value)

    with lmeval_mirror(mirror):
        lm = lm_task(name, [lm_eval_tasks_dir() / f for f in folders], None)
        lm.build_all_requests(limit=limit)
    for inst in lm.instances:
        args = (inst.args[0], dict(inst.args[1])) if inst.request_type == "generate_until" else tuple(inst.args)
        index = inst.doc_id + SHIFT.get(name, 0)
        inst.resps = [_answer(inst.request_type, _lm_key(inst.request_type, args), index)] * inst.repeats
    lm.apply_filters()
    theirs: dict[str, list] = {}
    by_doc: dict[int, list] = {}
    for inst in lm.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    for filter_key in lm.instances[0].filtered_resps:
        for _, insts in sorted(by_doc.items()):
            insts.sort(key=lambda i: i.idx)
            result = lm.process_results(insts[0].doc, [i.filtered_resps[filter_key] for i in insts])
            for metric, value in result.items():
                theirs.setdefault(f"{metric},{filter_key}", []).append(value)

    assert list(ours) == list(theirs)
    if "exact_match" in "".join(ours):  # the made-up answers score some documents right
        assert any(sum(v) > 0 for k, v in ours.items() if k.startswith("exact_match")), ours
    for key, values in theirs.items():
        got = ours[key]
        if isinstance(values[0], tuple):
            assert [tuple(v) for v in got] == list(values), key
        else:
            assert got == pytest.approx([float(v) for v in values], abs=1e-9), key
        metric = key.split(",")[0]
        want = lm.aggregation()[metric](values)
        value, _ = metrics.aggregate(metric, got, task.config.aggregation(metric))
        assert value == pytest.approx(want, rel=1e-12), key


def _args(req: Request) -> tuple:
    """The hashable arguments both sides hash for a made-up answer."""
    if req.kind == "generate_until":
        return (req.args[0], tuple(sorted((k, str(v)) for k, v in req.gen_kwargs.items())))
    return tuple(req.args)


def _lm_key(kind: str, args: tuple) -> tuple:
    if kind == "generate_until":
        return (args[0], tuple(sorted((k, str(v)) for k, v in args[1].items())))
    return args


@pytest.mark.parametrize(
    ("prediction", "reference", "options"),
    [
        ("72", "Natalia sold 48 clips.\n#### 72", {"regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}),
        ("$1,250.", "1250", {"regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"], "ignore_case": True}),
        ("Paris!", "paris", {"ignore_case": True, "ignore_punctuation": True}),
        ("Paris!", "paris", {"ignore_case": True}),
        ("abc123", "abc", {"ignore_numbers": True}),
        ("(A)", "(a)", {}),
        ("False", "False", {}),
    ],
)
def test_exact_match_equals_lm_eval(prediction, reference, options) -> None:
    want = exact_match_hf_evaluate(predictions=[prediction], references=[reference], **options)["exact_match"]
    assert metrics.exact_match(prediction, reference, **options) == want


def test_exact_match_examples() -> None:
    gsm = {"regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"], "ignore_case": True}
    assert metrics.exact_match("1,250", "Long working.\n#### 1250", **gsm) == 1.0
    assert metrics.exact_match("[invalid]", "Long working.\n#### 1250", **gsm) == 0.0
    assert metrics.score_generation("4", 4, "exact_match", {}) == 1.0  # a non-text gold is cast
    assert metrics.score_generation("b", ["a", "b"], "exact_match", {}) == 1.0  # any of several


def test_rolling_aggregations_equal_lm_eval() -> None:
    from lm_eval.api.task import PerplexityTask

    texts = ["The cat sat on the mat.", "Café crème  and\nnew lines", "one"]
    lls = [-20.5, -31.25, -4.0]
    names = ("word_perplexity", "byte_perplexity", "bits_per_byte")
    scored = [metrics.score_rolling(ll, t, names) for ll, t in zip(lls, texts, strict=True)]
    pairs = {m: [s[m] for s in scored] for m in names}
    assert [p[1] for p in pairs["word_perplexity"]] == [6, 5, 1] == [PerplexityTask.count_words(t) for t in texts]
    assert [p[1] for p in pairs["byte_perplexity"]] == [23, 27, 3] == [PerplexityTask.count_bytes(t) for t in texts]
    assert metrics.weighted_perplexity(pairs["byte_perplexity"]) == pytest.approx(math.exp(-sum(lls) / 53))
    assert metrics.weighted_perplexity(pairs["word_perplexity"]) == weighted_perplexity(
        [tuple(p) for p in pairs["word_perplexity"]]
    )
    assert metrics.bits_per_byte(pairs["bits_per_byte"]) == bits_per_byte([tuple(p) for p in pairs["bits_per_byte"]])
    assert metrics.aggregate("bits_per_byte", pairs["bits_per_byte"]) == (-sum(lls) / 53 / math.log(2), "N/A")


def test_mc2_spelled_out(mirror, registry) -> None:
    """mc2: the normalised probability mass on the true answers."""
    task = Task(registry.tasks["truthfulqa_mc2"], data_dir=mirror, limit=1)
    work = task.build(0)
    labels = task.docs[0]["mc2_targets"]["labels"]
    lls = [-1.0 - 0.5 * i for i in range(len(work.requests))]
    answers = {r: (ll, False) for r, ll in zip(work.requests, lls, strict=True)}
    got = score(task, work, answers, log_sample=False).record["metrics"]["acc,none"]
    probs = [math.exp(ll) for ll in lls]
    assert got == pytest.approx(sum(p for p, lab in zip(probs, labels, strict=True) if lab == 1) / sum(probs))
