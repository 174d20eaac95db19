"""--gen-kwargs is read as lm-eval's CLI reads it; a chat template is picked from a tokenizer
as lm-eval picks it."""

from __future__ import annotations

import pytest

from pytest_lmeval.core.errors import LmevalError
from pytest_lmeval.run.option_values import parse_gen_kwargs
from pytest_lmeval.tasks.chat import select_template

CASES = [
    "temperature=0.8,top_p=0.95,do_sample=true",
    'until=["\\n\\n","Q:"],max_gen_toks=128',
    "do_sample=false,temperature=0",
    "seed=7,stop='###'",
]


@pytest.mark.parametrize("text", CASES)
def test_gen_kwargs_typed_as_lm_eval(text: str) -> None:
    cli = pytest.importorskip("lm_eval._cli.utils")
    want = cli.key_val_to_dict(text)
    if "temperature" in want:  # lm-eval's TaskConfig makes it a float when it reaches the task
        want["temperature"] = float(want["temperature"])
    assert parse_gen_kwargs(text) == want


def test_gen_kwargs_examples() -> None:
    assert parse_gen_kwargs('until=["\\n\\n","Q:"],temperature=0') == {"until": ["\n\n", "Q:"], "temperature": 0.0}
    assert parse_gen_kwargs('{"top_k": 5, "do_sample": true}') == {"top_k": 5, "do_sample": True}
    assert parse_gen_kwargs("") is None
    with pytest.raises(LmevalError, match="'top_p' is not key=value"):
        parse_gen_kwargs("temperature=1,top_p")


def test_chat_template_selection() -> None:
    assert select_template("{{ messages }}", None) == (None, "{{ messages }}")
    assert select_template("{{ messages }}", "tool_use") == (None, "{{ messages }}")  # one template: the name is moot
    several = {"default": "D", "tool_use": "T"}
    assert select_template(several, None) == ("default", "D")
    assert select_template(several, "tool_use") == ("tool_use", "T")
    with pytest.raises(LmevalError, match="no template of that name \\(it has: default, tool_use\\)"):
        select_template(several, "rag")
    with pytest.raises(LmevalError, match="none is 'default'"):
        select_template({"a": "A"}, None)
    with pytest.raises(LmevalError, match="has no chat template"):
        select_template(None, None)
