"""Toxicity of generated text (features/toxicity.py, `--toxicity-model hf:NAME`): a tiny
BERT sequence classifier built here (id2label {0: non-toxic, 1: toxic}) scores each generative
document's texts through the engine (batched, cached: a rerun classifies nothing); the fraction
at toxicity >= 0.5 per task in the terminal, results.json and report.html's fragment; the
classifier's label found by name; a bad --toxicity-model is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from quiz_project import error_lines, read_json, run

from pytest_lmeval.features import toxicity
from pytest_lmeval.report.helm_sections import helm_sections

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
# Imported here, once: pytester's in-process runs drop the modules first imported during a test,
# and torch's operator registrations (loaded with BERT) cannot be imported a second time.
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

TEXTS = ["you are a kind friend", "what a lovely day", "you stupid idiot", "the cat sat on the mat"]
WORDS = sorted({w for t in TEXTS for w in t.split()})


def build_classifier(folder: Path, texts: list[str], toxic: int) -> tuple[Path, list[float]]:
    """A random tiny BERT whose classifier bias puts the 0.5 line so that exactly `toxic` of
    `texts` (the highest-scoring) are toxic; the toxicity of each text, computed here with
    transformers one text at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        initializer_range=0.5,  # weights large enough that the texts score apart
        id2label={0: "non-toxic", 1: "toxic"},
        label2id={"non-toxic": 0, "toxic": 1},
    )
    model = BertForSequenceClassification(config).eval()

    def margins() -> list[float]:
        with torch.no_grad():
            out = [model(**tok(t, return_tensors="pt")).logits[0] for t in texts]
        return [float(o[1] - o[0]) for o in out]

    ranked = sorted(margins(), reverse=True)
    cut = (ranked[toxic - 1] + ranked[toxic]) / 2
    assert ranked[toxic - 1] - ranked[toxic] > 1e-3  # a clear line between flagged and not
    with torch.no_grad():
        model.classifier.bias[1] -= cut
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, [float(torch.sigmoid(torch.tensor(m))) for m in margins()]


def test_toxic_label_by_name() -> None:
    assert toxicity.toxic_label(["non-toxic", "toxic"]) == "toxic"
    assert toxicity.toxic_label(["neutral", "toxic"]) == "toxic"
    assert toxicity.toxic_label(["NOT_TOXIC", "IS_TOXIC"]) == "IS_TOXIC"
    assert toxicity.toxic_label(["LABEL_0", "LABEL_1"]) == "LABEL_1"
    assert toxicity.toxic_label(["toxic", "severe_toxic", "obscene", "insult"]) == "toxic"  # toxic-bert's
    with pytest.raises(Exception, match=r"none of the classifier's labels \(positive, negative\) is a toxic label"):
        toxicity.toxic_label(["positive", "negative"])


SAY = """
import pytest_lmeval as lm

say = lm.generate("say", data=lm.rows([{"t": t} for t in TEXTS]), prompt="{t}", target=lambda d: d["t"],
                  until=["\\n"], metrics=["exact_match"])

@lm.benchmark(say)
def test_say(doc):
    doc.score()
"""


def test_fraction_flagged_through_the_engine_and_cache(pytester: pytest.Pytester, tmp_path: Path) -> None:
    folder, scores = build_classifier(tmp_path / "tox", TEXTS, toxic=2)
    flagged = [i for i, s in enumerate(scores) if s >= 0.5]
    assert len(flagged) == 2
    pytester.makepyfile(test_say=f"TEXTS = {TEXTS!r}\n" + SAY)
    args = ("--model", "dummy:d", "--toxicity-model", f"hf:{folder}", "--cache-dir", "cache", "--output-path", "out")
    res = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert res.ret == 0, res.stdout.str()
    doc = read_json(pytester.path / "out" / "results.json")
    say = doc["toxicity"]["say"]
    assert say["toxic_fraction"] == 0.5 and say["toxic"] == 2 and say["texts"] == 4
    assert say["flagged"] == [f"say-{i}" for i in flagged]
    assert say["max_toxicity"] == pytest.approx(max(scores), abs=1e-4)
    assert say["mean_toxicity"] == pytest.approx(sum(scores) / 4, abs=1e-4)
    assert doc["toxicity_classifier"] == {
        "model": f"hf:{folder}",
        "label": "toxic",
        "threshold": 0.5,
        "requests": 4,
        "from_cache": 0,
        "computed": 4,
    }
    head = f"lmeval toxicity ({toxicity.note(f'hf:{folder}')})"
    assert f"{head}: 4 texts classified, 0 from cache" in res.outlines
    ids = ", ".join(f"say-{i}" for i in flagged)
    assert f"lmeval toxicity: say: 0.5000 (2 of 4 generations toxic) ({ids})" in res.outlines
    html = "".join(helm_sections(doc))
    assert '<section id="toxicity">' in html and '<td class="num">2 of 4</td>' in html
    # a rerun asks the cache, not the classifier
    again = pytester.runpytest("-p", "no:cacheprovider", *args[:-1], "again")
    assert again.ret == 0
    assert f"{head}: 0 texts classified, 4 from cache" in again.outlines
    assert read_json(pytester.path / "again" / "results.json")["toxicity"]["say"]["flagged"] == say["flagged"]
    # a gate on it, as on any metric (from the cache again)
    gated = pytester.runpytest("-p", "no:cacheprovider", *args[:-1], "gated", "--threshold", "say:toxic_fraction<=0.25")
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    assert "FAIL gate[say:toxic_fraction<=0.25]: say:toxic_fraction = 0.5000, required <= 0.2500" in gated.stdout.str()
    alone = run(pytester, "--model", "dummy:d", "--threshold", "say:toxic_fraction<=0.25")
    assert "toxic_fraction was not measured in this run (tasks: say); toxic_fraction needs --toxicity-model" in (
        alone.stdout.str()
    )


def test_a_bad_toxicity_model_is_one_error_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_say=f"TEXTS = {TEXTS!r}\n" + SAY)
    res = run(pytester, "--model", "dummy:d", "--toxicity-model", "openai:gpt")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert error_lines(res) == [
        "ERROR: --toxicity-model 'openai:gpt': name a Hugging Face sequence-classification model as hf:NAME "
        "(hf:unitary/toxic-bert, hf:/path/to/folder)"
    ]
    missing = run(pytester, "--model", "dummy:d", "--toxicity-model", "hf:./nowhere")
    assert missing.ret != 0
    where = pytester.path / "nowhere"
    assert error_lines(missing) == [f"ERROR: --toxicity-model hf:./nowhere: no such file or folder: {where}"]
