"""OpenBookQA (Mihaylov et al., 2018): elementary science questions that need a fact from a
small "open book" plus common knowledge; four answers. Scored by acc and acc_norm.
"""

import pytest_lmeval as lm

openbookqa = lm.multiple_choice(
    "openbookqa",
    data=lm.hub("allenai/openbookqa", "main", split="test"),
    fewshot=lm.fewshot(split="train"),
    prompt="{question_stem}",
    choices=lambda doc: doc["choices"]["text"],
    target=lambda doc: doc["choices"]["label"].index(doc["answerKey"].lstrip()),
)


@lm.benchmark(openbookqa)
def test_openbookqa(doc):
    doc.score()
