"""WinoGrande (Sakaguchi et al., 2019): Winograd-schema sentences with a blank and two people
or things that could fill it. Scored the "partial" way: the blank is filled with each option,
and the model's choice is the option after which the rest of the sentence is most likely
(one continuation, two contexts). acc on the validation split of winogrande_xl.
"""

import pytest_lmeval as lm


def _blank(doc: dict) -> int:
    return doc["sentence"].index("_")


winogrande = lm.multiple_input(
    "winogrande",
    data=lm.hub("allenai/winogrande", "winogrande_xl", split="validation"),
    fewshot=lm.fewshot(split="train", exclude_doc=True),
    contexts=lambda doc: [doc["sentence"][: _blank(doc)] + option for option in (doc["option1"], doc["option2"])],
    continuation=lambda doc: doc["sentence"][_blank(doc) + 1 :].strip(),
    target=lambda doc: int(doc["answer"]) - 1,
)


@lm.benchmark(winogrande)
def test_winogrande(doc):
    doc.score()
