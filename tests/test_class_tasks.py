"""lm-eval's Python task classes (`class:`) and `custom_dataset` loaders, run through our engine.

Fixtures (tests/data/mirror/hazyresearch/...: based-swde-v2, based-fda, based-squad) hold a
few rows written for these tests in the hub data sets' columns. Per document, the requests and
the class's metric values equal lm-eval's own run of the same class on the same rows with the
same made-up answers, and so does the aggregate; the plugin runs `--tasks swde` end to end.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import lm_eval_tasks_dir, lm_task, lmeval_mirror  # noqa: E402
from mirror import merged_mirror  # noqa: E402

from pytest_lmeval.core.errors import LmevalError  # noqa: E402
from pytest_lmeval.models.dummy import dummy_generation  # noqa: E402
from pytest_lmeval.scoring import lmeval_metrics  # noqa: E402
from pytest_lmeval.scoring.aggregate import aggregate  # noqa: E402
from pytest_lmeval.scoring.document import score  # noqa: E402
from pytest_lmeval.tasks.lmeval.class_tasks import ClassTask, task_for  # noqa: E402
from pytest_lmeval.tasks.prompts import PromptStyle  # noqa: E402
from pytest_lmeval.tasks.registry import Registry  # noqa: E402

pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return merged_mirror(tmp_path_factory.mktemp("mirror"), shared=False)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.scan([], lm_eval_catalogue=True)


def _answer(kind: str, args: tuple, gen_kwargs: dict | None):
    """The same made-up answer for both harnesses: the dummy model's rules."""
    if kind == "loglikelihood":
        return (-float(len(args[1])), len(args[1]) <= 1)
    return dummy_generation(args[0], gen_kwargs or {})


def _render(history: list[dict], add_generation_prompt: bool = True) -> str:
    """A chat template for both harnesses (lm-eval's calling convention)."""
    text = "\n".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in history)
    return text + ("<|assistant|>" if add_generation_prompt else "")


CASES = [
    pytest.param("swde", 0, None, id="swde"),
    pytest.param("swde", 0, "system: extract the value", id="swde-chat-template"),
    pytest.param("fda", 0, None, id="fda"),
    pytest.param("squad_completion", 0, None, id="squad_completion"),
]


@pytest.mark.parametrize(("name", "shots", "system"), CASES)
def test_class_task_equals_lm_eval(name, shots, system, registry, mirror) -> None:
    chat = system is not None
    style = PromptStyle(system, (lambda msgs, add: _render(msgs, add)) if chat else None, False)
    task = task_for(registry.configs_for([name])[name], data_dir=mirror, num_fewshot=shots, style=style)
    assert isinstance(task, ClassTask)
    ours_args, records = {}, []
    for doc_id in range(len(task.docs)):
        work = task.build(doc_id)
        ours_args[doc_id] = [(r.args[0], r.gen_kwargs) if r.kind == "generate_until" else r.args for r in work.requests]
        answers = {r: _answer(r.kind, r.args, r.gen_kwargs if r.kind == "generate_until" else None)
                   for r in work.requests}  # fmt: skip
        records.append(json.loads(json.dumps(score(task, work, answers, log_sample=True).record)))

    with lmeval_mirror(mirror):
        lm = lm_task(name, [lm_eval_tasks_dir() / name], shots)
        lm.build_all_requests(
            limit=None, system_instruction=system, apply_chat_template=chat, chat_template=_render if chat else None
        )
    by_doc: dict[int, list] = {}
    for inst in lm.instances:
        inst.resps = [_answer(inst.request_type, inst.args, inst.args[1] if len(inst.args) > 1 else None)]
        by_doc.setdefault(inst.doc_id, []).append(inst)
    lm.apply_filters()
    assert sorted(by_doc) == list(range(len(task.docs))) and len(task.docs) >= 4
    theirs: dict[str, list] = {}
    for doc_id, insts in sorted(by_doc.items()):
        insts.sort(key=lambda i: i.idx)
        want = [(i.args[0], dict(i.args[1])) if i.request_type == "generate_until" else tuple(i.args) for i in insts]
        assert ours_args[doc_id] == want, f"document {doc_id}: requests differ"
        for metric, value in lm.process_results(insts[0].doc, [i.filtered_resps["none"] for i in insts]).items():
            theirs.setdefault(metric, []).append(value)
            assert records[doc_id]["metrics"][f"{metric},none"] == value, (doc_id, metric)
    if chat:
        assert ours_args[0][0][0].startswith("<|system|>system: extract the value<|end|>\n<|user|>")
    results = aggregate(records, {name: task}, registry, [name])
    for metric, values in theirs.items():
        want = lm.aggregation()[metric](values)
        assert round(results.entries[name].values[f"{metric},none"], 4) == round(float(want), 4), metric
        assert task.config.higher_is_better()[metric] == lm.higher_is_better()[metric]
    assert 0 < sum(theirs["contains"]) < len(task.docs)  # the made-up answers get some right, not all


def test_few_shot_fails_as_in_lm_eval(registry, mirror) -> None:
    """SWDE's doc_to_text takes no template argument, so lm-eval's few-shot context cannot call
    it: lm-eval raises, and so do we, in one line naming the class's method."""
    with pytest.raises(LmevalError, match=r"SWDE\.fewshot_context failed on document 0: TypeError") as info:
        task_for(registry.configs_for(["swde"])["swde"], data_dir=mirror, num_fewshot=2).build(0)
    assert "\n" not in str(info.value)
    with lmeval_mirror(mirror), pytest.raises(TypeError):
        lm_task("swde", [lm_eval_tasks_dir() / "swde"], 2).build_all_requests(limit=1)


