"""PIQA, Physical Interaction QA (Bisk et al., 2020): which of two solutions reaches a
physical goal. Scored by acc and acc_norm on the validation split.
"""

import pytest_lmeval as lm

piqa = lm.multiple_choice(
    "piqa",
    data=lm.hub("baber/piqa", split="validation"),
    fewshot=lm.fewshot(split="train", exclude_doc=True),
    prompt="Question: {goal}\nAnswer:",
    choices=lambda doc: [doc["sol1"], doc["sol2"]],
    target="label",
)


@lm.benchmark(piqa)
def test_piqa(doc):
    doc.score()
