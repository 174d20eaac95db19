"""LAMBADA (Paperno et al., 2016), OpenAI's version of the test set: passages whose last word
humans guess only with the whole passage in view. The model reads all but the last word;
scored by the last word's perplexity and acc (greedy decoding gives exactly that word).
"""

import pytest_lmeval as lm

lambada_openai = lm.loglikelihood(
    "lambada_openai",
    data=lm.hub("EleutherAI/lambada_openai", "default", split="test"),
    prompt=lambda doc: " ".join(doc["text"].split(" ")[:-1]),
    target=lambda doc: " " + doc["text"].split(" ")[-1],
    tags=["lambada"],
)


@lm.benchmark(lambada_openai)
def test_lambada(doc):
    doc.score()
