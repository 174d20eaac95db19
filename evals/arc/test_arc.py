"""ARC, the AI2 Reasoning Challenge (Clark et al., 2018): grade-school science questions with
four (sometimes three or five) answers; the Challenge set keeps those that retrieval and
co-occurrence baselines got wrong. Scored by acc (the most likely answer is right) and
acc_norm (log-likelihood per character of the answer). The Open LLM Leaderboard v1 ran
arc_challenge 25-shot.
"""

import pytest_lmeval as lm


def _arc(name: str, subset: str) -> lm.Task:
    return lm.multiple_choice(
        name,
        data=lm.hub("allenai/ai2_arc", subset, split="test"),
        fewshot=lm.fewshot(split="train"),
        prompt="Question: {question}\nAnswer:",
        choices=lambda doc: doc["choices"]["text"],
        target=lambda doc: doc["choices"]["label"].index(doc["answerKey"]),
        tags=["ai2_arc"],
    )


arc_easy = _arc("arc_easy", "ARC-Easy")
arc_challenge = _arc("arc_challenge", "ARC-Challenge")


@lm.benchmark(arc_easy, arc_challenge)
def test_arc(doc):
    doc.score()
