"""PIQA (Bisk et al., 2020): physical commonsense, two solutions per goal; acc and acc_norm.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_piqa[<task>-<doc index>]`.
"""


def test_piqa(lmeval_doc):
    lmeval_doc.check()
