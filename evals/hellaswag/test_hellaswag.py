"""HellaSwag (Zellers et al., 2019): pick the sentence that continues a video caption or a
WikiHow step; the wrong endings were written by a model and filtered to fool models.
Scored by acc and acc_norm on the validation split (the test labels are not public).
"""

import re

import pytest_lmeval as lm


def _clean(text: str) -> str:
    """WikiHow items carry bracketed markup such as "[title]"; the first becomes a sentence
    break, the rest are dropped, and doubled spaces collapse."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _prepare(doc: dict) -> dict:
    context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        **doc,
        "query": _clean(doc["activity_label"] + ": " + context),
        "choices": [_clean(ending) for ending in doc["endings"]],
        "gold": int(doc["label"]),
    }


hellaswag = lm.multiple_choice(
    "hellaswag",
    data=lm.hub("Rowan/hellaswag", split="validation"),
    process=_prepare,
    # No test split: lm-eval leaves a document out of its own examples (drawn from train).
    fewshot=lm.fewshot(split="train", exclude_doc=True),
    prompt="{query}",
    choices="choices",
    target=lambda doc: int(doc["label"]),
    tags=["multiple_choice"],
)


@lm.benchmark(hellaswag)
def test_hellaswag(doc):
    doc.score()
