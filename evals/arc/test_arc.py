"""ARC Easy and Challenge (Clark et al., 2018): grade-school science questions; acc and acc_norm.
The Open LLM Leaderboard runs arc_challenge 25-shot.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_arc[<task>-<doc index>]`.
"""


def test_arc(lmeval_doc):
    lmeval_doc.check()
