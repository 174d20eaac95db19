"""The test module the plugin supplies for tasks that no test file owns.

A task found through `--include-path`, lm-eval's own catalogue (`--tasks` naming a task that
ships with lm-eval), or a benchmark folder without a `test_*.py` still becomes one item per
document: its YAML file is collected as a module holding this one test function, with ids like
`path/to/task.yaml::test_lmeval[<task>-<doc index>]`. To customise the test body, put a
`test_<name>.py` beside the YAML (or in a folder above it): it then owns the task.
"""


def test_lmeval(lmeval_doc):
    lmeval_doc.check()
