"""End of a run on the controlling process: aggregate, write the output folder, print tables."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from ..core.errors import LmevalError
from ..features import efficiency
from ..features import perturbation as perturb
from ..features.baseline import (
    PER_DOC_FILE,
    baseline_gates,
    compare,
    doc_hash,
    load_baseline,
    nothing_paired_gate,
    per_document_lines,
    rules_of,
    scopes_of,
)
from ..features.gates import Gate, check_bounds, parse_gates_file, parse_threshold
from ..features.judging import workers_summary_line
from ..models.base import redact_args, redact_args_text
from ..run.state import LmevalState
from ..run.unscored import ERROR, NOT_RUN, entries, unscored_of
from ..scoring.aggregate import Results, add_robustness, aggregate, derived_higher_is_better
from ..scoring.document import sha256
from . import leaderboard, table
from .html import write_html
from .results import atomic_write, build_results, write_results, write_samples

MAX_LINE = 2000  # a gate's detail line in the terminal (a -k expression of many documents is long)
MAX_UNSCORED_SHOWN = 20  # documents named per reason in the terminal; results.json lists every one


def _run_config(state: LmevalState) -> dict[str, Any]:
    opts = state.options
    return {
        "model": opts.model.backend if opts.model else None,
        "model_name": opts.model.name if opts.model else None,
        "model_args": redact_args_text(opts.model_args_text),
        "model_args_parsed": redact_args(opts.model.args) if opts.model else {},
        "batch_size": opts.batch_size,
        "device": opts.device,
        "limit": opts.limit,
        "num_fewshot": opts.num_fewshot,
        "fewshot_seed": opts.seed,
        "tasks": opts.tasks,
        "data_dir": str(opts.data_dir) if opts.data_dir else None,
        "log_samples": opts.log_samples,
        "item_outcome": opts.item_outcome,
        "gen_kwargs": opts.gen_kwargs,
        "model_fingerprint": state.cache_record().get("fingerprint"),
    }


def _prompt_record(state: LmevalState) -> dict[str, Any]:
    """How prompts were rendered, under lm-eval's top-level results.json keys."""
    chat = state.chat_template
    instruction = state.options.system_instruction
    return {
        "system_instruction": instruction,
        "system_instruction_sha": sha256(instruction) if instruction else None,
        "fewshot_as_multiturn": state.options.fewshot_as_multiturn,
        "chat_template": chat.source if chat else None,
        "chat_template_name": chat.name if chat else None,
        "chat_template_sha": chat.sha256 if chat else None,
    }


def _doc_hashes(state: LmevalState) -> dict[tuple[str, int], str]:
    """Each scored document's doc_hash, to tell a baseline's same-numbered but changed documents."""
    return {(r["task"], r["doc_id"]): doc_hash(state.tasks[r["task"]].docs[r["doc_id"]]) for r in state.records}


def _baseline_gates(state: LmevalState) -> list[Gate]:
    opts = state.options
    try:
        state.baseline = load_baseline(opts.baseline)
    except (LmevalError, OSError, ValueError, KeyError) as exc:  # a broken baseline fails its gate, visibly
        return [Gate("baseline", False, f"cannot read the baseline: {exc}", {"baseline": str(opts.baseline)})]
    after = {(r["task"], r["doc_id"]): r["metrics"] for r in state.records}
    state.comparisons = compare(
        state.baseline,
        after,
        _doc_hashes(state),
        scopes_of(state.results, state.registry),
        rules_of(state.tasks),
        alpha=opts.alpha,
    )
    if not state.comparisons:
        return [nothing_paired_gate(state.baseline)]
    return baseline_gates(state.comparisons, opts.max_drop, opts.alpha)


