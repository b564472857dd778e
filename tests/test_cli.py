"""The command line a newcomer meets: help, version, output levels, exit codes, folders and filters.

Help text goes through typer's ``CliRunner``; everything with an exit status
runs the installed ``tiering`` console script as a real subprocess, on real
files, with a posix capacity tier in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tiering.cli import command, main
from tiering.cli.output import reset
from tiering.ops.selection import expand

REPO = Path(__file__).resolve().parents[1]
# the console script `pip install` made (TIERING_TEST_CLI: another build of it, e.g. the base commit's)
TIERING = os.environ.get("TIERING_TEST_CLI") or str(Path(sys.executable).with_name("tiering"))


def tiering(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    return subprocess.run([TIERING, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, hot tier): one posix capacity tier, no policy needed by the hand-run verbs."""
    hot, cap = tmp_path / "hot", tmp_path / "cap"
    hot.mkdir()
    cap.mkdir()
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{tmp_path}/state/catalog.db"\n'
                   f'[concurrency]\njobs = 2\n[tiers.cap]\nurl = "{cap}"\n')
    return cfg, hot


def write(path: Path, size: int, age_days: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if age_days:
        past = path.stat().st_mtime - age_days * 86400
        os.utime(path, (past, past))
    return path


def _commands(cmd, prefix: tuple[str, ...] = ()):
    yield prefix, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*prefix, name))


@pytest.fixture
def runner(capsys):
    """``runner(*args)``: (exit status, stdout) of ``tiering ARGS`` in this process, for help text."""

    def run(*args: str) -> tuple[int, str]:
        reset()
        with pytest.raises(SystemExit) as done:
            main(list(args))
        reset()
        return done.value.code or 0, capsys.readouterr().out

    return run


# --- help, version ---------------------------------------------------------------------------------------------


def test_version(runner):
    status, out = runner("--version")
    assert status == 0 and out.startswith("tiering ") and out.split()[1][0].isdigit()


def test_every_command_and_group_takes_h_and_help_and_shows_names_not_python_types(runner):
    seen = 0
    for path, cmd in _commands(command()):
        (status, short), (status_long, long) = runner(*path, "-h"), runner(*path, "--help")
        assert status == status_long == 0, (path, short)
        assert short == long and "Usage: tiering" in short
        for python_type in ("<str>", "<bool>", "<int", "<path>", "<list[", "<float"):
            assert python_type not in short, (path, short)
        if not hasattr(cmd, "commands"):  # a verb: ends with examples, and has -q/-v
            assert "Examples:\n    tiering " in short, (path, short)
            assert "-q, --quiet" in short and "-v, --verbose" in short, path
        seen += 1
    assert seen >= 20


def test_options_show_what_they_take(runner):
    text = runner("release", "-h")[1]
    for shown in ("[PATH]...", "--include GLOB", "--min-size SIZE", "--min-age DURATION", "--tier TIER", "-j, --jobs N",
                  "--manifest PATH", "--dry-run", "--json"):
        assert shown in text, shown
    assert "--executor URL" in runner("apply", "-h")[1]


def test_the_top_help_documents_every_exit_status(runner):
    text = runner("-h")[1]
    lines = text[text.index("Exit status"):].splitlines()
    codes = [line.split()[0] for line in lines[1:] if line.strip()]
    assert codes == ["0", "1", "2", "3", "4", "75", "130"]
    assert "--version" in text and "--debug" in text


# --- exit statuses and --debug (real processes) ----------------------------------------------------------------


def test_a_user_mistake_is_one_line_and_2_and_debug_lets_the_traceback_through(tmp_path):
    missing = str(tmp_path / "missing.toml")
    plain = tiering("status", "-c", missing)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = tiering("--debug", "status", "-c", missing)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError" in debug.stderr


def test_no_configuration_names_the_option_and_the_variable(tmp_path):
    done = tiering("status", cwd=tmp_path)
    assert done.returncode == 2 and "--config" in done.stderr and "TIERING_CONFIG" in done.stderr


def test_a_bad_option_is_the_usage_status(tmp_path):
    assert tiering("archive", "--no-such-option").returncode == 2


