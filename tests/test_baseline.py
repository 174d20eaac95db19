"""`--baseline`: a paired comparison with an earlier run, document by document. The flipped
documents listed are exactly those whose correctness changed; McNemar's p-value and interval
equal an independent computation; a gate fails only when the drop is both larger than
--max-drop and significant at --alpha; -k reruns exactly the flipped documents."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest
from benchmark_source import benchmark_source  # noqa: E402
from golden_project import flipped, has_lines, read_json, run, use_variant, write_project
from scipy import stats

# golden_a: 40 documents; 14 lost, 2 gained, 16 right in both, 8 wrong in both
A = [(True, False)] * 14 + [(False, True)] * 2 + [(True, True)] * 16 + [(False, False)] * 8
# golden_b: 20 documents; 3 lost, 1 gained
B = [(True, False)] * 3 + [(False, True)] * 1 + [(True, True)] * 10 + [(False, False)] * 6


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar test from its definition: twice the smaller binomial tail of
    Binomial(lost + gained, 1/2), in exact fractions."""
    m = lost + gained
    tail = sum(Fraction(math.comb(m, i), 2**m) for i in range(min(lost, gained) + 1))
    return float(min(Fraction(1), 2 * tail))


def clopper_pearson_diff(lost: int, gained: int, n: int, alpha: float) -> tuple[float, float]:
    """The difference's interval, in points, from the Clopper-Pearson interval (beta quantiles)
    of the share of discordant documents lost."""
    m = lost + gained
    low = stats.beta.ppf(alpha / 2, lost, gained + 1) if lost else 0.0
    high = stats.beta.ppf(1 - alpha / 2, lost + 1, gained) if gained else 1.0
    return (100 * m / n * (1 - 2 * high), 100 * m / n * (1 - 2 * low))


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The first run (variant a) done, in base/; the project switched to variant b."""
    write_project(pytester.path, A, B)
    first = run(pytester, "--output-path", "base")
    assert first.ret == 0
    use_variant(pytester.path, "b")
    return pytester


def _gate(path, name: str) -> dict:
    return next(g for g in read_json(path)["gates"] if g["name"] == name)


def test_a_significant_drop_fails_and_names_the_flipped_documents(project: pytest.Pytester) -> None:
    res = run(
        project,
        "--tasks",
        "golden_a",
        "--output-path",
        "now",
        "--baseline",
        "base",
        "--max-drop",
        "1.0",
        "--junitxml",
        "junit.xml",
    )
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    lost, gained = flipped("golden_a", A)
    p = mcnemar_exact(14, 2)
    assert p == pytest.approx(0.004180908203125)
    low, high = clopper_pearson_diff(14, 2, 40, 0.05)

    gate = _gate(project.path / "now" / "results.json", "baseline[golden_a:acc]")
    assert gate["passed"] is False
    assert gate["flipped_to_wrong"] == lost and gate["flipped_to_right"] == gained
    assert (gate["before"], gate["after"]) == (pytest.approx(30 / 40), pytest.approx(18 / 40))
    assert gate["diff"] == pytest.approx(-30.0) and gate["unit"] == "points"
    assert gate["test"] == "exact McNemar" and gate["n"] == 40
    assert gate["p_value"] == pytest.approx(p, rel=1e-9)
    assert gate["ci"] == [pytest.approx(low, rel=1e-6), pytest.approx(high, rel=1e-6)]
    assert high < 0  # the interval excludes 0, as p < 0.05 says

    has_lines(
        res,
        f"FAIL baseline[golden_a:acc]: golden_a:acc 0.7500 -> 0.4500: -30.00 points (95% CI {low:+.2f} to "
        f"{high:+.2f}), exact McNemar p={p:.4g}, n=40; dropped 30.00 points (more than 1 points allowed) and "
        f"p={p:.3g} < 0.05",
        "right before, wrong now (14): golden_a-0, golden_a-1, golden_a-2, golden_a-3, golden_a-4, golden_a-5, "
        "golden_a-6, golden_a-7, golden_a-8, golden_a-9 and 4 more",
        "wrong before, right now (2): golden_a-14, golden_a-15",
        "PASS baseline[golden_a:acc_norm]: golden_a:acc_norm 0.0000 -> 0.0000: +0.00 points",
        "FAILED lmeval-gates::baseline[golden_a:acc]",
    )
    case = next(
        c
        for c in ET.parse(project.path / "junit.xml").getroot().iter("testcase")
        if c.get("name") == "baseline[golden_a:acc]"
    )
    message = case.find("failure").get("message")
    assert f"p={p:.4g}" in message and "golden_a-15" in message


def test_a_drop_that_is_not_significant_passes_and_says_why(project: pytest.Pytester) -> None:
    res = run(project, "--tasks", "golden_b", "--output-path", "now", "--baseline", "base", "--max-drop", "1")
    assert res.ret == 0
    p = mcnemar_exact(3, 1)
    assert p == pytest.approx(0.625)
    has_lines(
        res,
        "PASS baseline[golden_b:acc]: golden_b:acc 0.6500 -> 0.5500: -10.00 points",
        f"dropped 10.00 points (more than 1 points) but p={p:.3g} >= 0.05: not significant",
    )
    # the same drop, significant at a looser alpha, fails
    loose = run(project, "--tasks", "golden_b", "--output-path", "now2", "--baseline", "base", "--alpha", "0.7")
    assert loose.ret == 1
    assert _gate(project.path / "now2" / "results.json", "baseline[golden_b:acc]")["confidence"] == pytest.approx(0.3)


def test_a_drop_within_max_drop_passes(project: pytest.Pytester) -> None:
    res = run(project, "--tasks", "golden_a", "--output-path", "now", "--baseline", "base", "--max-drop", "30")
    assert res.ret == 0
    has_lines(res, "dropped 30.00 points, within the 30 points allowed")


def test_the_group_is_the_gate_and_its_tasks_are_reported(project: pytest.Pytester) -> None:
    """Without --tasks the top level is the group `golden`: its McNemar pools both tasks'
    documents (the group is weighted by size); the tasks' comparisons are in results.json."""
    res = run(project, "--output-path", "now", "--baseline", "base", "--max-drop", "1")
    assert res.ret == 1
    doc = read_json(project.path / "now" / "results.json")
    assert [g["name"] for g in doc["gates"]] == ["baseline[golden:acc]", "baseline[golden:acc_norm]"]
    group = doc["gates"][0]
    lost_a, gained_a = flipped("golden_a", A)
    lost_b, gained_b = flipped("golden_b", B)
    assert group["flipped_to_wrong"] == lost_a + lost_b and group["flipped_to_right"] == gained_a + gained_b
    assert group["p_value"] == pytest.approx(mcnemar_exact(17, 3), rel=1e-9)
    assert group["n"] == 60
    rows = {(c["name"], c["metric"]): c for c in doc["baseline"]["comparisons"]}
    assert rows[("golden_b", "acc,none")]["gated"] is False
    assert rows[("golden_b", "acc,none")]["p_value"] == pytest.approx(mcnemar_exact(3, 1))
    assert rows[("golden", "acc,none")]["gated"] is True
    assert doc["baseline"]["path"] == str(project.path / "base")


