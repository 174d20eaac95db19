"""GSM8K (Cobbe et al., 2021): grade-school maths word problems, answered by generation.

gsm8k: 5-shot from the train split, greedy until "Question:"; exact_match under two filters:
strict-match (the number after "#### ", the format of the few-shot answers) and
flexible-extract (the last number in the answer). gsm8k_cot: 8 fixed chain-of-thought
examples, strict-match reads "The answer is N.".

Prompts, few-shot sampling, filters and metrics are lm-evaluation-harness 0.4's; the task YAML
beside this file is its own. Each document is one item, `test_gsm8k[<task>-<doc index>]`.
"""


def test_gsm8k(lmeval_doc):
    lmeval_doc.check()
