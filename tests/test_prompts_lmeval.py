"""Every request our tasks build equals the one lm-eval's ConfigurableTask builds for the same
document: prompts with their few-shot examples, continuations, generation arguments and
rolling texts, plain and under a chat template (with a system instruction, few-shot examples
as one turn or as several).

The reference is lm-eval 0.4.13's own task YAML (from the installed package), ours the Python
declarations in evals/, both on the same mirror (../shared/data plus the fixtures in tests/data/mirror).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lmeval_ref import hf_chat_template, lm_eval_tasks_dir, lm_requests, lm_task, lmeval_mirror  # noqa: E402
from mirror import LibraryTasks, merged_mirror, shared_mirror  # noqa: E402

from pytest_lmeval.tasks.chat import ChatTemplate  # noqa: E402
from pytest_lmeval.tasks.prompts import PLAIN, PromptStyle  # noqa: E402
from pytest_lmeval.tasks.task import Task  # noqa: E402

pytest.importorskip("lm_eval")

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if not loop.last or message['role'] != 'assistant' %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    if shared_mirror() is None:
        pytest.skip("the shared benchmark mirror is not available (set LMEVAL_DATA_DIR)")
    return merged_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def registry() -> LibraryTasks:
    return LibraryTasks()


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory) -> Any:
    """A small real tokenizer carrying a ChatML template (SmolLM2's format)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    fast.chat_template = CHATML
    folder = tmp_path_factory.mktemp("chat_tok")
    fast.save_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _ours(task: Task) -> dict[int, list[tuple]]:
    out = {}
    for i in range(len(task.docs)):
        work = task.build(i)
        reqs = work.requests[:1] if task.config.output_type == "generate_until" else work.requests
        out[i] = [(r.args[0], r.gen_kwargs) if r.kind == "generate_until" else tuple(r.args) for r in reqs]
    return out


CASES = [
    # (task, lm-eval folders, n-shot (None: the task's), limit)
    ("arc_easy", ["arc"], None, 10),
    ("arc_easy", ["arc"], 3, 10),
    ("openbookqa", ["openbookqa"], 2, 10),
    ("piqa", ["piqa"], None, 10),
    ("boolq", ["super_glue/boolq"], None, 10),
    ("mmlu_anatomy", ["mmlu/default"], 5, 10),
    ("mmlu_high_school_us_history", ["mmlu/default"], 5, 3),
    ("truthfulqa_mc1", ["truthfulqa"], None, 25),
    ("truthfulqa_mc2", ["truthfulqa"], None, 25),
    ("winogrande", ["winogrande"], None, 25),
    ("winogrande", ["winogrande"], 5, 25),
    ("gsm8k", ["gsm8k"], None, 6),
    ("gsm8k", ["gsm8k"], 3, 6),
    ("gsm8k_cot", ["gsm8k"], None, 6),
    ("lambada_openai", ["lambada"], None, 10),
    ("wikitext", ["wikitext"], None, 3),
    ("hellaswag", ["hellaswag"], 10, 15),
    ("arc_challenge", ["arc"], 25, 10),
    ("bbh_cot_fewshot_date_understanding", ["bbh/cot_fewshot"], None, 2),
    ("bbh_cot_fewshot_boolean_expressions", ["bbh/cot_fewshot"], None, 3),
    ("bbh_zeroshot_word_sorting", ["bbh/zeroshot"], None, 2),
]


@pytest.mark.parametrize(("name", "folders", "shots", "limit"), CASES, ids=lambda v: str(v))
def test_requests_equal_lm_eval(name, folders, shots, limit, mirror, registry) -> None:
    ours = _ours(Task(registry.tasks[name], data_dir=mirror, num_fewshot=shots, limit=limit))
    with lmeval_mirror(mirror):
        theirs = lm_requests(lm_task(name, [lm_eval_tasks_dir() / f for f in folders], shots), limit)
    assert len(ours) == len(theirs) == limit
    for doc_id in theirs:
        assert ours[doc_id] == theirs[doc_id], f"{name} document {doc_id}"


CHAT_CASES = [
    ("gsm8k", ["gsm8k"], 3, True, "You are a careful solver."),
    ("gsm8k", ["gsm8k"], 3, False, "You are a careful solver."),
    ("gsm8k_cot", ["gsm8k"], None, True, None),
    ("winogrande", ["winogrande"], 2, True, None),
    ("winogrande", ["winogrande"], 2, False, "Fill the blank."),
    ("truthfulqa_mc1", ["truthfulqa"], None, False, "Answer truthfully."),
    ("bbh_cot_fewshot_date_understanding", ["bbh/cot_fewshot"], None, True, None),
]


@pytest.mark.parametrize(("name", "folders", "shots", "multiturn", "system"), CHAT_CASES, ids=lambda v: str(v))
def test_chat_requests_equal_lm_eval(name, folders, shots, multiturn, system, mirror, registry, chat_tokenizer) -> None:
    limit = 2
    style = PromptStyle(system, ChatTemplate(None, CHATML, chat_tokenizer), multiturn)
    ours = _ours(Task(registry.tasks[name], data_dir=mirror, num_fewshot=shots, limit=limit, style=style))
    with lmeval_mirror(mirror):
        task = lm_task(name, [lm_eval_tasks_dir() / f for f in folders], shots)
        theirs = lm_requests(
            task,
            limit,
            system_instruction=system,
            apply_chat_template=True,
            fewshot_as_multiturn=multiturn,
            chat_template=hf_chat_template(chat_tokenizer),
        )
    for doc_id in theirs:
        assert ours[doc_id] == theirs[doc_id], f"{name} document {doc_id}"
    if name == "gsm8k":  # what the template did: a system turn, then k+1 user turns or one
        first = ours[0][0][0]
        assert first.startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nQuestion: ")
        assert first.count("<|im_start|>user") == (shots + 1 if multiturn else 1)
        assert first.endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")


def test_plain_prompt_of_gsm8k_spelled_out(mirror, registry) -> None:
    """What lm-eval's gsm8k prompt is, in the fixture's words: k solved examples from train,
    each 'Question: ...\\nAnswer: <solution>' and a blank line, then the question."""
    task = Task(registry.tasks["gsm8k"], data_dir=mirror, num_fewshot=1, limit=1, style=PLAIN)
    example = task.fewshot_docs[task.fewshot_indices(0)[0]]
    assert task.context(0) == (
        f"Question: {example['question']}\nAnswer: {example['answer']}\n\nQuestion: {task.docs[0]['question']}\nAnswer:"
    )


def test_winogrande_sends_one_continuation_after_each_context(mirror, registry) -> None:
    task = Task(registry.tasks["winogrande"], data_dir=mirror, limit=1)
    doc = task.docs[0]  # "Sarah was a much better surgeon than Maria so _ always got the easier cases."
    work = task.build(0)
    assert task.multiple_input
    assert [r.args for r in work.requests] == [
        ("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
        ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
    ]
    assert work.gold == int(doc["answer"]) - 1 == 1


@pytest.mark.parametrize("name", ["gsm8k", "bbh_cot_fewshot_date_understanding", "winogrande"])
def test_system_instruction_without_chat_template_equals_lm_eval(name, mirror, registry) -> None:
    """Plain text: lm-eval puts the instruction (and the task's description, a blank line
    between) right before the first example, with nothing in between."""
    folders = {"gsm8k": ["gsm8k"], "winogrande": ["winogrande"]}.get(name, ["bbh/cot_fewshot"])
    shots = 2 if name == "winogrande" else None
    style = PromptStyle("Think.", None, False)
    ours = _ours(Task(registry.tasks[name], data_dir=mirror, num_fewshot=shots, limit=2, style=style))
    with lmeval_mirror(mirror):
        task = lm_task(name, [lm_eval_tasks_dir() / f for f in folders], shots)
        theirs = lm_requests(task, 2, system_instruction="Think.")
    assert ours == theirs
    if name == "gsm8k":
        assert ours[0][0][0].startswith("Think.Question: ")