def conclude(state: LmevalState) -> list[Gate]:
    """Aggregate the run and judge its gates (on the controller, before the exit code is set)."""
    opts = state.options
    # in document order, as one process scores them: under xdist reports arrive in any order, and
    # a float sum in another order can differ in its last digit
    state.records.sort(key=lambda r: (r["task"], r["doc_id"]))
    state.results = aggregate(state.records, state.tasks, state.registry, state.picked)
    if state.perturbed:
        state.perturbed.sort(key=lambda r: (r["task"], r["doc_id"], r["perturbation"]))
        add_robustness(state.results, state.records, state.perturbed, state.tasks)
    bounds = [parse_threshold(t) for t in opts.thresholds]
    if opts.gates_file is not None:
        bounds += parse_gates_file(opts.gates_file)
    gates = check_bounds(bounds, state.results)
    for gate in gates:  # a gate on a task records the settings the task ran with
        task = state.tasks.get(gate.figures.get("task", ""))
        if task is not None:
            gate.figures["ran_with"] = {
                "num_fewshot": task.num_fewshot,
                "documents": len(task.docs),
                **task.config.extra.get("task_settings", {}),
            }
    if opts.baseline is not None:
        gates += _baseline_gates(state)
    state.gates = gates
    return gates


def finish(state: LmevalState) -> None:
    results = state.results
    if results is None:  # a run whose loop did not conclude (e.g. interrupted)
        conclude(state)
        results = state.results
    gaps = unscored_of(state.config)
    not_scored = entries(state.failures, gaps.docs, state.records)
    if not results.entries and not not_scored:
        return
    out_dir = state.output_dir()
    ended = datetime.now(timezone.utc)
    extra = {
        "model_name": state.options.model.label if state.options.model else None,
        "model_info": state.model_info,
        "engine": state.engine_stats,
        "partial": bool(not_scored),  # some selected documents have no score: see not_scored
        "not_scored": not_scored,
        "date": time.time(),
        "start_time": state.started.isoformat(),
        "end_time": ended.isoformat(),
        "total_evaluation_time_seconds": str((ended - state.started).total_seconds()),
        # from the last answer to these results: scoring every document, aggregating, gates
        # (null where this process computed no answers: an xdist controller)
        "scoring_seconds": None if state.answered is None else round(time.perf_counter() - state.answered, 3),
        **_prompt_record(state),
    }
    extra["gates"] = [g.to_json() for g in state.gates]
    if results.robust:
        extra["robustness"] = {name: r.to_json() for name, r in results.robust.items()}
    refused = _not_perturbed(state)
    if refused:
        extra["not_perturbed"] = refused
    costs = _efficiency(state, results)
    if costs:
        extra["efficiency"] = costs
    if state.baseline is not None:
        extra["baseline"] = {**state.baseline.info, "comparisons": [c.to_json() for c in state.comparisons]}
    doc = build_results(results, state.tasks, state.registry, _run_config(state), extra)
    state.output_files = [write_results(out_dir, doc)]
    atomic_write(out_dir / PER_DOC_FILE, per_document_lines(state.records, _doc_hashes(state)))
    state.output_files.append(write_html(out_dir, state, doc))
    if state.options.log_samples:
        state.output_files += write_samples(out_dir, state.records + state.perturbed)


