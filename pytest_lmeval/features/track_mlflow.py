"""`--mlflow-args`: the run logged to MLflow once its reports are written: the configuration as
params, every task's and group's metrics, results.json and report.html as artifacts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from ..models.spec import redact_args, redact_urls
from .tracker_options import flat_params, run_metrics
from .tracking import Tracker

if TYPE_CHECKING:
    from ..run.result import RunResult

ARTIFACTS = ("results.json", "report.html")


class MlflowTracking(Tracker):
    """Logs the concluded run through MlflowClient (no global MLflow state is touched)."""

    stash_key = pytest.StashKey["MlflowTracking"]()
    name = "mlflow"

    def log(self, result: RunResult) -> str:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        args = dict(self.args)
        client = MlflowClient(tracking_uri=args.pop("tracking_uri", None))
        name = str(args.pop("experiment", args.pop("experiment_name", "pytest-lmeval")))
        experiment = client.get_experiment_by_name(name)
        location = args.pop("artifact_location", None)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, location)
        run_name = args.pop("run_name", None) or result.model
        tags = {str(k): str(v) for k, v in redact_args(args).items()}
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = flat_params({**result.config, "model_label": result.model})
        metrics = run_metrics(result)
        client.set_tag(run_id, "lmeval.partial", str(result.partial).lower())
        metric_list = [Metric(k, v, now, 0) for k, v in metrics.items()]
        param_list = [Param(k, v) for k, v in params.items()]
        for start in range(0, max(len(metric_list), len(param_list)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metric_list[start : start + 100], params=param_list[start : start + 100])
        for path in result.output_files:
            if path.name in ARTIFACTS:
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED" if not result.partial else "FAILED")
        uri = redact_urls(str(self.args.get("tracking_uri", "")))
        return f"logged run {run_id} to {uri or 'the default tracking URI'}"
