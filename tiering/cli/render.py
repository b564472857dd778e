"""Turning results into text for people (tables) and for scripts (JSON lines)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from tiering.core.display import show_path
from tiering.core.units import format_size, plural

if TYPE_CHECKING:  # the plan's types: pyarrow and the policy engine, which status and restore never need
    from tiering.plan import Plan


def plan_json_line(row: dict) -> str:
    """One action as JSON: path as text (non-UTF-8 bytes as surrogate escapes), action, tier, rule, reason, size."""
    return json.dumps({"path": os.fsdecode(row["path"]), "action": row["action"], "tier": row["target_tier"],
                       "rule": row["rule"], "reason": row["reason"], "size": row["size"], "state": row["state"]})


def plan_table(plan: Plan, top: int) -> str:
    summary = plan.summary()
    lines = []
    if plan.usage:
        lines.append(f"hot tier: {format_size(plan.usage.used)} of {format_size(plan.usage.total)} used "
                     f"({plan.usage.fraction:.0%}); this plan frees {format_size(plan.freed)}")
    lines.append(f"{'rule':<28} {'action':<8} {'files':>10} {'bytes':>10}")
    for group in summary["actions"]:
        lines.append(f"{group['rule']:<28} {group['action']:<8} {group['files']:>10,} {format_size(group['bytes']):>10}")
    if not summary["actions"]:
        lines.append("(nothing to do)")
    for key, n in sorted(summary["counts"].items()):
        lines.append(f"  {key}: {n:,}")
    if len(plan):
        lines.append(f"{plural(len(plan), 'action')} in the order they will run; the first {top} of each rule:")
        shown: dict[str, int] = {}
        for row in plan.rows():
            shown[row["rule"]] = shown.get(row["rule"], 0) + 1
            if shown[row["rule"]] <= top:
                lines.append(f"  {row['action']:<8} {show_path(row['path'])} -> {row['target_tier'] or '-'}: {row['reason']}")
            elif shown[row["rule"]] == top + 1:
                lines.append(f"  ... more from rule {row['rule']}")
    return "\n".join(lines)


def status_lines(results) -> list[str]:
    lines = []
    for r in results:
        where = f" in {r.tier} as {r.object_key}" if r.tier else ""
        check = (f" [verify: {r.verified}]" if r.verified else "") + (f" [{r.note}]" if getattr(r, "note", "") else "")
        size = format_size(r.size) if r.size is not None else "?"
        lines.append(f"{show_path(r.path)}: {r.state}{' (pinned)' if r.pinned else ''}, {size}{where}"
                     f"{', ' + r.checksum if r.checksum else ''}{check}")
    return lines


def summary_lines(summary: dict, config) -> list[str]:
    """``tiering status`` with no paths: usage against the watermarks, states, last cycle, daemon."""
    lines = [f"hot tier {summary['hot_tier']}: {format_size(summary['used'])} of {format_size(summary['total'])} used "
             f"({summary['used_fraction']:.0%})" + _watermark_text(summary)]
    for state, v in sorted(summary["by_state"].items()):
        lines.append(f"  {state:<9} {v['files']:>10,} {'file ' if v['files'] == 1 else 'files'} {format_size(v['bytes']):>10}")
    if not summary["by_state"]:
        lines.append("  no managed files yet")
    if summary.get("in_progress"):
        lines.append(f"  {plural(summary['in_progress'], 'action')} in progress")
    if summary.get("interrupted"):
        lines.append(f"  {plural(summary['interrupted'], 'interrupted action')}: the next command (or `tiering recover`) "
                     "settles them")
    run = summary["last_run"]
    if run:
        ended = f"ended {_when(run['ended_at'])}" if run["ended_at"] else "did not finish (or is running)"
        lines.append(f"last cycle: {run['command']} (pid {run['pid']}) started {_when(run['started_at'])}, {ended}"
                     + _run_text(run["summary"]))
    lines.append(_daemon_text(summary))
    return lines


def _run_text(summary: dict | None) -> str:
    if not summary:
        return ""
    if "error" in summary:
        return f": failed: {summary['error']}"
    if "files" not in summary:  # a summary of another shape: show it as it is
        return f": {json.dumps(summary)}"
    stopped = f"; {summary['stopped']}" if summary.get("stopped") else ""
    return (f": {plural(summary['files'], 'action')}, {summary['failed']:,} failed, "
            f"{format_size(summary.get('bytes_moved', 0))} moved{stopped}{_concurrency_text(summary)}")


def _concurrency_text(summary: dict) -> str:
    """``; concurrency http://host: 3/16 (auto, 12 throttled, 3 cuts)`` for each store endpoint of a run."""
    from tiering.stores.limiter import LimitState

    states = [LimitState(endpoint, in_flight=0, waiting=0, **fields)
              for endpoint, fields in (summary.get("concurrency") or {}).items()]
    return "".join(f"; concurrency {s.endpoint}: {s.line()}" for s in states)


