"""Guard of ANSWER_CODE_VERSION (pytest_lmeval/cache.py), which is part of every cache key: a
change to the code that computes answers (tokenization rules, scoring, generation) must bump it,
or cached answers of the old code would pass for the new code's.

A fixed set of requests is answered by the tiny random model of tests/tiny_model.py (seed 0);
the answers are stored beside the version in tests/data/answer_code_version.json. When they
change, bump the version and regenerate:

    python tests/test_answer_code_version.py
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_lmeval.core.requests import Request
from pytest_lmeval.engine.fingerprint import ANSWER_CODE_VERSION

STORED = Path(__file__).parent / "data" / "answer_code_version.json"
REGENERATE = "python tests/test_answer_code_version.py"
TOLERANCE = 1e-5

REQUESTS = [
    Request.loglikelihood("Question: What is the capital of France?\nAnswer:", " Paris"),
    Request.loglikelihood("The quick brown fox ", "jumps over the lazy dog."),
    Request.loglikelihood("", "yes"),
    Request.loglikelihood("A B C D", " yes no"),
    Request.loglikelihood_rolling("Science questions about plants, animals, water, energy and the sun."),
    Request.loglikelihood_rolling("the a an of to in is it that " * 40),  # longer than max_length: windows
    Request.generate_until("Question: What is the capital of France?\nAnswer:", {"until": ["\n"], "max_gen_toks": 8}),
    Request.generate_until("The quick brown", {"until": ["."], "max_gen_toks": 6}),
]


def answers(model_folder: Path) -> list[Any]:
    from pytest_lmeval.models.hf.backend import HFBackend
    from pytest_lmeval.models.spec import ModelSpec

    spec = ModelSpec("hf", str(model_folder), {"dtype": "float32", "max_length": 64})
    backend = HFBackend(spec, device="cpu", batch_size=2)
    out: list[Any] = []
    for kind in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        batch = [r for r in REQUESTS if r.kind == kind]
        out += [list(a) if isinstance(a, tuple) else a for a in getattr(backend, kind)(batch, lambda n: None)]
    return out


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, float) and not isinstance(want, bool):
        return math.isclose(got, want, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return got == want


def check(model_folder: Path) -> None:
    stored = json.loads(STORED.read_text())
    assert stored["version"] == ANSWER_CODE_VERSION, (
        f"ANSWER_CODE_VERSION is {ANSWER_CODE_VERSION} but {STORED.name} holds the answers of version "
        f"{stored['version']}: regenerate with {REGENERATE}"
    )
    got = answers(model_folder)
    changed = [
        f"{req.kind}{req.args!r}: {want!r} -> {now!r}"
        for req, want, now in zip(REQUESTS, stored["answers"], got, strict=True)
        if not _same(now, want)
    ]
    assert not changed, (
        "the code that computes answers changed them, so cached answers would be stale: "
        f"bump ANSWER_CODE_VERSION in pytest_lmeval/cache.py and regenerate with {REGENERATE}\n  "
        + "\n  ".join(changed)
    )


def test_answers_match_the_stored_ones_of_this_version(tiny_model: Path) -> None:
    check(tiny_model)


def test_a_changed_tokenization_rule_fails_the_guard(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_lmeval.models.hf.backend import HFBackend

    rule = HFBackend.tok_encode
    monkeypatch.setattr(HFBackend, "tok_encode", lambda self, text: [self.prefix_token_id, *rule(self, text)])
    with pytest.raises(AssertionError, match="bump ANSWER_CODE_VERSION in pytest_lmeval/cache.py and regenerate"):
        check(tiny_model)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        result = answers(build_tiny_model(Path(tmp) / "model"))
    STORED.write_text(json.dumps({"version": ANSWER_CODE_VERSION, "answers": result}, indent=1) + "\n")
    print(f"wrote {STORED} for ANSWER_CODE_VERSION {ANSWER_CODE_VERSION}")
