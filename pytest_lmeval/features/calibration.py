"""The calibration feature: each multiple-choice document's confidence (the probability the
model gives the choice it picks), recorded with its scores so the run's expected calibration
error and selective accuracy (scoring/calibration.py) can be computed on the controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..scoring.calibration import CONFIDENCE, doc_confidence

if TYPE_CHECKING:
    from ..tasks.benchmark import Doc


class Calibration:
    """Stateless: everything it needs travels on the document's record."""

    def pytest_lmeval_document_record(self, doc: Doc, record: dict[str, Any]) -> None:
        confidence = doc_confidence(doc.task, doc.work, doc.responses)
        if confidence is not None:
            record[CONFIDENCE] = confidence
