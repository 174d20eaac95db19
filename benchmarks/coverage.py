"""How much of lm-eval's task catalogue pytest-lmeval runs, kept honest by walking all of it.

Every leaf task name in the installed lm-eval catalogue (lm-eval's own TaskManager index) is
resolved by our registry, by name, as `--tasks NAME` resolves it: accepted, or refused with the
one-line reason a user would see, grouped here by the feature it names. Then, on a sample of
accepted tasks whose data is in the mirror (the shared mirror plus tests/data/mirror), the
documents are loaded and the first ones' requests built, which is what collection does.

    python benchmarks/coverage.py [--sample 40] [--json out.json] [--markdown]

Prints the table the README's "What lm-eval tasks run" section shows.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

_FEATURES = [
    (r"metric '([^']+)' is not supported for (\w+)", lambda m: f"metric {m[1]} on {m[2]}"),
    (r"metric '([^']+)' is an HF evaluate metric", lambda m: "HF evaluate metric not loadable offline"),
    (r"aggregation '([^']+)' is not supported", lambda m: f"aggregation {m[1]}"),
    (r"would be registered by the task's helpers", lambda m: "filter of a task helper whose packages are missing"),
    (r"filter function '([^']+)'", lambda m: f"filter function {m[1]}"),
    (r"is a unitxt recipe", lambda m: "unitxt recipe (class:; needs pip install unitxt)"),
    (r"task class (\S+ )?\S+ does not import", lambda m: "Python task class whose module does not import"),
    (r"custom_dataset", lambda m: "custom_dataset loader"),
    (r"image inputs", lambda m: "images (doc_to_image)"),
    (r"audio inputs", lambda m: "audio (doc_to_audio)"),
    (r"model-written code", lambda m: "runs model-written code (unsafe_code)"),
    (r"^unknown task", lambda m: "not found by name"),
    (r"YAML key '([^']+)' is not supported", lambda m: f"YAML key {m[1]}"),
]


def feature(message: str) -> str:
    for pattern, name in _FEATURES:
        found = re.search(pattern, message)
        if found:
            return name(found)
    return "other: " + re.sub(r"^\S+: task '[^']*': ", "", message)[:90]


def catalogue_names() -> list[str]:
    from lm_eval.tasks import TaskManager

    logging.disable(logging.WARNING)
    return sorted(TaskManager().all_subtasks)


def _has_data(cfg, mirror: Path) -> bool:
    from pytest_lmeval.tasks.data import MIRROR_SUFFIXES, mirror_folder

    if cfg.data is not None:  # a custom_dataset loader reads its own data (usually from the hub)
        return False
    if cfg.dataset_path is None or cfg.dataset_kwargs and set(cfg.dataset_kwargs) - {"trust_remote_code"}:
        return False
    folder = mirror_folder(mirror, cfg.dataset_path, cfg.dataset_name)
    if cfg.task_class is not None:  # the class picks its splits: any split file of its data set
        return any(folder.glob(f"*{s}") for s in MIRROR_SUFFIXES)
    try:
        split = cfg.eval_split
    except Exception:
        return False
    return any((folder / f"{split}{s}").is_file() for s in MIRROR_SUFFIXES)


def collect(cfg, mirror: Path, docs: int = 2) -> str | None:
    """What collection does for a task: load its documents, build the first ones' requests."""
    from pytest_lmeval.tasks.lmeval.class_tasks import task_for

    try:
        task = task_for(cfg, data_dir=mirror, limit=docs)
        for doc_id in range(len(task.docs)):
            task.build(doc_id)
        if not task.docs:
            return EMPTY
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return None


EMPTY = "collected, no documents (process_docs keeps none of the mirror's rows)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="accepted tasks with mirror data to collect")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every task's outcome here")
    args = parser.parse_args()

    from mirror import merged_mirror

    from pytest_lmeval.core.errors import LmevalError
    from pytest_lmeval.tasks.registry import Registry

    started = time.time()
    names = catalogue_names()
    registry = Registry.scan([], lm_eval_catalogue=True)
    outcome: dict[str, str] = {}
    accepted = {}
    for name in names:
        try:
            accepted[name] = registry.configs_for([name])[name]
            outcome[name] = "accepted"
        except LmevalError as exc:
            outcome[name] = str(exc)
        except Exception as exc:  # a crash is a bug of ours: counted apart, never hidden
            outcome[name] = f"CRASH {type(exc).__name__}: {exc}"
    refused = Counter(feature(v) if not v.startswith("CRASH") else "crash (a bug)" for v in outcome.values()
                      if v != "accepted")  # fmt: skip

    mirror = merged_mirror(Path(tempfile.mkdtemp(prefix="coverage-mirror-")))
    with_data = [n for n, cfg in accepted.items() if _has_data(cfg, mirror)]
    sample = sorted(random.Random(args.seed).sample(with_data, min(args.sample, len(with_data))))
    collected = {n: collect(accepted[n], mirror) for n in sample}

    total = len(names)
    print(f"lm-eval catalogue: {total} leaf task names (lm-eval's TaskManager index)")
    print()
    print("| outcome | tasks | share |")
    print("|---|---:|---:|")
    print(f"| accepted | {len(accepted)} | {100 * len(accepted) / total:.1f} % |")
    classes = sum(cfg.task_class is not None for cfg in accepted.values())
    loaders = sum(cfg.custom_dataset is not None for cfg in accepted.values())
    print(f"| accepted, of which Python task classes (class:) | {classes} | {100 * classes / total:.1f} % |")
    print(f"| accepted, of which custom_dataset loaders | {loaders} | {100 * loaders / total:.1f} % |")
    for name, count in refused.most_common():
        print(f"| refused: {name} | {count} | {100 * count / total:.1f} % |")
    print()
    ok = [n for n, err in collected.items() if err in (None, EMPTY)]
    print(f"collection on a sample of accepted tasks with data in the mirror: {len(ok)} of {len(sample)} succeed "
          f"({len(with_data)} accepted tasks have mirror data)")  # fmt: skip
    for name, err in collected.items():
        if err is not None:
            print(f"  {name}: {err}")
    print(f"({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"outcome": outcome, "collected": collected}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
