"""OpenBookQA (Mihaylov et al., 2018): science questions; acc and acc_norm.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_openbookqa[<task>-<doc index>]`.
"""


def test_openbookqa(lmeval_doc):
    lmeval_doc.check()
