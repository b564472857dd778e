"""Every verb that talks to an S3 tier, through the fault-injecting proxy (``servers.s3_proxy``), as a real process.

Transient faults (a connection reset once, 503 SlowDown on some requests, a GET
cut mid-body): the verb completes, every file verified. Persistent faults (the
endpoint refuses connections, every listing page after the first is reset):
one line naming the tier and the cause, exit 3, no traceback, nothing lost or
deleted. ``FAULTS`` and the verbs below make the table in the issue's closing note.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import S3_BUCKET, S3_KEY, S3_SECRET

from tiering.stores import open_store
from tiering.stores.checksum import checksum_bytes

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_UNREACHABLE = 0, 3
PAGES_AFTER_THE_FIRST = ["continuation-token", "start-after"]

#: Faults a run must get through, the work done and verified.
TRANSIENT = {
    "list-page-2-reset-once": [{"op": "ListObjectsV2", "query": PAGES_AFTER_THE_FIRST, "action": "reset", "times": 1}],
    # 10 %: with migrate's default policy (6 tries) one file in ~1,400 would get 6 SlowDowns in a row at 30 %
    # (the conformance suite runs 30 % with a 10-try policy).
    "10%-puts-slowdown": [{"op": "PutObject", "action": "status", "status": 503, "code": "SlowDown", "chance": 0.1}],
    "gets-cut-mid-body": [{"op": "GetObject", "action": "cut", "times": 2},
                          {"op": "HeadObject", "action": "status", "status": 500, "code": "InternalError",
                           "times": 1}],
}
#: Faults no retry gets through: the run stops, says why in one line, and exits 3.
PERSISTENT = {
    "refused": "refuse",
    "every-request-reset": [{"op": "*", "action": "reset"}],
}


#: (fault, verb, rc, what it said, files verified, files lost) per step; written as a Markdown table to
#: $TIERING_FAULT_TABLE at the end of the module (the issue's closing note quotes it).
ROWS: list[tuple[str, str, int, str, int, int]] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table():
    yield
    out = os.environ.get("TIERING_FAULT_TABLE")
    if out and ROWS:
        lines = ["| fault | verb | rc | what it said | files verified | files lost |", "|---|---|---|---|---|---|"]
        lines += [f"| {f} | {v} | {rc} | {said.replace('|', '/')} | {ok} | {lost} |" for f, v, rc, said, ok, lost in ROWS]
        Path(out).write_text("\n".join(lines) + "\n")


def record(request, verb: str, done: subprocess.CompletedProcess, verified: int, lost: int = 0) -> None:
    """One row of the table, after the test's own asserts passed (so ``lost`` is what they proved)."""
    callspec = getattr(request.node, "callspec", None)
    fault = callspec.id if callspec else request.node.name.removeprefix("test_")
    said = [line for line in done.stderr.splitlines() if line.startswith("tiering:")] or done.stdout.splitlines()
    said = re.sub(r"s3://\S+?/fm-[^\s:]*", "s3://BUCKET/PREFIX", said[-1] if said else "")
    ROWS.append((fault, verb, done.returncode, said[:200], verified, lost))


