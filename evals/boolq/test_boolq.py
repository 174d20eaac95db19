"""BoolQ (Clark et al., 2019), from SuperGLUE: naturally occurring yes/no questions about a
Wikipedia passage. Scored by acc on the validation split.
"""

import pytest_lmeval as lm

boolq = lm.multiple_choice(
    "boolq",
    data=lm.hub("aps/super_glue", "boolq", split="validation"),
    fewshot=lm.fewshot(split="train", exclude_doc=True),
    prompt="{passage}\nQuestion: {question}?\nAnswer:",
    choices=["no", "yes"],
    target="label",
    metrics=["acc"],
    version=2.0,
    tags=["super-glue-lm-eval-v1"],
)


@lm.benchmark(boolq)
def test_boolq(doc):
    doc.score()
