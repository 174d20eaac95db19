"""The pytest plugin (entry point `lmeval`): options, the run, and the feature plugins.

Hooks only. The run (run/) owns the evaluation's life: its collection, items and end are
plugins of their own; each feature (features/) is a plugin object with its state under its
own stash key, as pytest's own junitxml, stepwise and cacheprovider are built.
"""

from __future__ import annotations

import sys

import pytest

from .features.bias import Bias
from .features.calibration import Calibration
from .features.efficiency import Efficiency
from .features.gating import Gating
from .features.judge_plugin import Judging
from .features.robustness import Robustness
from .features.toxicity import Toxicity
from .features.track_hub import HubLogging
from .features.track_mlflow import MlflowTracking
from .features.track_wandb import WandbTracking
from .features.tracker_options import add_tracker_options, tracker_args
from .features.truncation import Truncation
from .features.xdist import Xdist
from .models.registry import check_device
from .models.spec import redact_args_text
from .run import hookspecs, items, load_gc
from .run.collection import Collection
from .run.ending import Ending
from .run.items import Records
from .run.option_table import addoptions
from .run.option_values import collision_hints
from .run.options import parse_options
from .run.run import Run
from .run.selection import Selection
from .run.uncollected import OrphanItems


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    addoptions(parser)
    add_tracker_options(parser)
    # lm-eval's spelling of an option whose name pytest or a plugin owns: which name to use,
    # said here, before the parse of the command line that may stop at it
    config = pluginmanager.get_plugin("pytestconfig")
    if config is not None and not hasattr(config, "workerinput"):
        for line in collision_hints(list(config.invocation_params.args)):
            sys.stderr.write(f"lmeval: {line}\n")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """`--tasks list` (or `list=PATTERN`): print the tasks, groups and tags, run nothing."""
    selection = config.getoption("lmeval_tasks") or ""
    if selection != "list" and not selection.startswith("list="):
        return None
    print(Selection(config, parse_options(config)).registry.describe(selection.partition("=")[2].strip() or None))
    return 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lmeval: a benchmark document evaluated by pytest-lmeval")
    config.addinivalue_line("markers", "lmeval_benchmark(*tasks): set by @pytest_lmeval.benchmark")
    config.addinivalue_line("markers", "lmeval_perturb(*names): perturbations of each document")
    options = parse_options(config)
    xdist = Xdist(config, sharded=options.model is not None)
    xdist.pin_gpus()  # a worker pins its GPUs before anything initialises CUDA
    xdist.share_cpu_threads()
    judge = options.judge.spec if options.judge else None
    if any(spec is not None and spec.backend == "hf" for spec in (options.model, judge)):
        check_device(options.device)  # --device against what is present, once a worker is pinned
    run = Run(config, options)
    features = {
        Xdist.stash_key: xdist,
        Robustness.stash_key: Robustness(config),
        Efficiency.stash_key: Efficiency(),
        Bias.stash_key: Bias(),
        Toxicity.stash_key: Toxicity(options.toxicity_model),
        Truncation.stash_key: Truncation(),
        Gating.stash_key: Gating(
            options.thresholds, options.gates_file, options.baseline, options.max_drop, options.alpha
        ),
        Judging.stash_key: Judging(options.judge, run),
    }
    for tracker, plugin in (("mlflow", MlflowTracking), ("wandb", WandbTracking), ("hub", HubLogging)):
        args = tracker_args(config, tracker)  # given but not installed: one line naming the extra
        if args is not None:
            features[plugin.stash_key] = plugin(args)
    for key, feature in features.items():
        config.stash[key] = feature  # type: ignore[index]
        config.pluginmanager.register(feature, f"lmeval-{type(feature).__name__.lower()}")
    config.pluginmanager.register(Calibration(), "lmeval-calibration")
    config.stash[Run.stash_key] = run
    run.signals.install()
    config.add_cleanup(run.close)
    config.pluginmanager.register(Collection(run), "lmeval-collection")
    config.pluginmanager.register(OrphanItems(run.selection), "lmeval-orphans")
    config.pluginmanager.register(items, "lmeval-items")
    config.pluginmanager.register(Records(run), "lmeval-records")
    config.pluginmanager.register(Ending(run), "lmeval-ending")
    # Cleanups run last-in first-out: registered before pytest's unraisable-exception plugin
    # registers its own (this hook runs before that plugin's), the heap a model load froze is
    # thawed after pytest's last collection, which it keeps short.
    config.add_cleanup(lambda: load_gc.thaw(config))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    opts = Run.of(config).options
    if opts.model is None:
        return None
    args = redact_args_text(opts.model_args_text)
    return [f"lmeval: model {opts.model.label}" + (f" ({args})" if args else "")] + [
        f"lmeval: {note}" for note in opts.notes
    ]
