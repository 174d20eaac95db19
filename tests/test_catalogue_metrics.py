"""Catalogue tasks whose metrics are lm-eval's own (mcc and f1 on multiple choice; bleu, ter and
chrf on generation; `metric: !function` and `aggregation: !function` helpers) score per
document and per task as lm-eval does, on the same made-up answers.

Fixtures (tests/data/mirror, in the hub data sets' columns): nyu-mll/glue cola and mrpc,
wmt/wmt16 de-en, aps/super_glue cb.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import lm_eval_tasks_dir, lm_task, lmeval_mirror  # noqa: E402
from mirror import LibraryTasks, merged_mirror  # noqa: E402

from pytest_lmeval.core.errors import LmevalError  # noqa: E402
from pytest_lmeval.scoring.aggregate import aggregate  # noqa: E402
from pytest_lmeval.scoring.document import score  # noqa: E402
from pytest_lmeval.tasks.config_parsing import task_config_from_dict  # noqa: E402
from pytest_lmeval.tasks.task import Task  # noqa: E402

pytest.importorskip("lm_eval")

GENERATIONS = {
    "wmt16-de-en": [
        "The house is small.",
        "I like coffee in the morning.",
        "The train comes at eight.",
        "Tomorrow we go to the movies.",
        "A cat sleeps on a couch.",
    ],
    "super_glue-cb-t5-prompt": ["entailment", "neutral", "neutral", "entailment", "contradiction", "maybe"],
}


def _fake_ll(args: tuple) -> tuple[float, bool]:
    h = int(hashlib.sha256(repr(args).encode()).hexdigest(), 16)
    return -((h % 5000) / 1000.0) - 0.01, h % 3 == 0


def _answer(name: str, kind: str, args: tuple, doc_id: int):
    if kind == "loglikelihood":
        return _fake_ll(tuple(args))
    return GENERATIONS[name][doc_id]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return merged_mirror(tmp_path_factory.mktemp("mirror"), shared=False)


@pytest.fixture(scope="module")
def library() -> LibraryTasks:
    return LibraryTasks()


CASES = [
    ("cola", "glue/cola", ["mcc,none"]),
    ("mrpc", "glue/mrpc", ["acc,none", "f1,none"]),
    ("wmt16-de-en", "translation", ["bleu,none", "ter,none", "chrf,none"]),
    ("super_glue-cb-t5-prompt", "super_glue/cb", ["exact_match,none", "mean_3class_f1,none"]),
]


def _ours(name: str, library: LibraryTasks, mirror: Path) -> tuple[Task, list[dict]]:
    task = Task(library.tasks[name], data_dir=mirror)
    records = []
    for doc_id in range(len(task.docs)):
        work = task.build(doc_id)
        answers = {r: _answer(name, r.kind, r.args, doc_id) for r in work.requests}
        records.append(score(task, work, answers, log_sample=False).record)
    return task, records


def _theirs(name: str, folder: str, mirror: Path) -> tuple[dict[str, list], dict[str, float]]:
    with lmeval_mirror(mirror):
        lm = lm_task(name, [lm_eval_tasks_dir() / folder], None)
        lm.build_all_requests(limit=None)
    for inst in lm.instances:
        inst.resps = [_answer(name, inst.request_type, inst.args, inst.doc_id)] * inst.repeats
    lm.apply_filters()
    by_doc: dict[int, list] = {}
    for inst in lm.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    per_doc: dict[str, list] = {}
    for _, insts in sorted(by_doc.items()):
        insts.sort(key=lambda i: i.idx)
        for metric, value in lm.process_results(insts[0].doc, [i.filtered_resps["none"] for i in insts]).items():
            per_doc.setdefault(f"{metric},none", []).append(value)
    totals = {k: lm.aggregation()[k.split(",")[0]](v) for k, v in per_doc.items()}
    return per_doc, totals


def _lm_agg(metric: str):
    from lm_eval.api.registry import get_metric_aggregation

    return get_metric_aggregation(metric)


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


@pytest.mark.parametrize(("name", "folder", "keys"), CASES, ids=[c[0] for c in CASES])
def test_catalogue_metric_equals_lm_eval(name, folder, keys, library, mirror, monkeypatch) -> None:
    task, records = _ours(name, library, mirror)
    per_doc, totals = _theirs(name, folder, mirror)
    assert list(records[0]["metrics"]) == keys == list(per_doc)
    for key in keys:
        assert [_plain(r["metrics"][key]) for r in records] == [_plain(v) for v in per_doc[key]], key
    entry = aggregate(records, {name: task}, library.registry, [name]).entries[name]
    for key in keys:
        assert entry.values[key] == pytest.approx(totals[key], abs=1e-12), key
        metric = key.split(",")[0]
        if metric in ("bleu", "chrf", "ter"):  # lm-eval's evaluator: 100 bootstrap resamples
            monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's single-process path: the same resamples
            from lm_eval.api.metrics import stderr_for_metric

            want = stderr_for_metric(_lm_agg(metric), bootstrap_iters=100)
            assert entry.stderrs[key] == pytest.approx(want(per_doc[key]), abs=1e-12), key
            assert entry.stderrs[key] > 0
    # the made-up answers do not score everything the same: a corpus metric that is not trivial
    assert len({round(v, 6) for v in totals.values()}) == len(totals)


def test_lm_eval_default_aggregations_and_directions(library) -> None:
    cfg = library.tasks["wmt16-de-en"]
    assert [cfg.aggregation(m) for m in cfg.metrics] == ["bleu", "ter", "chrf"]
    assert cfg.higher_is_better() == {"bleu": True, "ter": False, "chrf": True}
    assert library.tasks["cola"].aggregation("mcc") == "matthews_corrcoef"


def _yaml_task(tmp_path: Path, **extra) -> dict:
    return {
        "task": "t",
        "dataset_path": "x",
        "test_split": "test",
        "doc_to_text": "{{q}}",
        "doc_to_target": "{{a}}",
        **extra,
    }


def test_unknown_metric_on_multiple_choice_is_one_line(tmp_path) -> None:
    data = _yaml_task(
        tmp_path, output_type="multiple_choice", doc_to_choice=["a", "b"], metric_list=[{"metric": "bleu"}]
    )
    with pytest.raises(LmevalError, match=r"metric 'bleu' is not supported for multiple_choice \(supported: .*f1, mcc"):
        task_config_from_dict(data, tmp_path / "t.yaml")


def test_hf_evaluate_metric_that_cannot_load_is_refused_by_name(tmp_path) -> None:
    data = _yaml_task(tmp_path, metric_list=[{"metric": "no_such_metric_xyz", "hf_evaluate": True}])
    with pytest.raises(LmevalError, match=r"metric 'no_such_metric_xyz' is an HF evaluate metric, which"):
        task_config_from_dict(data, tmp_path / "t.yaml")


def test_unknown_aggregation_is_refused(tmp_path) -> None:
    data = _yaml_task(tmp_path, metric_list=[{"metric": "exact_match", "aggregation": "geometric"}])
    with pytest.raises(LmevalError, match=r"aggregation 'geometric' is not supported \(supported: .*matthews_corrcoef"):
        task_config_from_dict(data, tmp_path / "t.yaml")


@pytest.mark.parametrize(
    ("name", "answers"),
    [
        ("masakhapos_bam_prompt_1", ["[('A', 'PRON'), ('taara', 'VERB')]", "no tags here", "[('so', 'NOUN')]"]),
        ("masakhaner_am_prompt_1", ["person: Abebe $$ location: Addis Ababa", "ORG: UN", "none"]),
    ],
)
def test_filters_lm_eval_registers_filter_as_lm_eval(name, answers, library) -> None:
    """Filters only lm-eval registers (regex_pos, format_span) run as lm-eval's own classes:
    our pipelines give what lm-eval's FilterEnsemble gives for the same answers."""
    from lm_eval.api.instance import Instance
    from lm_eval.filters import build_filter_ensemble

    cfg = library.tasks[name]
    assert cfg.filter_list and len(cfg.filters) == len(cfg.filter_list)
    for pipeline, entry in zip(cfg.filters, cfg.filter_list, strict=True):
        steps = [(s["function"], {k: v for k, v in s.items() if k != "function"}) for s in entry["filter"]]
        ensemble = build_filter_ensemble(entry["name"], steps)
        instances = [Instance("generate_until", {}, ("", {}), idx=0) for _ in answers]
        for inst, answer in zip(instances, answers, strict=True):
            inst.resps = [answer]
        ensemble.apply(instances)
        ours = pipeline.apply([[a] for a in answers], [{}] * len(answers))
        assert ours == [inst.filtered_resps[entry["name"]] for inst in instances]
        assert len({repr(o) for o in ours}) == len(answers)  # the answers are told apart


def test_a_filter_whose_helpers_do_not_import_is_named(library) -> None:
    pytest.importorskip("lm_eval")
    if importlib.util.find_spec("lark") is not None:
        pytest.skip("acpbench's helper packages are installed")
    with pytest.raises(LmevalError, match=r"filter function 'ACP_grammar_filter' would be registered by the task's "):
        library.registry.configs_for(["acp_app_gen"])
