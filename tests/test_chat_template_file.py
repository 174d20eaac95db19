"""--chat-template with a Jinja template of the user's own, as a file or inline: prompts rendered
by it (in jinja2's immutable sandbox: the same text transformers renders for a tokenizer's
template), recorded in results.json with its hash; a template that reaches for Python internals,
mutates its input or does not parse is one clear line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_lmeval.tasks.chat import ChatTemplate

TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
BENCH = """
import pytest_lmeval as lm

sums = lm.generate("sums", data=lm.rows([{"q": "2+2", "a": "4"}, {"q": "3+3", "a": "6"}]), prompt="Q: {q}", target="a")


@lm.benchmark(sums)
def test_sums(doc):
    doc.score()
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_sums=BENCH)
    return pytester.runpytest(
        "test_sums.py", "-p", "no:cacheprovider", "--no-cache", "--model", "dummy:d", "--output-path", "out",
        "--log-samples", *args,
    )  # fmt: skip


def _prompts(pytester: pytest.Pytester) -> list[str]:
    lines = (pytester.path / "out" / "samples" / "sums.jsonl").read_text().splitlines()
    return [json.loads(line)["arguments"]["gen_args_0"]["arg_0"] for line in lines]


def test_template_file_renders_prompts_and_is_recorded(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("mine.jinja").write_text(TEMPLATE)
    result = _run(pytester, "--chat-template", "mine.jinja", "--system-instruction", "Be brief.")
    assert result.ret == 0, result.stdout.str()
    assert _prompts(pytester) == [
        "[system] Be brief.\n[user] Q: 2+2\n[assistant] ",
        "[system] Be brief.\n[user] Q: 3+3\n[assistant] ",
    ]
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["chat_template"] == TEMPLATE
    assert doc["chat_template_sha"] == hashlib.sha256(TEMPLATE.encode()).hexdigest()
    assert doc["chat_template_name"] == "file:mine.jinja"


def test_inline_template(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--apply-chat-template", "<<{{ messages[-1]['content'] }}>>")
    assert result.ret == 0, result.stdout.str()
    assert _prompts(pytester) == ["<<Q: 2+2>>", "<<Q: 3+3>>"]
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["chat_template_name"] == "inline"


@pytest.mark.parametrize(
    "template,message",
    [
        ("{{ messages.__class__.__mro__ }}", "*--chat-template inline: SecurityError: *__class__* is unsafe*"),
        ("{% set _ = messages.append(1) %}x", "*--chat-template inline: SecurityError: *append* is unsafe*"),
        ("{% for m in messages %}{{ m }}", "*--chat-template inline: line 1: Unexpected end of template*"),
    ],
)
def test_unsafe_or_broken_template_is_one_line(pytester: pytest.Pytester, template: str, message: str) -> None:
    result = _run(pytester, "--chat-template", template)
    assert result.ret != 0
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    (result.stderr.str() and result.stderr or result.stdout).fnmatch_lines([message])


def test_missing_template_file(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--chat-template", "nosuch.jinja")
    result.stderr.fnmatch_lines(["*--chat-template nosuch.jinja: no such file*"])


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if not loop.last or message['role'] != 'assistant' %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_sandbox_renders_as_transformers(tmp_path: Path) -> None:
    from tiny_model import build_tiny_model
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path))
    theirs = ChatTemplate(None, CHATML, tok)
    ours = ChatTemplate("inline", CHATML, tok, custom=True)
    chats = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: 2+2"}],
        [{"role": "user", "content": "Q: 2+2"}, {"role": "assistant", "content": "The answer is"}],
    ]
    assert ours(chats[0], True) == theirs(chats[0], True)
    assert ours(chats[1], False) == theirs(chats[1], False)  # the final message continued
    assert ours(chats[1], False).endswith("The answer is")
