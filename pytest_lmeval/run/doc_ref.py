"""A document's item parameter: which task and document (and perturbation) an item scores."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class DocRef:
    """The parameter of a document's item: small, so collection stays light."""

    task: str
    doc_id: int
    perturbation: str | None = None  # features/perturbation.py: the document's question perturbed so

    def __str__(self) -> str:
        base = f"{self.task}-{self.doc_id}"
        return f"{base}[{self.perturbation}]" if self.perturbation else base


def lmeval_ref(item: pytest.Item) -> DocRef | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return next((v for v in callspec.params.values() if isinstance(v, DocRef)), None)
