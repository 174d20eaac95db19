"""WikiText-2 (Merity et al., 2016), document level: the perplexity of whole Wikipedia
articles, scored in windows of the model's context. The raw text is tokenised with spaces
around punctuation ("1 @,@ 000", "( a )"); the model reads it detokenised, while words and
bytes are counted on the raw page, so the figures compare with other harnesses.
word_perplexity, byte_perplexity and bits_per_byte on the test split.
"""

import re

import pytest_lmeval as lm

# The detokenizer's steps, in order: (pattern, replacement, whether the pattern is a regex).
_STEPS = [
    ("s '", "s'", False),
    (r"/' [0-9]/", r"/'[0-9]/", True),
    *((f" @{mark}@ ", mark, False) for mark in "-,."),  # "1 @,@ 000" -> "1,000"
    *((f" {mark} ", f"{mark} ", False) for mark in (":", ";", ".", "!", "?", ",")),
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)", True),
    (r"\[\s*([^\]]*?)\s*\]", r"[\1]", True),
    (r"{\s*([^}]*?)\s*}", r"{\1}", True),
    (r"\"\s*([^\"]*?)\s*\"", r'"\1"', True),
    (r"'\s*([^']*?)\s*'", r"'\1'", True),
    ("= = = =", "====", False),
    ("= = =", "===", False),
    ("= =", "==", False),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}", False),
    (" \n", "\n", False),
    ("\n ", "\n", False),
    (" N ", " 1 ", False),
    (" 's", "'s", False),
]


def detokenize(doc: dict) -> str:
    text = doc["page"]
    for pattern, new, is_regex in _STEPS:
        text = re.sub(pattern, new, text) if is_regex else text.replace(pattern, new)
    return text


def _words(doc: dict) -> int:
    return len(re.split(r"\s+", doc["page"]))


def _bytes(doc: dict) -> int:
    return len(doc["page"].encode("utf-8"))


wikitext = lm.rolling(
    "wikitext",
    data=lm.hub("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", split="test"),
    text=detokenize,
    metrics=[
        lm.metric(
            lambda doc, ll: (ll, _words(doc)),
            name="word_perplexity",
            higher_is_better=False,
            aggregation="weighted_perplexity",
        ),
        lm.metric(
            lambda doc, ll: (ll, _bytes(doc)),
            name="byte_perplexity",
            higher_is_better=False,
            aggregation="weighted_perplexity",
        ),
        lm.metric(
            lambda doc, ll: (ll, _bytes(doc)), name="bits_per_byte", higher_is_better=False, aggregation="bits_per_byte"
        ),
    ],
    version=2.0,
)


@lm.benchmark(wikitext)
def test_wikitext(doc):
    doc.score()
