"""The experiment trackers, with the real packages: MLflow to a local file store, read back
through its own client; W&B in offline mode, read back from the run's files; and the one line
when a tracker's package is missing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from quiz_project import EXPECTED, error_lines, read_json, write_quiz, write_rows


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A pytest run in a process of its own (the trackers' modules and W&B's service stay out
    of this one)."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--no-cache", *args)


HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None

# Read back through MLflow's own client, in a process of its own: pytester restores sys.modules
# at each test's end, which leaves MLflow's and SQLAlchemy's lazily imported modules half gone.
READ_BACK = """
import json, sys
from mlflow.tracking import MlflowClient
uri, experiment, into = sys.argv[1:]
client = MlflowClient(tracking_uri=uri)
out = []
for run in client.search_runs([client.get_experiment_by_name(experiment).experiment_id]):
    run_id = run.info.run_id
    out.append({
        "run_name": run.info.run_name, "status": run.info.status, "metrics": run.data.metrics,
        "params": run.data.params, "tags": run.data.tags,
        "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
        "results.json": open(client.download_artifacts(run_id, "results.json", into)).read(),
    })
print(json.dumps(out))
"""


def mlflow_runs(uri: str, experiment: str, into: Path) -> list[dict]:
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", READ_BACK, uri, experiment, str(into)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


RUN = ("evals", "--model", "dummy:d", "--data-dir", "data", "--output-path", "out")


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's `run-*.wandb` file (W&B's LevelDB-style log:
    a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # block trailer
            pos += room
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def wandb_run(path: Path) -> tuple[dict, dict]:
    """An offline run's config and final summary, from its records (W&B 0.31 writes neither
    config.yaml nor wandb-summary.json for an offline run, and `wandb.Api` reads only the server)."""
    config: dict = {}
    summary: dict = {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        config.update({i.key: json.loads(i.value_json) for i in items})
        if kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return config, summary


def _acc(task: str) -> float:
    rows = EXPECTED[task]
    return sum(acc for _, acc, _ in rows) / len(rows)


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_mlflow_logs_params_metrics_and_artifacts(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    if not HAS_MLFLOW:
        pytest.skip("MLflow is not installed")
    if store == "sqlite":
        pytest.importorskip("sqlalchemy")
        pytest.importorskip("alembic")
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:  # MLflow 3 keeps the file store in maintenance mode, behind this switch
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (tmp_path / "mlruns").as_uri()
    write_quiz(pytester.path)
    artifacts_at = (tmp_path / "artifacts").as_uri()
    args = f"tracking_uri={uri},experiment=quiz,run_name=r1,artifact_location={artifacts_at},api_key=sk-secret123"
    result = run(pytester, *RUN, "--mlflow-args", args)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"lmeval mlflow: logged run * to {store}:*"])
    (logged,) = mlflow_runs(uri, "quiz", tmp_path / "read")
    assert logged["run_name"] == "r1" and logged["status"] == "FINISHED"
    metrics, params = logged["metrics"], logged["params"]
    doc = read_json(pytester.path / "out" / "results.json")
    for task in ("quiz_a", "quiz_b"):
        assert metrics[f"{task}/acc"] == pytest.approx(_acc(task))
        assert metrics[f"{task}/acc_stderr"] == pytest.approx(doc["results"][task]["acc_stderr,none"])
    assert metrics["quiz/acc_norm"] == pytest.approx(doc["groups"]["quiz"]["acc_norm,none"])
    assert params["model_label"] == "dummy:d" and params["model"] == "dummy"
    assert logged["tags"]["api_key"] != "sk-secret123"  # secrets never reach the tracker
    assert "sk-secret123" not in result.stdout.str()
    assert {"results.json", "report.html"} <= set(logged["artifacts"])
    assert json.loads(logged["results.json"])["results"] == doc["results"]


def test_wandb_offline_run_files(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")

    write_quiz(pytester.path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run(pytester, *RUN, "--wandb-args", "project=quiz,mode=offline,name=r1")
    assert result.ret == 0, result.stdout.str()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    files = run_dir / "files"
    (log,) = run_dir.glob("run-*.wandb")
    config, summary = wandb_run(log)
    for task in ("quiz_a", "quiz_b"):
        assert summary[f"{task}/acc"] == pytest.approx(_acc(task))
    assert summary["partial"] is False
    assert config["model_label"] == "dummy:d" and config["model"] == "dummy"
    (table,) = (files / "media" / "table").glob("samples_*.table.json")
    samples = json.loads(table.read_text())
    assert samples["columns"][:2] == ["task", "doc_id"]
    assert len(samples["data"]) == len(EXPECTED["quiz_a"]) + len(EXPECTED["quiz_b"])
    assert (files / "results.json").is_file() and (files / "report.html").is_file()


@pytest.mark.parametrize(
    ("option", "module", "extra"),
    [
        ("--mlflow-args", "mlflow", "mlflow"),
        ("--wandb-args", "wandb", "wandb"),
        ("--hf-hub-log-args", "huggingface_hub", "hub"),
    ],
)
def test_missing_package_is_one_line(pytester: pytest.Pytester, option: str, module: str, extra: str) -> None:
    write_quiz(pytester.path)
    pytester.makeconftest(f"import sys\nsys.modules[{module!r}] = None\n")
    result = run(pytester, *RUN, option, "project=x")
    name = {"mlflow": "MLflow", "wandb": "W&B", "hub": "huggingface_hub"}[extra]
    assert error_lines(result) == [f"ERROR: {option} needs {name}: pip install 'pytest-lmeval[{extra}]'"]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_hub_push_in_lm_evals_layout(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a local endpoint speaking the hub's HTTP API (tests/hub_endpoint.py), through
    the real huggingface_hub client; huggingface.co itself is not reached here."""
    pytest.importorskip("huggingface_hub")
    from hub_endpoint import HubEndpoint

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_quiz(pytester.path)
    with HubEndpoint() as hub:
        args = f"hub_results_org=org,endpoint={hub.url},token=hf_secret123"
        result = run(pytester, *RUN, "--log-samples", "--hf-hub-log-args", args)
    assert result.ret == 0, result.stdout.str()
    assert hub.unknown == []
    assert set(hub.tokens) == {"Bearer hf_secret123"}
    assert "hf_secret123" not in result.stdout.str() + result.stderr.str()
    assert set(hub.repos) == {"org/lm-eval-results-private"}
    assert hub.repos["org/lm-eval-results-private"]["type"] == "dataset"
    files = hub.files["org/lm-eval-results-private"]
    (results_path,) = [p for p in files if p.startswith("d/results_")]
    assert json.loads(files[results_path]) == read_json(pytester.path / "out" / "results.json")
    for task in ("quiz_a", "quiz_b"):
        (samples_path,) = [p for p in files if p.startswith(f"d/samples_{task}_")]
        want = (pytester.path / "out" / "samples" / f"{task}.jsonl").read_bytes()
        assert files[samples_path] == want and samples_path.endswith(".jsonl")
    result.stdout.fnmatch_lines(["lmeval hub: pushed 3 files (*)"])


