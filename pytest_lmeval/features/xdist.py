"""Data parallel under pytest-xdist: each worker gets one fixed, contiguous shard of the items.

xdist's load scheduler hands items out a few at a time, so a worker cannot batch "its" requests
up front. Here the controller sends worker k exactly the items `shard(k)`, and the worker
computes the same shard from its own `workerinput`, so it batches its whole share at once and no
document is computed by two workers. Contiguous shards keep a task's documents (and their
shared few-shot prefixes) together.

A worker that dies (killed, out of host memory) takes its shard with it: xdist fails the item
it was running, and its other items go to no other worker (one of those would compute them a
document at a time, and what killed the first may kill it too). They are listed as not run;
what the worker cached before it died is kept, so a rerun computes only the rest.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

from ..engine.unscored import NOT_RUN, DocKey, doc_of_nodeid
from ..models.devices import visible_gpus

WORKERINPUT_KEY = "lmeval_shard"
GPUS_KEY = "lmeval_gpus"


def shard(count: int, workers: int, index: int) -> range:
    return range(index * count // workers, (index + 1) * count // workers)


def worker_index(workerinput: dict[str, Any]) -> int:
    return int(str(workerinput["workerid"]).removeprefix("gw"))


def cpu_threads(cores: int, workers: int) -> int:
    """Threads for each of `workers` processes sharing `cores` cores."""
    return max(1, cores // max(1, workers))


def gpu_share(gpus: list[str], workers: int, index: int) -> list[str]:
    """The GPUs worker `index` may see: a contiguous share when there are enough, else one
    GPU that several workers take turns on."""
    if not gpus:
        return []
    if len(gpus) >= workers:
        return gpus[index * len(gpus) // workers : (index + 1) * len(gpus) // workers]
    return [gpus[index % len(gpus)]]


class ShardScheduling(LoadScheduling):
    """LoadScheduling whose only distribution is the fixed shards."""

    def __init__(self, config: Any, log: Any = None, lost: dict[DocKey, str] | None = None) -> None:
        super().__init__(config, log)
        self.lost = lost if lost is not None else {}  # documents a dead worker took with it, and why

    def remove_node(self, node: Any) -> str | None:
        """A worker that finished has nothing pending; one that died keeps its items: they
        are recorded as not run (with the item it was running, which xdist reports)."""
        pending = self.node2pending.pop(node)
        if not pending:
            return None
        assert self.collection is not None
        crashitem = self.collection[pending.pop(0)]
        name = node.gateway.id
        why = f"xdist worker {name} died (while running {crashitem.rpartition('[')[2].rstrip(']')}) before it ran"
        for index in pending:
            key = doc_of_nodeid(self.collection[index])
            if key is not None:
                self.lost.setdefault(key, why)
        return crashitem

    def left_over(self) -> list[str]:
        """Node ids sent to a worker that never ran them (the session stopped early)."""
        if self.collection is None:
            return []
        return [self.collection[i] for pending in self.node2pending.values() for i in pending]

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        total = len(self.collection)
        workers = len(self.nodes)
        self.pending[:] = []
        for node in self.nodes:
            indices = list(shard(total, workers, worker_index(node.workerinput)))
            if indices:
                self.node2pending[node].extend(indices)
                node.send_runtest_some(indices)
        for node in self.nodes:
            node.shutdown()


class Xdist:
    """The xdist feature: pins workers to GPUs, shards the items, and on the controller gathers
    what each worker sends back (its engine figures, cache record, stop reason and the
    documents it could not score) and what dead workers took with them. Its state lives under
    its own stash key; the run reads it when it concludes."""

    stash_key = pytest.StashKey["Xdist"]()

    def __init__(self, config: pytest.Config, *, sharded: bool) -> None:
        self.config = config
        self.sharded = sharded  # a run with a model: shard its documents (else xdist's own scheduling)
        self.scheduler: ShardScheduling | None = None
        self.lost: dict[DocKey, str] = {}  # (task, doc_id) -> why it was not run
        self.outputs: list[dict[str, Any]] = []  # each finished worker's `lmeval` output

    @classmethod
    def of(cls, config: pytest.Config) -> Xdist:
        return config.stash[cls.stash_key]

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def share_cpu_threads(self) -> None:
        """On a worker: its share of the CPU's cores (each worker's torch would otherwise take
        them all, and N workers on N cores run slower than one process). Left alone where the
        user set OMP_NUM_THREADS, or the worker has GPUs of its own."""
        workerinput = getattr(self.config, "workerinput", None)
        if not workerinput or "OMP_NUM_THREADS" in os.environ or workerinput.get(GPUS_KEY):
            return
        threads = cpu_threads(os.cpu_count() or 1, int(workerinput.get("workercount") or 1))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        torch = sys.modules.get("torch")  # already imported (a conftest): set it directly
        if torch is not None:
            torch.set_num_threads(threads)

    def pin_gpus(self) -> None:
        gpus = getattr(self.config, "workerinput", {}).get(GPUS_KEY)
        if gpus:  # a worker pinned to its GPUs, before anything initialises CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # controller, per worker
        node.workerinput[WORKERINPUT_KEY] = True
        workers = int(node.config.getoption("numprocesses") or 1)
        share = gpu_share(visible_gpus(), workers, worker_index(node.workerinput))
        if share:
            node.workerinput[GPUS_KEY] = ",".join(share)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if not self.sharded or config.getoption("dist") != "load":
            return None
        self.scheduler = ShardScheduling(config, log, self.lost)
        return self.scheduler

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:  # controller: a worker finished
        out = getattr(node, "workeroutput", {}).get("lmeval")  # none from a worker that died
        if out:
            self.outputs.append(out)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        """A worker died (killed, out of host memory) while running `crashitem`: xdist fails that
        item; the document is listed as not run, and the worker's other documents with it."""
        node = getattr(report, "node", None)
        name = getattr(getattr(node, "gateway", None), "id", "?")
        key = doc_of_nodeid(crashitem)
        if key is not None:
            self.lost.setdefault(key, f"xdist worker {name} died while running it")

    def my_items(self, items: list[pytest.Item]) -> list[pytest.Item]:
        """The items this process runs: a worker's fixed shard, or all of them."""
        workerinput = getattr(self.config, "workerinput", None)
        if not workerinput or not workerinput.get(WORKERINPUT_KEY):
            return items
        span = shard(len(items), int(workerinput["workercount"]), worker_index(workerinput))
        return items[span.start : span.stop]

    def send(self, output: dict[str, Any]) -> None:
        """On a worker: what the controller's run needs of this worker's (see `outputs`)."""
        self.config.workeroutput["lmeval"] = output  # type: ignore[attr-defined]

    def left_over(self) -> list[str]:
        """Node ids sent to a worker that never ran them (the session stopped early)."""
        return self.scheduler.left_over() if self.scheduler is not None else []

    def not_run(self) -> dict[DocKey, tuple[str, str]]:
        return {key: (NOT_RUN, why) for key, why in self.lost.items()}
