"""Turning results into text for people (tables) and for scripts (JSON lines)."""

from __future__ import annotations

import json
import os

from tiering.plan import Plan, show_path
from tiering.units import format_size


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
        lines.append(f"first {min(top, len(plan))} of {len(plan):,} actions:")
        for row in plan.rows(limit=top):
            lines.append(f"  {row['action']:<8} {show_path(row['path'])} -> {row['target_tier'] or '-'}: {row['reason']}")
    return "\n".join(lines)


def status_lines(results) -> list[str]:
    lines = []
    for r in results:
        where = f" in {r.tier} as {r.object_key}" if r.tier else ""
        check = f" [verify: {r.verified}]" if r.verified else ""
        size = format_size(r.size) if r.size is not None else "?"
        lines.append(f"{show_path(r.path)}: {r.state}{' (pinned)' if r.pinned else ''}, {size}{where}"
                     f"{', ' + r.checksum if r.checksum else ''}{check}")
    return lines


def summary_lines(summary: dict, config) -> list[str]:
    lines = [f"hot tier {summary['hot_tier']}: {format_size(summary['used'])} of {format_size(summary['total'])} used "
             f"({summary['used_fraction']:.0%})"]
    for state, v in sorted(summary["by_state"].items()):
        lines.append(f"  {state:<9} {v['files']:>10,} files {format_size(v['bytes']):>10}")
    if not summary["by_state"]:
        lines.append("  no managed files yet")
    if summary.get("interrupted"):
        lines.append(f"  {summary['interrupted']} interrupted actions: the next command (or `tiering recover`) settles them")
    run = summary["last_run"]
    if run:
        lines.append(f"last run: {run['command']} (pid {run['pid']}) {'finished' if run['ended_at'] else 'did not finish'}"
                     + (f": {json.dumps(run['summary'])}" if run["summary"] else ""))
    w = summary["writer"]
    lines.append(f"writer: pid {w.get('pid')} ({w.get('purpose') or 'unknown'}) holds the catalog" if w
                 else "writer: none running")
    return lines
