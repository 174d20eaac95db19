"""HellaSwag (Zellers et al., 2019): commonsense sentence completion, lm-eval's preprocessing
(utils.process_docs) of the activity label and context; acc and acc_norm.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_hellaswag[<task>-<doc index>]`.
"""


def test_hellaswag(lmeval_doc):
    lmeval_doc.check()
