"""`LmevalCallback`: evaluate the model a transformers `Trainer` is training, in memory, every N
steps or at each checkpoint save, and log the metrics through the Trainer's own logging.

    trainer = Trainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                      callbacks=[LmevalCallback(tasks=["arc_easy"], every_n_steps=500, limit=200)])

Each evaluation is `evaluate(model, tasks, tokenizer=...)` (python_api.py) on the weights as they
are: no checkpoint written, the model put back in training mode after. Its metrics go through
`Trainer.log`, so `state.log_history` and every tracker the Trainer reports to (its `on_log`
callbacks: wandb, tensorboard, mlflow...) receive them, named `lmeval/<task>/<metric>` (a filter
other than lm-eval's `none` as `lmeval/<task>/<metric>/<filter>`), with `lmeval/gates_failed`
when gates were given. A callback cannot reach the Trainer through its arguments, so it finds the
Trainer whose callbacks hold it when training begins (or takes `trainer=`).

Under distributed training only the main process (rank 0) evaluates, on its own full copy of
the weights (DDP; not FSDP or DeepSpeed ZeRO-3, whose parameters are sharded); the other ranks
wait for its decision to stop, which is broadcast to them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .python_api import command_line, evaluate, option_flags
from .result import RunResult

logger = logging.getLogger(__name__)


def logged_metrics(result: RunResult, prefix: str = "lmeval") -> dict[str, float]:
    """Every task's and group's numeric metrics as flat names (`lmeval/arc_easy/acc`), and the
    number of failed gates when there are gates."""
    out: dict[str, float] = {}
    for task, entry in result.results.entries.items():
        for key, value in entry.values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # N/A
            metric, _, kind = key.partition(",")
            name = f"{prefix}/{task}/{metric}" + (f"/{kind}" if kind and kind != "none" else "")
            out[name] = float(value)
    if result.gates:
        out[f"{prefix}/gates_failed"] = float(sum(not g.passed for g in result.gates))
    return out


class LmevalCallback(TrainerCallback):
    """Evaluate the model in training every `every_n_steps` optimizer steps and/or after each
    checkpoint save (`on_save=True`), on `tasks` with `limit` documents each; the other keywords
    are evaluate's (`num_fewshot=`, `data_dir=`, `threshold=[...]`, `batch_size=`...). By default
    no reports are written and no answers cached (each evaluation sees new weights): pass
    `write_reports=True` or `no_cache=False` to change that. With gates (`threshold=`,
    `gates=`), a failed gate is logged and, with `stop_on_gate_failure=True`, stops training.
    `tokenizer=` when the Trainer has no `processing_class`. `results` keeps each evaluation's
    RunResult by global step (on the main process)."""

    def __init__(
        self,
        tasks: str | Sequence[str],
        *,
        every_n_steps: int | None = None,
        on_save: bool = False,
        limit: int | float | None = None,
        stop_on_gate_failure: bool = False,
        tokenizer: Any = None,
        trainer: Any = None,
        prefix: str = "lmeval",
        **evaluate_options: Any,
    ) -> None:
        if every_n_steps is None and not on_save:
            raise TypeError("LmevalCallback: say when to evaluate: every_n_steps=N and/or on_save=True")
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or int(every_n_steps) < 1):
            raise TypeError(f"LmevalCallback: every_n_steps={every_n_steps!r}: a whole number of steps, 1 or more")
        if "model" in evaluate_options:
            raise TypeError("LmevalCallback: the model is the one the Trainer trains; model= is not taken")
        options = {"write_reports": False, "no_cache": True, "limit": limit, **evaluate_options}
        own = {k: options.pop(k) for k in ("write_reports", "quiet", "pytest_args") if k in options}
        command_line(tasks, options, option_flags())  # an unknown keyword now, not at the first evaluation
        self.tasks = tasks
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.on_save_too = on_save
        self.stop_on_gate_failure = stop_on_gate_failure
        self.tokenizer = tokenizer
        self.trainer = trainer
        self.prefix = prefix
        self.options = {**options, **own}
        self.results: dict[int, RunResult] = {}
        self._last_step: int | None = None

    # -- the Trainer's events ------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.trainer is None:
            self.trainer = _calling_trainer(self)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._evaluate(state, control, kwargs)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.on_save_too:
            self._evaluate(state, control, kwargs)

    # -- one evaluation --------------------------------------------------------------------------
    def _evaluate(self, state: TrainerState, control: TrainerControl, kwargs: dict[str, Any]) -> None:
        if self._last_step == state.global_step:  # a save at a step already evaluated
            return
        self._last_step = state.global_step
        failed: list[str] = []
        if state.is_world_process_zero:
            tokenizer = self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
            if tokenizer is None:
                raise TypeError("LmevalCallback: the Trainer has no processing_class; pass tokenizer= to the callback")
            result = evaluate(kwargs["model"], self.tasks, tokenizer=tokenizer, **self.options)
            self.results[state.global_step] = result
            failed = [g.name for g in result.gates if not g.passed]
            self._log(state, control, logged_metrics(result, self.prefix))
            if failed:
                logger.warning(
                    "lmeval: step %d: %d gate(s) failed: %s", state.global_step, len(failed), ", ".join(failed)
                )
        if _broadcast(bool(failed)) and self.stop_on_gate_failure:
            control.should_training_stop = True

    def _log(self, state: TrainerState, control: TrainerControl, metrics: dict[str, float]) -> None:
        """Through `Trainer.log` (log_history and every tracker's on_log); without the Trainer,
        into log_history alone. `Trainer.log` clears `should_log`: put back, or the Trainer's
        own log of this step (its loss) would be skipped."""
        if self.trainer is not None:
            should_log = control.should_log
            self.trainer.log(dict(metrics))
            control.should_log = should_log
            self.trainer.control.should_log = should_log
            return
        if not getattr(self, "_warned", False):
            self._warned = True
            logger.warning("lmeval: the Trainer was not found: metrics go to state.log_history only (pass trainer=)")
        state.log_history.append({**metrics, "step": state.global_step})


def _calling_trainer(callback: LmevalCallback) -> Any:
    """The Trainer whose callback handler holds `callback`, from the frames that called it."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            handler = getattr(owner, "callback_handler", None)
            if handler is not None and any(cb is callback for cb in getattr(handler, "callbacks", ())):
                return owner
            frame = frame.f_back
        return None
    finally:
        del frame


def _broadcast(flag: bool) -> bool:
    """The main process's flag on every rank (under torch.distributed; as is otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])