def test_the_rerun_expression_selects_exactly_the_flipped_documents(project: pytest.Pytester) -> None:
    """-k matches substrings: golden_a-1 alone would also select golden_a-10 to -19."""
    run(project, "--output-path", "now", "--baseline", "base")
    gate = _gate(project.path / "now" / "results.json", "baseline[golden:acc]")
    expression = gate["rerun_k"]
    assert "[golden_a-1]" in expression
    res = run(project, "--collect-only", "-q", "-k", expression)
    selected = sorted(line.split("[")[1].rstrip("]") for line in res.outlines if "::test_golden[" in line)
    assert selected == sorted(gate["flipped_to_wrong"] + gate["flipped_to_right"])


def test_a_baseline_from_samples_alone_as_lm_eval_writes_them(project: pytest.Pytester) -> None:
    """Every run writes documents.jsonl; a folder with only results.json and samples/ (an
    lm-eval run with --log_samples) serves as well."""
    assert (project.path / "base" / "documents.jsonl").is_file()
    use_variant(project.path, "a")
    assert run(project, "--output-path", "logged", "--log-samples").ret == 0
    (project.path / "logged" / "documents.jsonl").unlink()
    use_variant(project.path, "b")
    res = run(project, "--tasks", "golden_a", "--output-path", "now", "--baseline", "logged/results.json")
    assert res.ret == 1
    gate = _gate(project.path / "now" / "results.json", "baseline[golden_a:acc]")
    assert gate["flipped_to_wrong"] == flipped("golden_a", A)[0]


