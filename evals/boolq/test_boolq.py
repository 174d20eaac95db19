"""BoolQ (Clark et al., 2019), SuperGLUE version: yes/no questions about a passage; acc.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_boolq[<task>-<doc index>]`.
"""


def test_boolq(lmeval_doc):
    lmeval_doc.check()
