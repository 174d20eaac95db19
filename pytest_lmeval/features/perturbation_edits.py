"""The perturbations themselves: functions from text (and a seeded random source) to text, and
their application to a whole document.

Robustness (HELM's invariance set; `robustness` names all six):
- `typos`: each letter, with probability TYPO_PROB, becomes a key next to it on a QWERTY keyboard,
  case kept, the way a hurried typist slips.
- `lowercase`: the text in lower case.
- `contractions` ("do not" -> "don't") and `expansions` (the reverse).
- `misspellings`: a word found in the list of common misspellings becomes its usual misspelling
  with probability MISSPELLING_PROB ("receive" -> "recieve").
- `whitespace`: each run of spaces becomes 1 to MAX_SPACES spaces.

Fairness (HELM's fairness set, sec. 4.6; `fairness` names all three):
- `gender`: male pronouns become female ones (he -> she, him/his -> her, himself -> herself), as
  HELM's gender perturbation does in its pronoun mode.
- `dialect`: Standard American English words and phrases become their African American English
  rendering (fairness_words.DIALECT, after Groenwold et al., 2020), every occurrence, case kept.
- `names`: each first name of one race group (fairness_words.FIRST_NAMES, Caliskan et al., 2017)
  becomes a name of the same gender from another group; the same name gets the same replacement
  everywhere in the document, the choice seeded like every other edit.

Every edit draws only on the random source it is given, seeded by rng_for, so a rerun or another
xdist worker makes the same prompt and the cache can recognise it.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from .fairness_words import DIALECT, FIRST_NAMES, NAME_GROUP
from .perturbation_words import CONTRACTIONS, EXPANSIONS, MISSPELLINGS, NEIGHBOURS, PRONOUNS

ROBUSTNESS = ("typos", "lowercase", "contractions", "expansions", "misspellings", "whitespace")
FAIRNESS = ("gender", "dialect", "names")
ALIASES = {"robustness": ROBUSTNESS, "fairness": FAIRNESS}
DOCUMENT_WIDE = ("names",)  # edits seeded once per document, not per field: a name swaps alike everywhere
TYPO_PROB = 0.1
MISSPELLING_PROB = 0.5
MAX_SPACES = 3


def _cased(word: str, like: str) -> str:
    """`word` in the case of `like` (all caps, capitalised, or lower)."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _phrases(mapping: dict[str, str]) -> re.Pattern[str]:
    alternatives = sorted(mapping, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alternatives) + r")\b", re.I)


def _replace_all(mapping: dict[str, str], pattern: re.Pattern[str]) -> Callable[[str, random.Random], str]:
    def apply(text: str, rng: random.Random) -> str:
        return pattern.sub(lambda m: _cased(mapping[re.sub(r"\s+", " ", m.group(0).lower())], m.group(0)), text)

    return apply


def typos(text: str, rng: random.Random) -> str:
    out = []
    for c in text:
        near = NEIGHBOURS.get(c.lower())
        if near and rng.random() < TYPO_PROB:
            d = rng.choice(near)
            c = d.upper() if c.isupper() else d
        out.append(c)
    return "".join(out)


def lowercase(text: str, rng: random.Random) -> str:
    return text.lower()


_WORD = re.compile(r"[A-Za-z]+")


def misspellings(text: str, rng: random.Random) -> str:
    def one(m: re.Match[str]) -> str:
        wrong = MISSPELLINGS.get(m.group(0).lower())
        return _cased(wrong, m.group(0)) if wrong and rng.random() < MISSPELLING_PROB else m.group(0)

    return _WORD.sub(one, text)


def whitespace(text: str, rng: random.Random) -> str:
    return re.sub(r" +", lambda m: " " * rng.randint(1, MAX_SPACES), text)


_NAMES = re.compile(r"\b(" + "|".join(sorted(NAME_GROUP, key=len, reverse=True)) + r")\b")


def names(text: str, rng: random.Random) -> str:
    """Each listed first name becomes one of the same gender from another race group. The
    replacement depends on the name and the random source's state, which is read but not
    advanced, so every piece of a document's text seeded alike swaps a name the same way."""
    probe = random.Random()
    probe.setstate(rng.getstate())
    salt = probe.getrandbits(32)

    def swap(m: re.Match[str]) -> str:
        group, gender = NAME_GROUP[m.group(0)]
        others = [n for g, by in FIRST_NAMES.items() if g != group for n in by[gender]]
        return others[zlib.crc32(f"{salt}:{m.group(0)}".encode()) % len(others)]

    return _NAMES.sub(swap, text)


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": typos,
    "lowercase": lowercase,
    "contractions": _replace_all(CONTRACTIONS, _phrases(CONTRACTIONS)),
    "expansions": _replace_all(EXPANSIONS, _phrases(EXPANSIONS)),
    "misspellings": misspellings,
    "whitespace": whitespace,
    "gender": _replace_all(PRONOUNS, _phrases(PRONOUNS)),
    "dialect": _replace_all(DIALECT, _phrases(DIALECT)),
    "names": names,
}


def rng_for(seed: int, task: str, doc_id: int, name: str) -> random.Random:
    """The same edits for the same seed, task, document and perturbation, in every process
    (a string seed is hashed with SHA-512, not with the process's salted hash)."""
    return random.Random(f"{seed}:{task}:{doc_id}:{name}")


def perturb_text(name: str, text: str, rng: random.Random) -> str:
    """Callers name a perturbation rather than hold its function, as the names are what
    --perturb, item ids and results.json use."""
    return PERTURBATIONS[name](text, rng)


def _kept(name: str, text: str, rng: random.Random, keep: Iterable[str]) -> str:
    """The text perturbed except where it holds one of `keep` (each kept as it is, word for word)."""
    words = sorted({k for k in keep if k}, key=len, reverse=True)
    if not words:
        return perturb_text(name, text, rng)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)")
    out, last = [], 0
    for m in pattern.finditer(text):
        out += [perturb_text(name, text[last : m.start()], rng), m.group(0)]
        last = m.end()
    out.append(perturb_text(name, text[last:], rng))
    return "".join(out)


def perturbed_doc(
    doc: dict[str, Any], name: str, seed: int, task: str, doc_id: int, keep: Iterable[str] = ()
) -> dict[str, Any]:
    """The document with each of its text fields perturbed (lists and numbers as they are),
    each field with edits of its own; a field equal to one of `keep` stays as it is, and so do
    its words wherever another field holds them."""
    keep = tuple(keep)
    out = dict(doc)
    for key, value in doc.items():
        if isinstance(value, str) and value not in keep:
            where = task if name in DOCUMENT_WIDE else f"{task}/{key}"
            out[key] = _kept(name, value, rng_for(seed, where, doc_id, name), keep)
    return out