def print_summary(state: LmevalState, reporter: Any) -> None:
    results: Results | None = state.results
    if results is None:
        return
    tasks = {n: state.tasks[n] for n in results.task_names}
    versions: dict[str, object] = {n: t.config.version for n, t in tasks.items()}
    versions.update({g: state.registry.groups[g].version for g in results.group_names})
    n_shot = {n: t.num_fewshot for n, t in tasks.items()}
    hib = {
        n: derived_higher_is_better(results.entries[n].values, t.config.higher_is_better()) for n, t in tasks.items()
    }
    for g in results.group_names:
        keys = results.entries[g].values
        hib[g] = derived_higher_is_better(keys, dict.fromkeys(keys, True))
    model = state.options.model.label if state.options.model else "?"
    reporter.write_sep("=", "lmeval results")
    reporter.write_line(
        f"{model} ({redact_args_text(state.options.model_args_text) or 'no model args'}), "
        f"limit: {state.options.limit}, num_fewshot: {state.options.num_fewshot}, "
        f"batch_size: {state.options.batch_size}"
    )
    reporter.write_line(table.render(results, versions, n_shot, hib))
    if results.group_names:
        reporter.write_line("")
        reporter.write_line(table.render(results, versions, n_shot, hib, groups_only=True))
    for line in _robustness_lines(results) + _not_perturbed_lines(state) + _efficiency_lines(state, results):
        reporter.write_line(line)
    for line in leaderboard.lines(leaderboard.scores(results, tasks)):
        reporter.write_line(line)
    partial = [n for n in results.group_names if results.entries[n].missing]
    for name in partial:
        missing = results.entries[name].missing
        reporter.write_line(
            f"note: group {name} is partial: {len(missing)} of its tasks were not run "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
        )
    stats = state.engine_stats
    if stats:
        reporter.write_line(
            f"lmeval: {stats.get('requests', 0)} requests ({stats.get('unique_requests', 0)} unique): "
            f"{stats.get('from_cache', 0)} from cache, {stats.get('computed', 0)} computed "
            f"in {stats.get('model_seconds', 0):.1f}s{_token_rate(stats)}"
        )
    judge_line = workers_summary_line(state.engine_stats) if state.worker_cache is not None else None
    if judge_line:  # under xdist the workers judged; their own summary lines are not shown
        reporter.write_line(judge_line)
    cache_note = state.cache_record().get("note")  # whether answers were cached, and why (open_cache)
    if cache_note:
        reporter.write_line(cache_note)
    if state.gates:
        reporter.write_sep("=", "lmeval gates")
        for gate in state.gates:
            reporter.write_line(f"{'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.summary}", red=not gate.passed)
            for line in gate.details:
                shown = line if len(line) <= MAX_LINE else line[: MAX_LINE - 40] + " ... (in full in results.json)"
                reporter.write_line(f"    {shown}")
    for path in state.output_files:
        reporter.write_line(f"lmeval: wrote {path}")


def _efficiency(state: LmevalState, results: Results) -> dict[str, Any]:
    """Per task, what its requests cost this run (efficiency.py), perturbed items included."""
    out = {}
    for name in results.task_names:
        got = efficiency.summary(r for r in state.records + state.perturbed if r["task"] == name)
        if got is not None:
            out[name] = got
    return out


def _efficiency_lines(state: LmevalState, results: Results) -> list[str]:
    lines = []
    for name, e in _efficiency(state, results).items():
        per = e.get("seconds_per_request")
        if not per:
            continue
        rate = f", {e['tokens_per_second']:.0f} tokens/s" if e.get("tokens_per_second") else ""
        first = ""
        if "first_token_seconds" in e:  # generation: its time to first token, or why there is none
            ttft = e["first_token_seconds"]
            first = (
                f"; time to first token median {ttft['median']:.4f}s, p90 {ttft['p90']:.4f}s"
                if ttft
                else f"; time to first token {e['first_token_note']}"
            )
        lines.append(
            f"lmeval efficiency: {name}: {e['computed_requests']} of {e['requests']} requests computed in "
            f"{e['seconds']:.2f}s, per request median {per['median']:.4f}s, p90 {per['p90']:.4f}s{rate}{first}"
        )
    if lines:
        lines.insert(0, f"lmeval efficiency ({efficiency.NOTE}):")
    return lines


def _robustness_lines(results: Results) -> list[str]:
    """Per perturbed task, the documents whose answer flipped under each perturbation."""
    lines = []
    for name, robust in results.robust.items():
        if robust.metric is None:
            continue
        parts = []
        for perturbation, flips in robust.flipped.items():
            ids = flips["to_wrong"] + flips["to_right"]
            shown = ", ".join(ids[:MAX_UNSCORED_SHOWN]) + (" ..." if len(ids) > MAX_UNSCORED_SHOWN else "")
            parts.append(
                f"{perturbation}: {len(flips['to_wrong'])} right to wrong, {len(flips['to_right'])} wrong to right"
                + (f" ({shown})" if ids else "")
            )
        lines.append(f"lmeval robustness: {name} ({robust.documents} documents, {robust.metric}): " + "; ".join(parts))
    return lines


