"""The run's summary in the terminal, from its RunResult: lm-eval's results table, the
features' lines, the model work's figures, the gates, the files written, and the part of the
run that failed (which documents have no score, and why)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.unscored import ERROR
from ..features import bias, toxicity
from ..features.judging import workers_summary_line
from ..scoring.aggregate import derived_higher_is_better
from . import leaderboard, table

if TYPE_CHECKING:
    from ..run.result import RunResult

MAX_LINE = 2000  # a gate's detail line in the terminal (a -k expression of many documents is long)
MAX_UNSCORED_SHOWN = 20  # documents named per reason in the terminal; results.json lists every one


def print_summary(result: RunResult, reporter: Any) -> None:
    results = result.results
    tasks = {n: result.tasks[n] for n in results.task_names}
    versions: dict[str, object] = {n: t.config.version for n, t in tasks.items()}
    versions.update({g: result.registry.groups[g].version for g in results.group_names})
    n_shot = {n: t.num_fewshot for n, t in tasks.items()}
    hib = {
        n: derived_higher_is_better(results.entries[n].values, t.config.higher_is_better()) for n, t in tasks.items()
    }
    for g in results.group_names:
        keys = results.entries[g].values
        hib[g] = derived_higher_is_better(keys, dict.fromkeys(keys, True))
    config = result.config
    reporter.write_sep("=", "lmeval results")
    reporter.write_line(
        f"{result.model or '?'} ({config.get('model_args') or 'no model args'}), "
        f"limit: {config.get('limit')}, num_fewshot: {config.get('num_fewshot')}, "
        f"batch_size: {config.get('batch_size')}"
    )
    own = frozenset(table.CALIBRATION)  # calibration: its own short section after the tables
    reporter.write_line(table.render(results, versions, n_shot, hib, leave_out=own))
    if results.group_names:
        reporter.write_line("")
        reporter.write_line(table.render(results, versions, n_shot, hib, groups_only=True, leave_out=own))
    for line in table.calibration_lines(results):
        reporter.write_line(line)
    for line in result.lines:
        reporter.write_line(line)
    for line in helm_lines(result.sections):
        reporter.write_line(line)
    for line in leaderboard.lines(leaderboard.scores(results, tasks)):
        reporter.write_line(line)
    for name in results.group_names:
        missing = results.entries[name].missing
        if missing:
            reporter.write_line(
                f"note: group {name} is partial: {len(missing)} of its tasks were not run "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )
    stats = result.engine
    if stats:
        reporter.write_line(
            f"lmeval: {stats.get('requests', 0)} requests ({stats.get('unique_requests', 0)} unique): "
            f"{stats.get('from_cache', 0)} from cache, {stats.get('computed', 0)} computed "
            f"in {stats.get('model_seconds', 0):.1f}s{_token_rate(stats)}"
        )
    judge_line = workers_summary_line(stats) if "workers" in stats else None
    if judge_line:  # under xdist the workers judged; their own summary lines are not shown
        reporter.write_line(judge_line)
    if result.cache_note:  # whether answers were cached, and why
        reporter.write_line(result.cache_note)
    if result.gates:
        reporter.write_sep("=", "lmeval gates")
        for gate in result.gates:
            reporter.write_line(f"{'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.summary}", red=not gate.passed)
            for line in gate.details:
                shown = line if len(line) <= MAX_LINE else line[: MAX_LINE - 40] + " ... (in full in results.json)"
                reporter.write_line(f"    {shown}")
    for path in result.output_files:
        reporter.write_line(f"lmeval: wrote {path}")


def helm_lines(sections: dict[str, Any]) -> list[str]:
    """HELM's measures of generated text, in their own short section: bias and toxicity per
    generative task."""
    return bias.terminal_lines(sections.get(bias.KEY)) + toxicity.terminal_lines(
        sections.get(toxicity.KEY), sections.get(toxicity.CLASSIFIER_KEY)
    )


def print_not_written(line: str, reporter: Any) -> None:
    """Why the reports were not put in place, and which files were (one line)."""
    reporter.write_line(line, red=True)


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


def print_unscored(result: RunResult, reporter: Any) -> None:
    """The part of the run that failed: why the run stopped, which documents have no score
    (by id, with the reason), and how to get the rest."""
    not_scored = result.not_scored
    if result.stopped:
        reporter.write_line(result.stopped, red=True)
    if not_scored:
        errors = sum(1 for e in not_scored if e["status"] == ERROR)
        scored = len(result.records)
        reporter.write_sep("=", "lmeval: PARTIAL RESULTS", red=True)
        reporter.write_line(
            f"{len(not_scored)} of {scored + len(not_scored)} documents not scored "
            f"({errors} could not be scored, {len(not_scored) - errors} not run); "
            f"the results{' and gates' if result.gates else ''} cover the {scored} scored",
            red=True,
        )
        by_reason: dict[tuple[str, str], list[str]] = {}
        for entry in not_scored:
            by_reason.setdefault((entry["status"], entry["reason"]), []).append(entry["id"])
        for (status, reason), ids in by_reason.items():
            more = f" and {len(ids) - MAX_UNSCORED_SHOWN} more" if len(ids) > MAX_UNSCORED_SHOWN else ""
            reporter.write_line(f"  {', '.join(ids[:MAX_UNSCORED_SHOWN])}{more} ({status}): {reason}", red=True)
    if result.resume_note is not None:
        colour, line = result.resume_note
        reporter.write_line(line, **({colour: True} if colour else {}))
