"""judged_qa: twelve open-ended science questions written for pytest-lmeval, each with a
reference answer; a judge model (`--judge-model`) decides whether the model's answer says what
the reference says, in any words. Strategy `llm_recall`: an answer equal to the reference
(ignoring case and end punctuation) is right without asking the judge; every other answer is
judged. Not an lm-eval task: our own data and metric (`judge`, the share judged correct).

    pytest evals/judged_qa --model hf:HuggingFaceTB/SmolLM2-135M-Instruct \\
        --judge-model local-chat-completions:gpt-4o-mini \\
        --judge-model-args base_url=http://127.0.0.1:8000/v1/chat/completions
"""

import pytest_lmeval as lm

judged_qa = lm.generate(
    "judged_qa",
    data=lm.local("questions.jsonl"),
    prompt="Answer the question in one sentence.\nQuestion: {question}\nAnswer:",
    target="answer",
    until=["\n"],
    max_tokens=64,
    metrics=[lm.judge("judge", question="question", reference="answer", strategy="llm_recall")],
)


@lm.benchmark(judged_qa)
def test_judged_qa(doc):
    doc.score()
