"""No hangs: whatever fails inside a run, it ends with its summary, the right exit status, and loses nothing.

A real ``tiering`` subprocess per case: an exception raised at every mover
step (``TIERING_CRASH_RAISE``), a catalog on a real tmpfs that fills up, and
SIGTERM/SIGINT mid-run. After each, recovery and a full restore must give
back every original byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tiering.catalog import Catalog
from tiering.config import load_config
from tiering.core.faults import STEPS
from tiering.mover.executor import Task, drive, execute
from tiering.ops.session import mover_session

#: A run that takes longer than this to end after a failure is taken for hung.
BOUND = 30
SIZES = (0, 1, 4096, 70_000, 300_000)


def make_lab(root: Path, files: int = 12, catalog: Path | None = None) -> tuple[Path, dict[str, bytes]]:
    """A config (posix capacity tier) and a hot tier of ``files`` files; returns (config, originals)."""
    hot, cap = root / "hot", root / "capacity"
    hot.mkdir(parents=True, exist_ok=True)
    cap.mkdir(exist_ok=True)
    originals = {}
    for i in range(files):
        rel = f"d{i % 3}/f{i:03d}.bin"
        (hot / rel).parent.mkdir(exist_ok=True)
        originals[rel] = os.urandom(SIZES[i % len(SIZES)])
        (hot / rel).write_bytes(originals[rel])
    cfg = root / "tiering.toml"
    catalog = catalog or root / "state/catalog.db"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{catalog}"\n'
                   f'[concurrency]\njobs = 2\n[tiers.cap]\nurl = "{cap}"\n')
    return cfg, originals


def tiering(*args: str, env: dict | None = None) -> subprocess.Popen:
    """``tiering ARGS``; the move verbs print their summary as JSON."""
    if args[0] in ("release", "restore", "archive", "apply"):
        args = (args[0], "--json", *args[1:])
    return subprocess.Popen([sys.executable, "-c", "from tiering.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc: subprocess.Popen) -> tuple[int, dict, str]:
    """(rc, summary, stderr) of a run that must end within ``BOUND`` seconds and print its summary line."""
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"hung: no exit within {BOUND}s; stderr: {err[-2000:]}")
    assert "Traceback" not in err, err
    lines = out.strip().splitlines()
    assert lines, f"no summary line (rc {proc.returncode}); stderr: {err[-2000:]}"
    return proc.returncode, json.loads(lines[-1]), err


def assert_nothing_lost(cfg: Path, originals: dict[str, bytes]) -> None:
    """Recover, restore every released file, and find every original byte in place."""
    config = load_config(cfg)
    with mover_session(config, "check") as (mover, _):
        released = [r.path for r in mover.catalog.records("released")]
        result = execute(mover, [Task(r, "restore") for r in released], jobs=2)
        assert result.failed == 0, result.failures
        assert mover.catalog.open_entries() == []
    hot = config.hot_path
    assert not [p for p in hot.rglob(".tiering-restore-*")]
    for rel, data in originals.items():
        assert (hot / rel).read_bytes() == data, rel


def release_all(cfg: Path, originals: dict[str, bytes]) -> None:
    with mover_session(load_config(cfg), "setup") as (mover, _):
        result = execute(mover, [Task(os.fsencode(r), "release") for r in originals], jobs=2)
        assert result.failed == 0, result.failures


MOVER_STEPS = [s for s in STEPS if s != "upload:part"]  # (only an object store's multipart upload has parts)
KINDS = {"bug": 1, "enospc": 1, "catalog": 1, "eio": 1, "tier": 3}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("step", MOVER_STEPS)
def test_an_exception_at_any_step_ends_the_run_with_its_summary_and_loses_nothing(tmp_path, step, kind):
    cfg, originals = make_lab(tmp_path)
    action = step.split(":")[0]
    if action == "restore":
        release_all(cfg, originals)
    command = "release" if action == "archive" else action
    env = {**os.environ, "TIERING_CRASH_AT": f"{step}:3", "TIERING_CRASH_RAISE": kind}
    rc, summary, err = finish(tiering(command, "-c", str(cfg), *[str(tmp_path / "hot" / r) for r in originals],
                                      env=env))
    assert rc == KINDS[kind], err
    assert summary["failed"] >= 1
    assert {"enospc": "No space left on device", "eio": "Input/output error"}.get(kind, "injected fault") in err
    if kind != "eio":  # a file's EIO fails that file; the others stop the run
        assert summary["stopped"], summary
    assert_nothing_lost(cfg, originals)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs for the catalog needs root")
def test_a_full_catalog_filesystem_ends_the_run_with_a_one_line_error_and_recover_loses_nothing(tmp_path):
    """The issue's case: the catalog's filesystem has ~40 KiB left; `release` of 200 files used to hang."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    try:
        catalog = state / "catalog.db"
        cfg, originals = make_lab(tmp_path, files=200, catalog=catalog)
        Catalog.open(catalog, writer=True).close()  # the catalog exists; then its filesystem fills up
        free = os.statvfs(state)
        (state / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 40 * 1024))

        rc, summary, err = finish(tiering("release", "-c", str(cfg), *[str(tmp_path / "hot" / r) for r in originals]))
        assert rc == 1, err
        assert f"catalog {catalog} cannot be written" in err and "full" in err
        assert summary["stopped"] and summary["failed"] >= 1
        assert summary["files"] < len(originals)  # it stopped starting new work

        (state / "filler").unlink()
        recover = tiering("recover", "-c", str(cfg))
        out, err = recover.communicate(timeout=BOUND)
        assert recover.returncode == 0, err
        assert_nothing_lost(cfg, originals)
    finally:
        subprocess.run(["umount", str(state)], check=False)