def test_tasks_swde_runs_end_to_end(pytester, mirror) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tasks", "swde", "--model", "dummy:x", "--limit", "3", f"--data-dir={mirror}",
        "-rA",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    out = result.stdout.str()
    for doc_id in range(3):
        assert f"PASSED lm_eval/tasks/swde/swde.yaml::test_lmeval[swde-{doc_id}]" in out, out[-3000:]
    assert "[swde-3]" not in out and "3 passed" in out
    doc = json.loads(next(pytester.path.glob("reports/**/results.json")).read_text())
    entry = doc["results"]["swde"]
    # documents 0 and 2 end with a line holding their value; document 1's last line does not
    assert entry["contains,none"] == pytest.approx(2 / 3)
    assert doc["higher_is_better"]["swde"]["contains"] is True
    assert doc["n-samples"]["swde"] == {"original": 5, "effective": 3}
    assert doc["configs"]["swde"]["task_class"] == "!function task.SWDE"


def test_squadv2_metric_not_loadable_is_one_line(monkeypatch) -> None:
    calls = []

    def problem(metric: str) -> str:
        calls.append(metric)
        return f"evaluate.load({metric!r}) failed: offline"

    monkeypatch.setattr(lmeval_metrics, "hf_evaluate_problem", problem)
    with pytest.raises(LmevalError, match=r"task 'squadv2': metric 'squad_v2' is an HF evaluate metric") as info:
        Registry.scan([], lm_eval_catalogue=True).configs_for(["squadv2"])
    assert calls == ["squad_v2"] and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("20_newsgroups", r"task '20_newsgroups' is a unitxt recipe .*pip install unitxt"),
        ("doc_vqa", r"pip install unitxt|image inputs"),
    ],
)
def test_what_a_class_cannot_run_is_one_line(registry, name, message) -> None:
    with pytest.raises(LmevalError, match=message) as info:
        registry.configs_for([name])
    assert "\n" not in str(info.value)


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_a_class_with_its_own_download_needs_the_hub(tmp_path, mirror) -> None:
    folder = _write(tmp_path, {
        "own.yaml": "task: own_download\nclass: !function own.OwnDownload\n",
        "own.py": """
            from lm_eval.api.task import ConfigurableTask

            class OwnDownload(ConfigurableTask):
                def __init__(self, config=None):
                    super().__init__(config={"metadata": {"version": 1}})

                def download(self, *args, **kwargs):
                    raise RuntimeError("reads a zip file from the hub")
        """,
    })  # fmt: skip
    cfg = Registry.scan([folder]).configs_for(["own_download"])["own_download"]
    with pytest.raises(LmevalError, match=r"reads its data with its own download\(\).*without --data-dir"):
        task_for(cfg, data_dir=mirror)
    with pytest.raises(LmevalError, match=r"class OwnDownload failed to set up: RuntimeError: reads a zip"):
        task_for(cfg, data_dir=None)


LOADER = """
    import json
    from pathlib import Path

    import datasets

    def load(**kwargs):
        with Path(__file__).with_name("calls.jsonl").open("a") as fh:
            fh.write(json.dumps(kwargs) + "\\n")
        rows = [{"q": f"{a} plus {b} is", "a": str(a + b)} for a, b in [(1, 2), (2, 2), (3, 4)]]
        return {"test": datasets.Dataset.from_list(rows[: kwargs["n"]])}

    def broken(**kwargs):
        raise ConnectionError("the hub is not reachable")
"""


def test_custom_dataset_loader_is_called_as_lm_eval_calls_it(tmp_path) -> None:
    folder = _write(tmp_path, {
        "sums.yaml": """
            task: sums
            custom_dataset: !function loader.load
            dataset_kwargs: {n: 2}
            test_split: test
            output_type: generate_until
            doc_to_text: "{{q}}"
            doc_to_target: "{{a}}"
            metadata: {version: 2.0, level: easy}
        """,
        "broken.yaml": "include: sums.yaml\ntask: sums_broken\ncustom_dataset: !function loader.broken\n",
        "loader.py": LOADER,
    })  # fmt: skip
    registry = Registry.scan([folder])
    task = task_for(registry.configs_for(["sums"])["sums"], data_dir=None)
    assert [task.build(i).requests[0].args[0] for i in range(len(task.docs))] == ["1 plus 2 is", "2 plus 2 is"]
    lm = lm_task("sums", [folder], None)
    lm.build_all_requests(limit=None)
    assert [i.args[0] for i in lm.instances] == ["1 plus 2 is", "2 plus 2 is"]
    ours_call, theirs_call = (json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines())
    assert ours_call == {"version": 2.0, "level": "easy", "config_source": str(folder / "sums.yaml"), "n": 2}
    assert {k: v for k, v in theirs_call.items() if k != "config_source"} == {
        k: v for k, v in ours_call.items() if k != "config_source"
    }
    with pytest.raises(LmevalError, match=r"custom_dataset loader !function loader\.broken failed \(ConnectionError"):
        task_for(registry.configs_for(["sums_broken"])["sums_broken"], data_dir=None)


def test_scrolls_is_refused_in_one_line(registry, mirror) -> None:
    """SCROLLS' classes import transformers' squad metrics and read zip files from the hub with
    their own download(): refused when the module does not import, and offline in any case."""
    try:
        cfg = registry.configs_for(["scrolls_qasper"])["scrolls_qasper"]
    except LmevalError as exc:
        assert "task class !function task.Qasper does not import" in str(exc) and "\n" not in str(exc)
        return
    with pytest.raises(LmevalError, match=r"class Qasper reads its data with its own download\(\)") as info:
        task_for(cfg, data_dir=mirror)
    assert "\n" not in str(info.value)