def tiering(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiering", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False, env={**os.environ, "TEST_S3_SECRET": S3_SECRET})


def inject(proxy, fault) -> None:
    if fault == "refuse":
        proxy.refuse()
    else:
        proxy.rules(*fault)


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    """The command's error: one line on stderr naming ``words``, and no traceback anywhere."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "unreachable" in line.lower()
              or "cannot reach" in line]
    assert errors, done.stderr
    assert all(word in errors[-1] for word in words), errors
    return errors[-1]


def s3_options(endpoint: str) -> list[str]:
    return [f"endpoint={endpoint}", f"access_key_id={S3_KEY}", f"secret_access_key={S3_SECRET}"]


def options_args(flag: str, endpoint: str) -> list[str]:
    return [arg for option in s3_options(endpoint) for arg in (flag, option)]


def files_under(root: Path) -> dict[str, bytes]:
    """The user's files under ``root`` with their bytes (not tiering's own folder ``.tiering``: its restore
    locks are no file of the user's)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != ".tiering"}


def make_tree(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    data = {}
    for i in range(count):
        path = root / f"d{i % 7}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data[str(path.relative_to(root))] = body = os.urandom(size + i % 13)
        path.write_bytes(body)
    return data


@pytest.fixture
def url(request) -> str:
    return f"s3://{S3_BUCKET}/fm-{request.node.name[:40].replace('[', '-').replace(']', '')}-{time.time_ns() % 10**8}"


def write_setup(tmp_path: Path, endpoint: str, url: str, policy: str = "") -> Path:
    """A hot tier, a catalog and one s3 capacity tier at ``endpoint``, with quick retries."""
    (tmp_path / "hot").mkdir(exist_ok=True)
    (tmp_path / "policy.toml").write_text(policy or '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\n'
                                                    'action = "archive"\n[safety]\nmin_age = "0s"\n')
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\npolicy = "policy.toml"\n[hot]\npath = "{tmp_path / "hot"}"\n'
                   f'[catalog]\npath = "state/catalog.db"\n[concurrency]\njobs = 4\n'
                   f'[retry]\nattempts = 5\nmax_backoff = "0.1s"\ndeadline = "10s"\n'
                   f'[tiers.cap]\nurl = "{url}"\nendpoint = "{endpoint}"\naccess_key_id = "{S3_KEY}"\n'
                   'secret_access_key = "${TEST_S3_SECRET}"\n')
    return cfg


def states(tmp_path: Path) -> dict[str, str]:
    conn = sqlite3.connect(tmp_path / "state/catalog.db")
    try:
        return {os.fsdecode(p): s for p, s in conn.execute("SELECT path, state FROM files")}
    finally:
        conn.close()


def stored_checksums(seaweed, url: str) -> dict[str, str]:
    store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
    try:
        return {o.key: store.head(o.key).checksum for o in store.list()}
    finally:
        store.close()


# -- migrate and sync --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_migrate_up_and_down_through_transient_faults(s3_proxy, seaweed, tmp_path, url, fault, request):
    data = make_tree(tmp_path / "src", 1100 if fault[0]["op"] == "ListObjectsV2" else 200)  # > a page to list
    inject(s3_proxy, fault)
    up = tiering("migrate", str(tmp_path / "src"), url, *options_args("--dst-option", s3_proxy.endpoint))
    assert up.returncode == EXIT_OK, up.stderr
    down = tiering("migrate", url, str(tmp_path / "back"), *options_args("--src-option", s3_proxy.endpoint))
    assert down.returncode == EXIT_OK, down.stderr
    assert files_under(tmp_path / "back") == data  # every file, every byte (and each was verified on the way)
    assert any(s3_proxy.stats()["hits"])
    record(request, "migrate up", up, len(data))
    record(request, "migrate down", down, len(data))


@pytest.mark.parametrize("fault", PERSISTENT.values(), ids=PERSISTENT.keys())
def test_migrate_from_a_tier_that_stays_down_fails_in_one_line(s3_proxy, tmp_path, url, fault, request):
    """Before: 'copied 0 files ... failed 0' and exit 0 for an unreachable endpoint."""
    inject(s3_proxy, fault)
    down = tiering("migrate", url, str(tmp_path / "back"), *options_args("--src-option", s3_proxy.endpoint))
    assert down.returncode == EXIT_UNREACHABLE, (down.returncode, down.stdout, down.stderr)
    one_line_error(down, url)
    assert files_under(tmp_path / "back") == {} if (tmp_path / "back").exists() else True
    record(request, "migrate down", down, 0)


@pytest.fixture(scope="module")
def many_objects(seaweed, tmp_path_factory) -> tuple[str, Path, dict[str, bytes]]:
    """The issue's set, made once: 2,500 objects at a prefix, and the folder they came from."""
    url = f"s3://{S3_BUCKET}/fm-many-{time.time_ns() % 10**8}"
    folder = tmp_path_factory.mktemp("many") / "dstmany"
    data = make_tree(folder, 2500, size=16)
    done = tiering("migrate", str(folder), url, *options_args("--dst-option", seaweed.endpoint))
    assert done.returncode == EXIT_OK, done.stderr
    return url, folder, data


@pytest.fixture
def many(many_objects, tmp_path) -> tuple[str, dict[str, bytes]]:
    """The 2,500 objects' URL, with a full local copy of them in ``tmp_path/dstmany``."""
    url, folder, data = many_objects
    shutil.copytree(folder, tmp_path / "dstmany")
    return url, data


def test_sync_delete_deletes_nothing_when_a_listing_page_fails_for_good(s3_proxy, tmp_path, many, request):
    """The issue's reproduction. Before: 'skipped 1,000 ... deleted 1,500' and exit 0."""
    url, many = many
    inject(s3_proxy, [{"op": "ListObjectsV2", "query": PAGES_AFTER_THE_FIRST, "action": "reset"}])
    done = tiering("sync", url, str(tmp_path / "dstmany"), "--delete", *options_args("--src-option", s3_proxy.endpoint))
    assert done.returncode == EXIT_UNREACHABLE, (done.stdout, done.stderr)
    one_line_error(done, url, "listing")
    assert files_under(tmp_path / "dstmany") == many  # nothing deleted
    record(request, "sync --delete (2,500)", done, len(many))


def test_sync_delete_through_a_page_reset_once_deletes_nothing_it_should_keep(s3_proxy, tmp_path, many, request):
    url, many = many
    (tmp_path / "dstmany" / "extra.bin").write_bytes(b"only here")
    inject(s3_proxy, TRANSIENT["list-page-2-reset-once"])
    done = tiering("sync", url, str(tmp_path / "dstmany"), "--delete", "--json",
                   *options_args("--src-option", s3_proxy.endpoint))
    assert done.returncode == EXIT_OK, done.stderr
    assert files_under(tmp_path / "dstmany") == many  # the one extra file went, every listed one stayed
    assert s3_proxy.stats()["hits"] == [1]
    record(request, "sync --delete (2,500 + 1 extra)", done, len(many))


# -- archive, restore, run ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_archive_and_restore_through_transient_faults(s3_proxy, seaweed, tmp_path, url, fault, request):
    cfg = write_setup(tmp_path, s3_proxy.endpoint, url)
    data = make_tree(tmp_path / "hot", 24, size=3000)
    paths = [str(tmp_path / "hot" / name) for name in data]
    inject(s3_proxy, fault)
    archived = tiering("archive", "-c", str(cfg), *paths)
    assert archived.returncode == EXIT_OK, archived.stderr
    assert set(states(tmp_path).values()) == {"archived"}
    stored = stored_checksums(seaweed, url)
    assert {k: stored[k] for k in data} == {k: checksum_bytes(v) for k, v in data.items()}
    s3_proxy.clear()
    released = tiering("release", "-c", str(cfg), *paths)
    assert released.returncode == EXIT_OK, released.stderr
    inject(s3_proxy, fault)
    restored = tiering("restore", "-c", str(cfg), *paths)
    assert restored.returncode == EXIT_OK, restored.stderr
    assert files_under(tmp_path / "hot") == data
    record(request, "archive", archived, len(data))
    record(request, "release (proxy clear) + restore", restored, len(data))


@pytest.mark.parametrize("fault", PERSISTENT.values(), ids=PERSISTENT.keys())
def test_archive_restore_and_run_against_a_tier_that_stays_down(s3_proxy, tmp_path, url, fault, request):
    cfg = write_setup(tmp_path, s3_proxy.endpoint, url)
    data = make_tree(tmp_path / "hot", 6, size=3000)
    paths = [str(tmp_path / "hot" / name) for name in data]
    assert tiering("release", "-c", str(cfg), *paths[:3]).returncode == EXIT_OK  # three stubs to bring back
    inject(s3_proxy, fault)
    runs = []
    for verb, args in (("archive", paths[3:]), ("restore", paths[:3]), ("run", [])):
        done = tiering(verb, "-c", str(cfg), *args)
        assert done.returncode == EXIT_UNREACHABLE, (verb, done.returncode, done.stdout, done.stderr)
        one_line_error(done, url)
        runs.append((verb, done))
    s3_proxy.clear()
    assert tiering("restore", "-c", str(cfg), *paths[:3]).returncode == EXIT_OK
    assert files_under(tmp_path / "hot") == data  # nothing lost
    for verb, done in runs:  # verified: every file's bytes once the tier is back
        record(request, verb, done, len(data))


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_run_through_transient_faults_archives_everything_verified(s3_proxy, seaweed, tmp_path, url, fault, request):
    cfg = write_setup(tmp_path, s3_proxy.endpoint, url)
    data = make_tree(tmp_path / "hot", 30, size=2000)
    inject(s3_proxy, fault)
    done = tiering("run", "-c", str(cfg), "--json")
    assert done.returncode == EXIT_OK, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["actions"] == {"archive": {"done": len(data)}}
    stored = stored_checksums(seaweed, url)
    assert {k: stored[k] for k in data} == {k: checksum_bytes(v) for k, v in data.items()}
    record(request, "run", done, len(data))


# -- config check --probe ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", PERSISTENT.values(), ids=PERSISTENT.keys())
def test_probe_of_a_dead_endpoint_is_not_reachable_and_empty(s3_proxy, tmp_path, url, fault, request):
    """Before: 'probe cap: reachable, empty' and exit 0."""
    cfg = write_setup(tmp_path, s3_proxy.endpoint, url)
    inject(s3_proxy, fault)
    done = tiering("config", "check", str(cfg), "--probe")
    assert done.returncode == EXIT_UNREACHABLE, (done.stdout, done.stderr)
    assert "reachable" not in done.stdout
    one_line_error(done, url)
    record(request, "config check --probe", done, 0)


def test_probe_through_a_reset_once_answers(s3_proxy, tmp_path, url, request):
    cfg = write_setup(tmp_path, s3_proxy.endpoint, url)
    inject(s3_proxy, [{"op": "ListObjectsV2", "action": "reset", "times": 1}])
    done = tiering("config", "check", str(cfg), "--probe")
    assert done.returncode == EXIT_OK, done.stderr
    assert "probe cap: reachable, empty" in done.stdout
    record(request, "config check --probe", done, 0)
