"""`--hf-hub-log-args`: the run pushed to Hugging Face dataset repos in lm-eval's layout, once
its reports are written: `<model_name>/results_<date>.json` in the results repo and
`<model_name_sanitized>/samples_<task>_<date>.jsonl` (with `--log-samples`) in the details repo;
repos `<hub_results_org>/<details_repo_name>` (default `lm-eval-results`), with `-private`
unless `public_repo=true`. The token comes from `token=` or HF_TOKEN and is never shown."""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from .tracking import Tracker

if TYPE_CHECKING:
    from ..run.result import RunResult


def sanitize_model_name(name: str) -> str:
    """lm-eval's: `EleutherAI/pythia-160m` -> `EleutherAI__pythia-160m`."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else str(value).lower() in ("1", "true", "yes")


class HubLogging(Tracker):
    """Pushes results.json (and the samples) with `huggingface_hub.HfApi`."""

    stash_key = pytest.StashKey["HubLogging"]()
    name = "hub"
    failed = "not pushed"

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args)
        self.pushed: list[str] = []  # repo_id/path_in_repo of each file pushed

    def ready(self, result: RunResult) -> bool:
        return bool(result.output_files)  # it pushes the written files

    def log(self, result: RunResult) -> str:
        self.push(result)
        return f"pushed {len(self.pushed)} files ({', '.join(self.pushed)})"

    def push(self, result: RunResult) -> None:
        import huggingface_hub

        args = self.args
        token = args.get("token") or os.environ.get("HF_TOKEN") or None
        api = huggingface_hub.HfApi(endpoint=args.get("endpoint") or None, token=token)
        org = args.get("hub_results_org") or api.whoami()["name"]
        details = args.get("hub_repo_name") or args.get("details_repo_name") or "lm-eval-results"
        results = args.get("hub_repo_name") or args.get("results_repo_name") or details
        public = _flag(args.get("public_repo"), False)
        suffix = "" if public else "-private"
        model_name = str(result.config.get("model_name") or result.model)
        date_id = datetime.now().isoformat().replace(":", "-")
        by_name = {path.name: path for path in result.output_files}
        samples = [p for p in result.output_files if p.parent.name == "samples" and p.suffix == ".jsonl"]
        uploads: list[tuple[str, str, Any]] = []
        if _flag(args.get("push_results_to_hub"), True) and "results.json" in by_name:
            path_in_repo = f"{model_name}/results_{date_id}.json"
            uploads.append((f"{org}/{results}{suffix}", path_in_repo, by_name["results.json"]))
        if _flag(args.get("push_samples_to_hub"), True):
            folder = sanitize_model_name(model_name)
            for path in samples:
                uploads.append((f"{org}/{details}{suffix}", f"{folder}/samples_{path.stem}_{date_id}.jsonl", path))
        for repo_id in dict.fromkeys(repo for repo, _, _ in uploads):
            api.create_repo(repo_id=repo_id, repo_type="dataset", private=not public, exist_ok=True)
        for repo_id, path_in_repo, path in uploads:
            api.upload_file(
                repo_id=repo_id,
                repo_type="dataset",
                path_or_fileobj=str(path),
                path_in_repo=path_in_repo,
                commit_message=f"Adding results for {model_name}",
            )
            self.pushed.append(f"{repo_id}/{path_in_repo}")
