"""The test module the plugin supplies for tasks that no benchmark file runs.

A task found through `--include-path` or lm-eval's own catalogue (`--tasks` naming a task that
ships with lm-eval) still becomes one item per document: its YAML file is collected as a module
holding this one test function, with ids like `path/to/task.yaml::test_lmeval[<task>-<doc>]`.
To write the test body yourself, name the task in a benchmark file: `@benchmark("<task>")`.
"""

from ..tasks.benchmark import benchmark


@benchmark()
def test_lmeval(doc):
    doc.score()
