"""MMLU (Hendrycks et al., 2021): 57 subjects of 4-choice questions, 5-shot from the dev split
with lm-eval's first_n sampler. Groups: mmlu, mmlu_stem, mmlu_humanities, mmlu_social_sciences,
mmlu_other, weighted by size.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_mmlu[<task>-<doc index>]`.
"""


def test_mmlu(lmeval_doc):
    lmeval_doc.check()
