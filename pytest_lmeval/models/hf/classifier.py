"""A Hugging Face sequence-classification model as a backend of one request kind, `classify`
(features/toxicity.py asks it whether generated texts are toxic).

`classify(requests, progress)` answers each `Request.classify(text)` with the model's
probability per label, `{label: p}` (labels from the model's `id2label`): a softmax over the
labels, or for a multi-label model (`problem_type: multi_label_classification`, as
unitary/toxic-bert is) each label's sigmoid. Texts are sorted by length and run in batches of
`batch_size`, padded, cut to the model's length; each batch's answers go to the engine as it
ends (so the response cache commits them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.requests import Request
from ..backend import Progress, answered
from ..spec import ModelSpec

DEFAULT_BATCH = 32
MAX_LENGTH = 512  # tokens a text is cut to where the model says no less


class HFClassifier:
    def __init__(self, spec: ModelSpec, *, device: str | None = None, batch_size: int | str = "auto") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.spec = spec
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size if isinstance(batch_size, int) and batch_size > 0 else DEFAULT_BATCH
        revision = spec.args.get("revision")
        self.tokenizer = AutoTokenizer.from_pretrained(spec.name, revision=revision)
        self.model = AutoModelForSequenceClassification.from_pretrained(spec.name, revision=revision)
        self.model.to(self.device).eval()
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.multi_label = config.problem_type == "multi_label_classification"
        limit = getattr(self.tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH
        self.max_length = min(int(limit), getattr(config, "max_position_embeddings", MAX_LENGTH) or MAX_LENGTH)

    def _probabilities(self, texts: list[str]) -> list[dict[str, float]]:
        torch = self.torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return [dict(zip(self.labels, (float(p) for p in row), strict=True)) for row in probs.cpu()]

    def classify(self, requests: Sequence[Request], progress: Progress) -> list[dict[str, float]]:
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].args[0]))
        out: list[dict[str, float] | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            got = self._probabilities([str(requests[i].args[0]) for i in chunk])
            for i, probs in zip(chunk, got, strict=True):
                out[i] = probs
            answered(progress, [(requests[i], out[i]) for i in chunk])
            progress(len(chunk))
        return [p for p in out if p is not None]

    def info(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "multi_label": self.multi_label,
            "device": str(self.device),
            "max_length": self.max_length,
        }
