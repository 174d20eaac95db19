"""The text of a benchmark file that runs tasks by name, for the projects tests build."""


def benchmark_source(test: str, *tasks: str) -> str:
    names = ", ".join(repr(t) for t in tasks)
    return f"import pytest_lmeval as lm\n\n\n@lm.benchmark({names})\ndef test_{test}(doc):\n    doc.score()\n"
