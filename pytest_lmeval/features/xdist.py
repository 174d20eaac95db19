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
import subprocess
from typing import Any

from xdist.scheduler import LoadScheduling

from ..run.unscored import doc_of_nodeid, unscored_of

WORKERINPUT_KEY = "lmeval_shard"
GPUS_KEY = "lmeval_gpus"


def shard(count: int, workers: int, index: int) -> range:
    return range(index * count // workers, (index + 1) * count // workers)


def worker_index(workerinput: dict[str, Any]) -> int:
    return int(str(workerinput["workerid"]).removeprefix("gw"))


def gpu_share(gpus: list[str], workers: int, index: int) -> list[str]:
    """The GPUs worker `index` may see: a contiguous share when there are enough, else one
    GPU that several workers take turns on."""
    if not gpus:
        return []
    if len(gpus) >= workers:
        return gpus[index * len(gpus) // workers : (index + 1) * len(gpus) // workers]
    return [gpus[index % len(gpus)]]


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without initialising CUDA in it."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


class ShardScheduling(LoadScheduling):
    """LoadScheduling whose only distribution is the fixed shards."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        unscored_of(config).scheduler = self

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
        gaps = unscored_of(self.config)
        for index in pending:
            gaps.add(doc_of_nodeid(self.collection[index]), why)
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