def test_hub_unreachable_is_one_line(pytester: pytest.Pytester) -> None:
    pytest.importorskip("huggingface_hub")
    write_quiz(pytester.path)
    args = "hub_results_org=org,endpoint=http://127.0.0.1:9,token=hf_secret123"
    result = run(pytester, *RUN, "--hf-hub-log-args", args)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["lmeval hub: not pushed: *"])
    assert "hf_secret123" not in result.stdout.str() + result.stderr.str()


def test_mlflow_partial_run_ends_failed(pytester: pytest.Pytester, tmp_path: Path) -> None:
    if not HAS_MLFLOW:
        pytest.skip("MLflow is not installed")
    pytest.importorskip("sqlalchemy")
    write_quiz(pytester.path)
    rows = [row for row, _, _ in EXPECTED["quiz_b"]]
    write_rows(pytester.path / "data" / "local" / "quiz" / "b" / "test.jsonl", [*rows, {**rows[0], "label": 9}])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = f"tracking_uri={uri},experiment=quiz,artifact_location={(tmp_path / 'artifacts').as_uri()}"
    result = run(pytester, *RUN, "--mlflow-args", args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # one document could not be scored
    (logged,) = mlflow_runs(uri, "quiz", tmp_path / "read")
    assert logged["status"] == "FAILED" and logged["tags"]["lmeval.partial"] == "true"
    assert logged["metrics"]["quiz_a/acc"] == pytest.approx(_acc("quiz_a"))