def test_baseline_under_xdist_equals_the_single_process_run(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    assert run(project, "--output-path", "one", "--baseline", "base").ret == 1
    assert run(project, "--output-path", "two", "--baseline", "base", "-n", "2").ret == 1
    one, two = read_json(project.path / "one" / "results.json"), read_json(project.path / "two" / "results.json")
    assert two["gates"] == one["gates"]
    assert two["baseline"]["comparisons"] == one["baseline"]["comparisons"]


def test_a_baseline_without_results_is_a_usage_error(project: pytest.Pytester) -> None:
    (project.path / "empty").mkdir()
    res = run(project, "--baseline", "empty", "--model-args", "fail_on=Q")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: --baseline 'empty': no results.json there; pass an earlier run's output folder"])
    res = run(project, "--baseline", "nowhere")
    res.stderr.fnmatch_lines(["ERROR: --baseline 'nowhere': no such file or folder"])


def test_a_baseline_sharing_no_document_fails(project: pytest.Pytester) -> None:
    other = project.path / "other"
    shutil.copytree(project.path / "base", other)
    lines = (other / "documents.jsonl").read_text().replace('"task": "golden_', '"task": "silver_')
    (other / "documents.jsonl").write_text(lines)
    res = run(project, "--output-path", "now", "--baseline", "other")
    assert res.ret == 1
    has_lines(res, "FAIL baseline: no document of this run is in the baseline")


PPL_YAML = """\
task: cloze
dataset_path: local/cloze
output_type: loglikelihood
test_split: test
doc_to_text: "{{q}}"
doc_to_target: " {{%s}}"
metric_list:
  - metric: perplexity
"""


def test_perplexity_is_compared_by_paired_bootstrap_in_its_own_units(pytester: pytest.Pytester) -> None:
    """The dummy's log-likelihood is minus the continuation's length: longer answers in the
    second run mean a higher perplexity, a drop for a lower-is-better metric."""
    folder = pytester.path / "evals" / "cloze"
    folder.mkdir(parents=True)
    (folder / "test_cloze.py").write_text(benchmark_source("cloze", "cloze"))
    data = pytester.path / "data" / "local" / "cloze" / "default" / "test.jsonl"
    data.parent.mkdir(parents=True)
    rows = [(f"q{i}", "x" * (1 + i % 3), "x" * (2 + i % 3)) for i in range(30)]
    data.write_text("".join(f'{{"q": "{q}", "a": "{a}", "b": "{b}"}}\n' for q, a, b in rows))
    pytester.makeini("[pytest]\nlmeval_evals_dir = evals\n")

    def go(field: str, *args: str) -> pytest.RunResult:
        (folder / "cloze.yaml").write_text(PPL_YAML % field)
        return pytester.runpytest(
            "evals", "-p", "no:cacheprovider", "--no-cache", "--model", "dummy:m", "--data-dir", "data", *args
        )

    assert go("a", "--output-path", "base").ret == 0
    res = go("b", "--output-path", "now", "--baseline", "base", "--max-drop", "0.5")
    assert res.ret == 1
    before = math.exp(sum(1 + len(a) for _, a, _ in rows) / 30)
    after = math.exp(sum(1 + len(b) for _, _, b in rows) / 30)
    assert read_json(pytester.path / "now" / "results.json")["results"]["cloze"]["perplexity,none"] == pytest.approx(
        after
    )
    gate = _gate(pytester.path / "now" / "results.json", "baseline[cloze:perplexity]")
    assert gate["test"] == "paired bootstrap" and gate["unit"] == ""
    assert (gate["before"], gate["after"]) == (pytest.approx(before), pytest.approx(after))
    assert gate["diff"] == pytest.approx(after - before)
    # every document got worse by one character (perplexity x e): every resample says worse,
    # so p is the bootstrap's floor, 2 / (resamples + 1)
    assert 0 < gate["ci"][0] < after - before < gate["ci"][1]
    assert gate["p_value"] == pytest.approx(2 / 10_001)
    assert gate["flipped_to_wrong"] == []
    has_lines(res, f"rose {after - before:.2f} (more than 0.5 allowed) and p=")
    # a looser max-drop, in the metric's units, lets it pass
    assert go("b", "--output-path", "now2", "--baseline", "base", "--max-drop", str(after - before + 0.1)).ret == 0


LETTERS_YAML = """\
task: letters
dataset_path: local/golden
dataset_name: a
output_type: multiple_choice
test_split: test
doc_to_text: "{{q}}\\nA. {{a[0]}}\\nB. {{a[1]}}\\nC. {{a[2]}}\\nD. {{a[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: label
"""


def test_two_checkpoints_flip_exactly_what_their_samples_say(pytester: pytest.Pytester, tiny_model) -> None:
    """Two checkpoints of a real (tiny, random) HF model: the flipped documents and McNemar's
    p come, independently, from the two runs' samples files (lm-eval's schema)."""
    from tiny_model import build_tiny_model

    other = build_tiny_model(pytester.path / "ckpt2", seed=1)
    write_project(pytester.path, A, B)
    (pytester.path / "evals" / "golden" / "letters.yaml").write_text(LETTERS_YAML)

    def go(model, *args: str) -> pytest.RunResult:
        return pytester.runpytest(
            "evals",
            "-p",
            "no:cacheprovider",
            "--no-cache",
            "--model",
            f"hf:{model}",
            "--device",
            "cpu",
            "--data-dir",
            "data",
            "--tasks",
            "letters",
            "--log-samples",
            *args,
        )

    assert go(tiny_model, "--output-path", "one").ret == 0
    assert go(other, "--output-path", "two", "--baseline", "one", "--max-drop", "100").ret == 0

    def acc(run: str) -> dict[int, float]:
        lines = (pytester.path / run / "samples" / "letters.jsonl").read_text().splitlines()
        return {s["doc_id"]: s["acc"] for s in map(json.loads, lines)}

    one, two = acc("one"), acc("two")
    lost = [f"letters-{i}" for i in sorted(one) if one[i] == 1 and two[i] == 0]
    gained = [f"letters-{i}" for i in sorted(one) if one[i] == 0 and two[i] == 1]
    assert lost and gained, "the checkpoints agree on every document: the check would be empty"
    gate = _gate(pytester.path / "two" / "results.json", "baseline[letters:acc]")
    assert gate["flipped_to_wrong"] == lost and gate["flipped_to_right"] == gained
    assert gate["p_value"] == pytest.approx(mcnemar_exact(len(lost), len(gained)), rel=1e-9)
    assert gate["diff"] == pytest.approx((sum(two.values()) - sum(one.values())) / len(one) * 100)