def test_config_check_takes_config_like_every_verb(tmp_path):
    cfg, _ = setup(tmp_path)
    by_option, by_operand = tiering("config", "check", "-c", str(cfg)), tiering("config", "check", str(cfg))
    assert by_option.returncode == 0 and by_option.stdout == by_operand.stdout
    assert by_option.stdout.endswith("ok: 1 tier\n")


# --- archive / release / restore: folders, filters, dry run, manifests, output ----------------------------------


def test_archive_takes_a_folder_and_says_what_it_did_for_people_then_json(tmp_path):
    cfg, hot = setup(tmp_path)
    for name in ("a.bin", "sub/b.bin", "sub/deeper/c.bin"):
        write(hot / "bigset" / name, 10_000)
    done = tiering("archive", "-c", str(cfg), str(hot / "bigset"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("archived 3 files in ") and done.stdout.rstrip().endswith(", 0 failed")
    assert "MiB/s" in done.stdout or "KiB/s" in done.stdout or "(29.3KiB)" in done.stdout
    assert sorted(p.relative_to(tmp_path / "cap").as_posix() for p in (tmp_path / "cap").rglob("*.bin")) == [
        "bigset/a.bin", "bigset/sub/b.bin", "bigset/sub/deeper/c.bin"]
    again = tiering("archive", "-c", str(cfg), "bigset", "--json")
    summary = json.loads(again.stdout)
    assert again.returncode == 0 and summary["actions"] == {"archive": {"noop": 3}}


def test_a_folder_walk_does_not_follow_symlinks_out_of_the_hot_tier(tmp_path):
    cfg, hot = setup(tmp_path)
    outside = tmp_path / "elsewhere"
    write(outside / "secret.bin", 1000)
    write(hot / "ds/real.bin", 1000)
    (hot / "ds/link-dir").symlink_to(outside)
    (hot / "ds/link-file").symlink_to(outside / "secret.bin")
    assert list(expand([b"ds"], hot)) == [b"ds/real.bin"]
    done = tiering("archive", "-c", str(cfg), "ds", "-v")
    assert done.returncode == 0 and done.stdout.startswith("archived 1 file in "), done.stdout + done.stderr
    assert "done: archive ds/real.bin (1000B)" in done.stderr  # -v: a line per file
    assert [p.name for p in (tmp_path / "cap").rglob("*") if p.is_file()] == ["real.bin"]


def test_expand_is_ordered_deduplicated_and_passes_other_operands_through(tmp_path):
    hot = tmp_path
    for name in ("d/b", "d/a", "d/z/c", "d/y/e"):
        write(hot / name, 1)
    (hot / "escape").symlink_to(tmp_path.parent)
    got = list(expand([b"d", b"d/a", b"missing", b"escape"], hot))
    assert got == [b"d/a", b"d/b", b"d/y/e", b"d/z/c", b"missing", b"escape"]
    big_only = list(expand([b"d"], hot, lambda rel, st: rel.endswith(b"e")))
    assert big_only == [b"d/y/e"]


def test_release_dry_run_with_filters_changes_nothing_and_shows_no_rate(tmp_path):
    cfg, hot = setup(tmp_path)
    write(hot / "runs/old.pt", 200_000, age_days=30)
    write(hot / "runs/new.pt", 200_000)
    write(hot / "runs/old.log", 200_000, age_days=30)
    write(hot / "runs/tiny.pt", 10, age_days=30)
    done = tiering("release", "-c", str(cfg), "runs", "--include", "*.pt", "--min-age", "7d", "--min-size", "1KiB",
                   "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["would release runs/old.pt (resident, 195.31KiB)",
                                        "would release 1 file (195.31KiB to copy); dry run, nothing changed"]
    assert "/s" not in done.stdout
    assert all(p.stat().st_size for p in (hot / "runs").iterdir()) and not list((tmp_path / "cap").iterdir())
    bad = tiering("release", "-c", str(cfg), "runs", "--min-age", "7 fortnights")
    assert bad.returncode == 2 and "--min-age" in bad.stderr


def test_release_then_restore_from_a_manifest_on_standard_input(tmp_path):
    cfg, hot = setup(tmp_path)
    files = [write(hot / f"data/shard-{i}.tar", 50_000) for i in range(3)]
    released = tiering("release", "-c", str(cfg), "data")
    assert released.returncode == 0 and released.stdout.startswith("released 3 files"), released.stderr
    assert all(f.stat().st_size == 0 for f in files)
    listing = "".join(f"{f}\n" for f in files[:2]) + "# a comment\n\n"
    back = tiering("restore", "-c", str(cfg), "--manifest", "-", "--json", stdin=listing)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["actions"] == {"restore": {"done": 2}}
    assert [f.stat().st_size for f in files] == [50_000, 50_000, 0]


def test_quiet_prints_only_the_summary_and_errors(tmp_path):
    cfg, hot = setup(tmp_path)
    write(hot / "a/x.bin", 100)
    loud = tiering("restore", "-c", str(cfg), "a", "--dry-run")
    quiet = tiering("restore", "-c", str(cfg), "a", "--dry-run", "-q")
    assert "not released: a/x.bin" in loud.stderr and quiet.stderr == ""
    assert quiet.stdout == loud.stdout == "would restore 0 files, 1 not released; dry run, nothing changed\n"
    also = tiering("-q", "restore", "-c", str(cfg), "a", "--dry-run")
    assert also.stderr == ""


def test_quiet_and_verbose_together_are_a_usage_error(runner):
    assert runner("restore", "-q", "-v", "a")[0] == 2


# --- progress on a terminal ------------------------------------------------------------------------------------


def test_progress_on_a_terminal_ends_at_100_percent_and_the_summary_gets_its_own_line(tmp_path):
    cfg, hot = setup(tmp_path)
    for i in range(30):
        write(hot / f"p/f{i:02d}", 64_000)
    write(hot / "p/big", 8 << 20)
    tiering("archive", "-c", str(cfg), "p/f00")  # one already archived: moves no bytes, still counts as done
    leader, follower = pty.openpty()
    proc = subprocess.Popen([TIERING, "archive", "-c", str(cfg), "p"], stdout=subprocess.PIPE, stderr=follower,
                            env={**os.environ, "COLUMNS": "120"})
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    out = proc.communicate(timeout=60)[0].decode()
    os.close(leader)
    assert proc.returncode == 0
    frames = screen.decode().replace("\r\n", "\n").split("\r")
    last = frames[-1]
    assert " 100% 31/31 files" in last and last.rstrip("\x1b[?25h").endswith("\n"), repr(last)
    assert "MiB/s" in last and "ETA 0s" in last
    assert out.startswith("archived 30 files in ") and ", 1 already archived, 0 failed" in out


# --- make run ----------------------------------------------------------------------------------------------------


def test_the_demo_opens_with_the_cycle_and_speaks_plainly(tmp_path):
    env = {**os.environ, "TIERING_HOME": str(tmp_path)}
    env.pop("TIERING_CONFIG", None)
    done = subprocess.run([TIERING, "demo", "-c", "configs/local.toml"], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.index("== plan (" + str(REPO / "policies/demo.toml") + ")") <= 3  # no config dump before the cycle
    applied = lines[lines.index("== apply") + 1]
    assert applied.startswith("archived 1 file, pinned 200 files, released 15 files in ") and applied.endswith(
        ", 0 failed"), applied
    assert "216 actions in the order they will run" in done.stdout
    assert "export TIERING_CONFIG=configs/local.toml" in done.stdout


# --- the summary lines -----------------------------------------------------------------------------------------


def test_summary_lines_count_right_and_a_dry_run_has_no_rate():
    from collections import Counter

    from tiering.cli.render import moved_line, would_line
    from tiering.mover.executor import RunResult

    one = RunResult(counts=Counter({("release", "done"): 1}), bytes_moved=3 << 30, seconds=133.0)
    assert moved_line(one) == "released 1 file in 2m13s (3GiB at 23.1MiB/s), 0 failed"
    mixed = RunResult(counts=Counter({("archive", "done"): 2, ("release", "done"): 12, ("archive", "skipped"): 1,
                                      ("release", "failed"): 1}), seconds=0.4)
    assert moved_line(mixed) == "archived 2 files, released 12 files in 400ms, 1 skipped, 1 failed"
    none = RunResult(counts=Counter({("restore", "noop"): 3}), seconds=0.01)
    assert moved_line(none) == "restored 0 files in 10ms, 3 not released, 0 failed"
    assert moved_line(RunResult()) == "nothing to do"
    assert would_line("archive", 1, 1 << 20, already=2) == (
        "would archive 1 file (1MiB to copy), 2 already archived; dry run, nothing changed")
