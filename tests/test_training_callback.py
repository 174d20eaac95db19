"""`LmevalCallback` in a transformers `Trainer`: a tiny model trained a few steps on the CPU is
evaluated in memory every N steps; the metrics reach `state.log_history` through `Trainer.log`
(so every tracker's `on_log` too) next to the Trainer's own loss logs, and equal `evaluate` on
the same weights; a failed gate is logged and, when asked, stops training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from quiz_project import write_quiz

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import pytest_lmeval as lm  # noqa: E402
from pytest_lmeval.run.training import logged_metrics  # noqa: E402


class Seen(transformers.TrainerCallback):
    """What a tracker receives: every `on_log` call's logs."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _trainer(folder: Path, out: Path, callbacks: list[Any], steps: int = 4) -> Any:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok("The quick brown fox jumps over the lazy dog. Science questions about plants")["input_ids"]
    data = [{"input_ids": ids, "labels": ids}] * 8
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=2, learning_rate=0.05, report_to="none",
        use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    return transformers.Trainer(
        model=model, args=args, train_dataset=data, processing_class=tok, callbacks=callbacks,
        data_collator=transformers.default_data_collator,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> dict[str, Any]:
    root = write_quiz(tmp_path / "project")
    monkeypatch.chdir(root)
    return {"include_path": "evals", "data_dir": "data"}


def test_metrics_are_logged_through_the_trainer(tiny_model: Path, tmp_path: Path, project) -> None:
    seen = Seen()
    callback = lm.LmevalCallback(tasks="quiz", every_n_steps=2, limit=4, **project)
    trainer = _trainer(tiny_model, tmp_path / "out", [callback, seen])
    trainer.train()
    history = trainer.state.log_history
    evaluated = [e for e in history if "lmeval/quiz/acc" in e]
    assert [e["step"] for e in evaluated] == [2, 4]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]  # the Trainer's own logs are all there
    assert sorted(callback.results) == [2, 4]
    # the trackers' on_log got them too, with the Trainer's epoch
    assert [{k: v for k, v in e.items() if k.startswith("lmeval/")} for e in seen.logs if "lmeval/quiz/acc" in e] == [
        {k: v for k, v in e.items() if k.startswith("lmeval/")} for e in evaluated
    ]
    assert {"lmeval/quiz_a/acc", "lmeval/quiz_a/acc_norm", "lmeval/quiz_b/acc"} <= set(evaluated[-1])
    # the last evaluation saw the final weights: evaluate on them gives the same numbers
    model = trainer.model
    assert model.training  # put back in training mode after each evaluation
    again = lm.evaluate(
        model, "quiz", tokenizer=trainer.processing_class, limit=4, write_reports=False, no_cache=True, **project
    )
    logged = {k: v for k, v in evaluated[-1].items() if k.startswith("lmeval/")}
    assert logged == logged_metrics(again)
    assert not (Path.cwd() / "reports").exists()  # no reports by default


def test_failed_gate_stops_training_when_asked(tiny_model: Path, tmp_path: Path, project) -> None:
    callback = lm.LmevalCallback(
        tasks=["quiz_a"], every_n_steps=2, limit=3, threshold=["quiz_a:acc>=1.5"], stop_on_gate_failure=True, **project
    )
    trainer = _trainer(tiny_model, tmp_path / "out", [callback], steps=6)
    trainer.train()
    assert trainer.state.global_step == 2
    (entry,) = [e for e in trainer.state.log_history if "lmeval/gates_failed" in e]
    assert entry["lmeval/gates_failed"] == 1.0 and entry["step"] == 2
    assert not callback.results[2].passed


def test_callback_checks_its_keywords_at_once() -> None:
    with pytest.raises(TypeError, match="every_n_steps=N and/or on_save=True"):
        lm.LmevalCallback(tasks="quiz")
    with pytest.raises(TypeError, match="did you mean: num_fewshot"):
        lm.LmevalCallback(tasks="quiz", every_n_steps=10, num_fewshots=5)