def _not_perturbed(state: LmevalState) -> dict[str, str]:
    """The tasks perturbations were asked for that got none (perturb.py), with why."""
    return perturb.not_perturbed(state.tasks, bool(state.perturb))


def _not_perturbed_lines(state: LmevalState) -> list[str]:
    refused = _not_perturbed(state)
    if not refused:
        return []
    by_reason: dict[str, list[str]] = {}
    for name, reason in refused.items():
        by_reason.setdefault(reason, []).append(name)
    parts = [f"{', '.join(names)} ({reason})" for reason, names in by_reason.items()]
    return ["lmeval robustness: not perturbed: " + "; ".join(parts)]


def _token_rate(stats: dict) -> str:
    """' (T tokens, R tokens/s, F run through the model, K of D prompt-lookup draft tokens
    kept)' when the backend counts tokens; the third part only when the model ran another number
    of tokens than the requests hold, the last only when decoding fed drafts."""
    tokens, seconds = stats.get("tokens"), stats.get("model_seconds")
    if not tokens or not seconds:
        return ""
    ran = stats.get("forward_tokens")
    shared = f", {ran} run through the model" if ran is not None and ran != tokens else ""
    drafted = stats.get("draft_tokens")
    if drafted:
        shared += f", {stats.get('draft_tokens_kept', 0)} of {drafted} prompt-lookup draft tokens kept"
    return f" ({tokens} tokens, {tokens / seconds:.0f} tokens/s{shared})"


def print_unscored(state: LmevalState, reporter: Any) -> None:
    """The part of the run that failed: why the run stopped, which documents have no score
    (by id, with the reason), and how to get the rest."""
    gaps = unscored_of(state.config)
    not_scored = entries(state.failures, gaps.docs, state.records)
    if state.stopped:
        reporter.write_line(state.stopped, red=True)
    if not_scored:
        errors = sum(1 for e in not_scored if e["status"] == ERROR)
        scored = len(state.records)
        reporter.write_sep("=", "lmeval: PARTIAL RESULTS", red=True)
        reporter.write_line(
            f"{len(not_scored)} of {scored + len(not_scored)} documents not scored "
            f"({errors} could not be scored, {len(not_scored) - errors} not run); "
            f"the results{' and gates' if state.gates else ''} cover the {scored} scored",
            red=True,
        )
        by_reason: dict[tuple[str, str], list[str]] = {}
        for entry in not_scored:
            by_reason.setdefault((entry["status"], entry["reason"]), []).append(entry["id"])
        for (status, reason), ids in by_reason.items():
            more = f" and {len(ids) - MAX_UNSCORED_SHOWN} more" if len(ids) > MAX_UNSCORED_SHOWN else ""
            reporter.write_line(f"  {', '.join(ids[:MAX_UNSCORED_SHOWN])}{more} ({status}): {reason}", red=True)
    if gaps.interrupted:
        if gaps.cached is not None:
            reporter.write_line(
                f"lmeval: interrupted: {gaps.cached} answers cached; rerun the same command to resume "
                f"({(gaps.total or 0) - gaps.cached} left to compute)",
                yellow=True,
            )
        elif state.open_cache() is not None:
            reporter.write_line(
                "lmeval: interrupted: the answers finished are cached; rerun the same command to resume", yellow=True
            )
        else:
            reporter.write_line("lmeval: interrupted: nothing is cached (--no-cache); a rerun starts over", yellow=True)
    elif any(e["status"] == NOT_RUN for e in not_scored) and state.open_cache() is not None:
        reporter.write_line("lmeval: the answers finished are cached; rerun the same command to compute the rest")