@pytest.mark.parametrize("signum", ["TERM", "INT"])
@pytest.mark.parametrize("command", ["release", "restore", "archive", "apply"])
def test_sigterm_and_sigint_print_the_summary_and_exit_130(tmp_path, command, signum):
    """The signal arrives at the 5th finished action (a real signal, sent by the fault point), mid-run."""
    cfg, originals = make_lab(tmp_path, files=60)
    if command == "restore":
        release_all(cfg, originals)
    if command == "apply":
        policy = tmp_path / "policy.toml"
        policy.write_text('[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "release"\n'
                          '[safety]\nmin_age = "0s"\n')
        args = ["apply", "-c", str(cfg), "-p", str(policy)]
    else:
        args = [command, "-c", str(cfg), *[str(tmp_path / "hot" / r) for r in originals]]
    step = {"apply": "release"}.get(command, command)
    env = {**os.environ, "TIERING_CRASH_AT": f"{step}:end:5", "TIERING_CRASH_SIGNAL": signum}
    rc, summary, err = finish(tiering(*args, env=env))
    assert rc == 130, err
    assert summary["stopped"].startswith("interrupted") and "interrupted" in err
    assert 5 <= summary["files"] < len(originals)
    assert_nothing_lost(cfg, originals)


S3_STEPS = ["upload:part:2", "archive:copied:2", "release:stubbed:2", "restore:fetched:2"]


@pytest.mark.parametrize("kind", ["bug", "tier"])
@pytest.mark.parametrize("step", S3_STEPS)
def test_an_exception_with_an_s3_tier_ends_the_run_too(tmp_path, seaweed, monkeypatch, step, kind):
    """The same on SeaweedFS, with files large enough for multipart uploads (an exception inside the
    upload's part stream)."""
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET

    cfg, originals = make_lab(tmp_path, files=4)
    for i in range(2):  # above the 5 MiB part size: multipart
        originals[f"big/b{i}.bin"] = os.urandom(11 * 1024 * 1024)
        (tmp_path / "hot" / "big").mkdir(exist_ok=True)
        (tmp_path / "hot" / f"big/b{i}.bin").write_bytes(originals[f"big/b{i}.bin"])
    monkeypatch.setenv("NOHANG_S3_SECRET", S3_SECRET)
    text = cfg.read_text().split("[tiers.cap]")[0]
    cfg.write_text(text + f'[tiers.cap]\nurl = "s3://{S3_BUCKET}/nohang-{tmp_path.name}"\n'
                          f'endpoint = "{seaweed.endpoint}"\naccess_key_id = "{S3_KEY}"\n'
                          'secret_access_key = "${NOHANG_S3_SECRET}"\n'
                          'part_size = "5MiB"\nmultipart_threshold = "5MiB"\n')
    action = step.split(":")[0]
    if action == "restore":
        release_all(cfg, originals)
    command = "restore" if action == "restore" else "release"
    env = {**os.environ, "TIERING_CRASH_AT": step, "TIERING_CRASH_RAISE": kind}
    rc, summary, err = finish(tiering(command, "-c", str(cfg), *[str(tmp_path / "hot" / r) for r in originals],
                                      env=env))
    assert rc == KINDS[kind], err
    assert summary["failed"] >= 1 and summary["stopped"] and "injected fault" in err
    assert_nothing_lost(cfg, originals)


def test_drive_lets_the_others_finish_then_raises_when_an_action_raises():
    """The hang itself: drive() took the failed future off the queue without counting it, then waited for it."""
    got: list[int] = []

    async def action(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 4))
        if i == 5:
            raise RuntimeError("boom")
        return i

    async def run() -> None:
        await asyncio.wait_for(drive(action, range(40), jobs=2, on_result=got.append, stop=lambda: False), BOUND)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(run())
    assert 5 not in got and len(got) >= 7  # the ones in flight with it finished and were counted