def _watermark_text(summary: dict) -> str:
    wm = summary.get("watermark")
    if not wm:
        return "; no watermark in the policy"
    if "error" in wm:
        return f"; watermarks unknown: {wm['error']}"
    where = "above high" if summary["used_fraction"] > wm["high"] else \
        "between low and high" if summary["used_fraction"] > wm["low"] else "below low"
    return f"; watermarks high {wm['high']:.0%}, low {wm['low']:.0%}: {where}"


def _daemon_text(summary: dict) -> str:
    d, w = summary.get("daemon"), summary["writer"]
    if d:
        metrics = f", metrics {d['metrics']}" if d.get("metrics") else ""
        return f"daemon: running, pid {d.get('pid')} on {d.get('host')} since {_when(d.get('started'))}{metrics}"
    if w:
        return f"daemon: not running; pid {w.get('pid')} ({w.get('purpose') or 'unknown'}) holds the catalog"
    return "daemon: not running"


def _when(ts: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "?"


#: Each action's past tense, for summary lines.
PAST = {"archive": "archived", "release": "released", "restore": "restored", "pin": "pinned",
        "transition": "transitioned"}
#: What a file that an action had nothing to do for is (a restore's no-op: the file is not released).
NOTHING_TO_DO = {"archive": "already archived", "release": "already released", "restore": "not released",
                 "pin": "already pinned"}


def moved_line(result) -> str:
    """A mover run for people: ``released 12 files in 2m13s (3.4GiB at 26.1MiB/s), 3 already released, 0 failed``."""
    from tiering.core.units import format_elapsed, format_rate, plural

    counts = result.counts
    if not counts and not result.stopped:
        return "nothing to do"
    actions = sorted({action for action, _ in counts})
    done = [f"{PAST.get(a, a)} {plural(counts[(a, 'done')], 'file')}" for a in actions if counts[(a, "done")]]
    if not done:  # "released 0 files, 3 already released": the verb still says what was asked
        done = [f"{PAST.get(actions[0], actions[0])} 0 files"] if len(actions) == 1 else ["nothing to do"]
    line = ", ".join(done) + f" in {format_elapsed(result.seconds)}"
    if result.bytes_moved:
        rate = f" at {format_rate(result.bytes_moved / result.seconds)}" if result.seconds >= 0.05 else ""
        line += f" ({format_size(result.bytes_moved)}{rate})"
    noop = {a: counts[(a, "noop")] for a in actions if counts[(a, "noop")]}
    for action, n in noop.items():
        line += f", {n:,} {NOTHING_TO_DO.get(action, 'no-op')}" if len(noop) == 1 else f", {n:,} {action} no-op"
    skipped = sum(n for (_, status), n in counts.items() if status == "skipped")
    if skipped:
        line += f", {skipped:,} skipped"
    pending = sum(n for (_, status), n in counts.items() if status == "pending")
    if pending:  # archived objects whose store is restoring them: the same command finishes them later
        line += f", {pending:,} pending (object restore requested)"
    line += f", {result.failed:,} failed"
    if result.stopped:
        line += f" ({result.stopped})"
    return line


def would_line(action: str, files: int, nbytes: int, already: int = 0, failed: int = 0) -> str:
    """A dry run's summary: what would happen, no time or rate (nothing ran)."""
    from tiering.core.units import plural

    copy = f" ({format_size(nbytes)} to {'fetch' if action == 'restore' else 'copy'})" if nbytes else ""
    more = f", {already:,} {NOTHING_TO_DO.get(action, 'no-op')}" if already else ""
    more += f", {failed:,} failed" if failed else ""
    return f"would {action} {plural(files, 'file')}{copy}{more}; dry run, nothing changed"


def recovered_line(recovered) -> str:
    """What ``recover`` settled, for people."""
    from tiering.core.units import plural

    failed = sum(not o.ok for o in recovered)
    if not recovered:
        return "nothing to recover: no interrupted actions"
    return f"settled {plural(len(recovered), 'interrupted action')}, {failed:,} failed"


def cycle_line(report) -> str:
    """``tiering run`` for people: what was recovered, planned and done, and the hot tier before and after."""
    from tiering.core.units import plural

    before, after = report.usage_before, report.usage_after
    usage = f"; hot tier {before.fraction:.0%} -> {after.fraction:.0%} used" if after.total else ""
    recovered = f"recovered {plural(len(report.recovered), 'action')}; " if report.recovered else ""
    planned = f"planned {plural(report.planned[0], 'action')} ({format_size(report.planned[1])}); "
    stopped = "; stopped by signal" if report.stopped_by_signal else ""
    return f"cycle: {recovered}{planned}{moved_line(report.result)}{usage}{stopped}"
