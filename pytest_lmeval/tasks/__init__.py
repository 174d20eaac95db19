"""Tasks: how a benchmark is declared (declare.py, config.py), where its documents come from
(sources.py, data.py), how its prompts and requests are built (task.py, prompts.py,
templates.py, outputs/), and every task the run can name (registry.py); lm-eval's YAML,
catalogue and class tasks in lmeval/."""
