"""BIG-Bench Hard (Suzgun et al., 2022): 27 hard BIG-Bench tasks, answered by generation.

Groups: `bbh` and `bbh_cot_fewshot` (the same 27 tasks, lm-eval's 3-shot chain-of-thought
prompts, exact_match after the `get-answer` filter that reads "the answer is X"), and
`bbh_zeroshot` (no examples; exact_match under strict-match and flexible-extract, whose
helpers are in zeroshot/utils.py). Groups average their tasks weighted by size.

Prompts, few-shot examples, filters and metrics are lm-evaluation-harness 0.4's; the task YAML
under this folder is its own. Each document is one item, `test_bbh[<task>-<doc index>]`.
"""


def test_bbh(lmeval_doc):
    lmeval_doc.check()
