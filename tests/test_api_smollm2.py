"""The real SmolLM2-135M served over HTTP: `local-completions` gives the same arc_easy
per-document log-likelihoods (1e-4) and the same scores as `hf:` on the same weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import ModelService, OpenAIServer
from real_model import arc_data_dir

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 10


def _run(model: str, args: str, out: Path) -> dict:
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "evals"), "-p", "no:cacheprovider", "-q", "--no-cache",
        "--tasks", "arc_easy", "--limit", str(LIMIT), "--model", model, "--model-args", args,
        "--data-dir", str(arc_data_dir()), "--output-path", str(out), "--log-samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = [json.loads(line) for line in (out / "samples" / "arc_easy.jsonl").read_text().splitlines()]
    return {
        "results": json.loads((out / "results.json").read_text())["results"]["arc_easy"],
        "lls": {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in samples},
    }


def test_local_completions_equals_hf_on_arc_easy(tmp_path: Path) -> None:
    arc_data_dir()
    from real_model import GGUF, smollm2_dir

    folder = smollm2_dir()
    hf = _run(f"hf:{folder}", f"gguf_file={GGUF},dtype=float32", tmp_path / "hf")
    with OpenAIServer(ModelService(folder, gguf_file=GGUF), "smollm2") as server:
        args = f"base_url={server.url},tokenizer={folder},gguf_file={GGUF},num_concurrent=4"
        api = _run("local-completions:smollm2", args, tmp_path / "api")
        assert server.stats.prompts == sum(len(v) for v in hf["lls"].values())
    assert api["lls"].keys() == hf["lls"].keys() and len(hf["lls"]) == LIMIT
    for doc_id, lls in hf["lls"].items():
        assert api["lls"][doc_id] == pytest.approx(lls, abs=1e-4), doc_id
    # acc and acc_norm equal; continuous figures of the log-likelihoods (calibration) to 1e-4
    assert api["results"].keys() == hf["results"].keys()
    for key, value in hf["results"].items():
        other = api["results"][key]
        assert other == (pytest.approx(value, abs=1e-4) if isinstance(value, float) else value), key
