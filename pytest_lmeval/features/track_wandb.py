"""`--wandb-args`: the run logged to Weights & Biases once its reports are written: the
configuration, every task's and group's metrics (in the summary), a per-document table, and
results.json and report.html saved with the run. `mode=offline` writes the run under `dir`
(or WANDB_DIR) for a later `wandb sync`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..models.spec import redact_args
from .tracker_options import run_metrics, sample_rows
from .tracking import Tracker

if TYPE_CHECKING:
    from ..run.result import RunResult

ARTIFACTS = ("results.json", "report.html")


class WandbTracking(Tracker):
    """Logs the concluded run through `wandb.init(...)`, finished before the session ends."""

    stash_key = pytest.StashKey["WandbTracking"]()
    name = "wandb"

    def log(self, result: RunResult) -> str:
        import wandb

        args = dict(self.args)
        init = {k: args.pop(k) for k in ("project", "entity", "name", "mode", "dir", "group", "job_type") if k in args}
        init.setdefault("name", result.model)
        tags = args.pop("tags", None)
        run = wandb.init(
            **init,
            tags=str(tags).split() if tags else None,
            config={**result.config, "model_label": result.model, "tracker_args": redact_args(args)},
            reinit="create_new",
        )
        try:
            metrics = run_metrics(result)
            run.log(metrics)
            run.summary.update({**metrics, "partial": result.partial})
            columns, rows = sample_rows(result)
            run.log({"samples": wandb.Table(columns=columns, data=rows)})
            for path in result.output_files:
                if path.name in ARTIFACTS:
                    run.save(str(path), base_path=str(path.parent), policy="now")
            return f"logged run in {run.dir}"
        finally:
            run.finish(exit_code=1 if result.partial else 0)
