"""The access guard: a plain open() of a released file gets exactly its bytes, or an error — never empty bytes.

Real parts only: the hot tier is a loop-mounted ext4 (and the SeaweedFS FUSE
mount in test_guard_fuse.py), the capacity tier SeaweedFS's S3 (through the
fault-injecting proxy where a test breaks it), the guard a real ``tiering
guard`` process, the readers real processes (cat, dd, Python, mmap, pyarrow).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import S3_KEY, S3_SECRET, is_root
from guard_setup import guarded_ext4, guarded_setup, read_in_process, sha

pytestmark = pytest.mark.skipif(not is_root(), reason="fanotify permission events need root")

PY_READ = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"
MMAP_READ = ("import mmap, sys; f = open(sys.argv[1], 'rb'); "
             "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); sys.stdout.buffer.write(m[:])")


def payload(n: int, seed: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n] if seed == 0 else os.urandom(n)


@pytest.fixture
def g(ext4_loop, tmp_path, seaweed):
    """A guarded hot tier on ext4 with an S3 tier on SeaweedFS; the guard is started by the test."""
    yield from guarded_ext4(ext4_loop, tmp_path, seaweed.endpoint)


@pytest.fixture
def gp(ext4_loop, tmp_path, s3_proxy):
    """As ``g``, with the S3 tier reached through the fault-injecting proxy, and a 3 s reader timeout."""
    setup = guarded_setup(ext4_loop / tmp_path.name, tmp_path, s3_proxy.endpoint, timeout="3s")
    yield setup
    s3_proxy.clear()
    setup.stop_guard()
    shutil.rmtree(setup.guard_dir, ignore_errors=True)
    shutil.rmtree(setup.hot, ignore_errors=True)


def catalog_state(g, name: str) -> str:
    conn = sqlite3.connect(g.config.parent / "state/catalog.db")
    try:
        return conn.execute("SELECT state FROM files WHERE path = ?", (name.encode(),)).fetchone()[0]
    finally:
        conn.close()


def ledger_restores(g, name: str) -> int:
    """How many restores of ``name`` the guard journaled in its ledger."""
    (ledger,) = g.guard_dir.glob("*.db")
    conn = sqlite3.connect(ledger)
    try:
        return conn.execute("SELECT count(*) FROM journal WHERE action = 'restore' AND path = ? "
                            "AND status = 'done' AND step = 'filling'", (name.encode(),)).fetchone()[0]
    finally:
        conn.close()


def test_every_kind_of_reader_gets_the_original_bytes(g):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": list(range(50_000)), "y": [f"row {i}" for i in range(50_000)]})
    pq.write_table(table, g.hot / "t.parquet")
    g.files["t.parquet"] = (g.hot / "t.parquet").read_bytes()
    g.write({"cat.bin": payload(64 * 1024, 1), "py.bin": payload(3 * 1024 * 1024 + 7, 1),
             "dd.bin": payload(200_003, 0), "mmap.bin": payload(1_000_000, 1), "dir/deep/odd name.bin": payload(999, 1)})
    g.release()
    g.start_guard()  # the guard finds the released files' directories in the catalog

    assert sha(read_in_process(["cat", str(g.hot / "cat.bin")]).stdout) == sha(g.files["cat.bin"])
    assert sha(read_in_process([sys.executable, "-c", PY_READ, str(g.hot / "py.bin")]).stdout) == sha(g.files["py.bin"])
    dd = read_in_process(["dd", f"if={g.hot / 'dd.bin'}", "bs=7", "skip=13", "count=5000", "status=none"])
    assert dd.stdout == g.files["dd.bin"][91:91 + 35000]
    assert sha(read_in_process([sys.executable, "-c", MMAP_READ, str(g.hot / "mmap.bin")]).stdout) == sha(g.files["mmap.bin"])
    assert read_in_process(["cat", str(g.hot / "dir/deep/odd name.bin")]).stdout == g.files["dir/deep/odd name.bin"]
    arrow = read_in_process([sys.executable, "-c", "import pyarrow.parquet as pq, sys; "
                             "t = pq.read_table(sys.argv[1]); print(t.num_rows, sum(t.column('x').to_pylist()))",
                             str(g.hot / "t.parquet")])
    assert arrow.stdout.split() == [b"50000", str(sum(range(50_000))).encode()], arrow.stderr
    for name, data in g.files.items():  # and on disk, for everyone after
        assert sha((g.hot / name).read_bytes()) == sha(data), name
    deadline = time.monotonic() + 10  # the worker's counts reach the status every 2 s
    while "6 restored for readers, 0 opens failed" not in (out := g.tiering("status").stdout):
        assert time.monotonic() < deadline, out
        time.sleep(0.3)
    assert "guard: active" in out


def test_four_readers_of_one_stub_wait_on_one_restore(g):
    g.write({"one.bin": payload(8 * 1024 * 1024, 1)})
    g.release()
    g.start_guard()
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: read_in_process(["cat", str(g.hot / "one.bin")]), range(4)))
    assert [sha(o.stdout) for o in outs] == [sha(g.files["one.bin"])] * 4
    assert ledger_restores(g, "one.bin") == 1


def test_a_hundred_stubs_read_by_four_processes(g):
    g.write({f"d{i % 5}/f{i:03d}.bin": payload(1000 + 37 * i, 1) for i in range(100)})
    g.release()
    g.start_guard()
    names = sorted(g.files)
    script = ("import sys, hashlib\nfor p in sys.argv[1:]:\n"
              "    print(hashlib.sha256(open(p, 'rb').read()).hexdigest())")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda part: read_in_process([sys.executable, "-c", script,
                                                           *[str(g.hot / n) for n in part]], timeout=120),
                             [names[i::4] for i in range(4)]))
    got = [line for out in outs for line in out.stdout.decode().split()]
    want = [sha(g.files[n]) for part in [names[i::4] for i in range(4)] for n in part]
    assert got == want


def test_a_release_while_the_guard_runs_is_watched_and_handed_to_the_catalog(g):
    g.write({"later/a.bin": payload(70_000, 1)})
    g.start_guard()  # nothing released yet: nothing watched
    g.release()  # the release announces the directory to the guard before truncating
    assert read_in_process(["cat", str(g.hot / "later/a.bin")]).stdout == g.files["later/a.bin"]
    assert catalog_state(g, "later/a.bin") == "released"  # the guard never writes the catalog
    done = g.tiering("status")  # a reading verb: the catalog is not applied yet
    assert done.returncode == 0
    recovered = g.tiering("recover")  # the next writer applies the guard's restores
    assert recovered.returncode == 0, recovered.stderr
    assert catalog_state(g, "later/a.bin") == "archived"


def test_a_restore_by_tiering_restore_is_not_held_by_the_guard(g):
    g.write({"r.bin": payload(300_000, 1)})
    g.release()
    g.start_guard()
    done = g.tiering("restore", str(g.hot / "r.bin"), timeout=60)
    assert done.returncode == 0, done.stderr
    assert (g.hot / "r.bin").read_bytes() == g.files["r.bin"]


@pytest.mark.parametrize("fault", ["deleted", "corrupted", "down", "slow"])
def test_a_failed_restore_fails_the_reader_never_empty_bytes(gp, s3_proxy, seaweed, fault):
    from tiering.stores import open_store

    gp.write({"x.bin": payload(50_000, 1)})
    gp.release()
    gp.start_guard()
    url = [line.split('"')[1] for line in gp.config.read_text().splitlines() if line.startswith("url")][0]
    store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
    try:
        if fault == "deleted":
            store.delete("x.bin")
        elif fault == "corrupted":
            import obstore

            attrs = dict(obstore.get(store._obs, store._name("x.bin"), options={"head": True}).attributes)
            obstore.put(store._obs, store._name("x.bin"), payload(50_000, 0), attributes=attrs, use_multipart=False)
        elif fault == "down":
            s3_proxy.refuse()
        else:
            s3_proxy.rules({"op": "GetObject", "action": "stall", "seconds": 8})
    finally:
        store.close()
    started = time.monotonic()
    out = read_in_process(["cat", str(gp.hot / "x.bin")], timeout=60)
    assert out.returncode != 0 and out.stdout == b"", (out.returncode, out.stdout[:50])
    assert b"Input/output error" in out.stderr or b"Operation not permitted" in out.stderr, out.stderr
    if fault == "slow":
        assert time.monotonic() - started < 7  # the [guard] timeout (3 s), not the stall
    assert (gp.hot / "x.bin").stat().st_size == 0  # still a stub
    s3_proxy.clear()
    if fault in ("down", "slow"):  # the tier is back: the next open gets the bytes
        deadline = time.monotonic() + 20
        while (again := read_in_process(["cat", str(gp.hot / "x.bin")])).returncode and time.monotonic() < deadline:
            time.sleep(0.5)
        assert again.stdout == gp.files["x.bin"]


def test_kill9_of_the_worker_mid_restore_leaves_the_reader_waiting_then_served(gp, s3_proxy):
    gp.write({"k.bin": payload(2_000_000, 1)})
    gp.release()
    gp.start_guard()
    s3_proxy.rules({"op": "GetObject", "action": "stall", "seconds": 2.5, "times": 1})
    reader = subprocess.Popen(["cat", str(gp.hot / "k.bin")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # the worker is inside the restore, the stalled GET
        worker = gp.status()["worker"]
        os.kill(worker, signal.SIGKILL)
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    # Never wrong or empty bytes: either the whole file (the new worker restored it) or an error.
    assert (reader.returncode == 0 and out == gp.files["k.bin"]) or (reader.returncode != 0 and out == b""), err
    assert reader.returncode == 0, err  # and here, with the keeper holding the group, the reader is served
    st = gp.wait_ready(not_worker=worker)
    assert st["restarts"] == 1
    assert (gp.hot / "k.bin").read_bytes() == gp.files["k.bin"]


def test_status_says_inactive_the_moment_the_guard_dies(g):
    g.write({"s.bin": b"x" * 5000})
    g.release()
    g.start_guard()
    assert "guard: active" in g.tiering("status").stdout
    worker = g.status()["worker"]
    g.proc.send_signal(signal.SIGKILL)  # the keeper: its worker goes on serving, and status says so
    g.proc.wait()
    assert "guard: active" in g.tiering("status").stdout
    assert read_in_process(["cat", str(g.hot / "s.bin")]).stdout == g.files["s.bin"]
    os.kill(worker, signal.SIGKILL)  # now nothing holds the group
    deadline = time.monotonic() + 10
    while "guard: inactive" not in (out := g.tiering("status").stdout) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "guard: inactive" in out


def test_a_second_guard_on_the_same_host_is_refused(g):
    g.start_guard()
    second = g.tiering("guard", timeout=30)
    assert second.returncode == 4, second.stderr
    assert second.stderr.count("\n") == 1 and "already serves" in second.stderr


def test_without_root_the_guard_says_why_in_one_line(g, tmp_path):
    os.chmod(tmp_path, 0o755)  # nobody may read the config
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                           "tiering", "guard", "-c", str(g.config)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=g.config.parent)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "root" in done.stderr, done.stderr


def test_an_archived_object_fails_the_open_at_once_then_reads_once_back(ext4_loop, tmp_path, oss_server):
    from conftest import OSS_BUCKET, OSS_KEY

    tier = (f'url = "oss://{OSS_BUCKET}/guard-{tmp_path.name}-{time.time_ns() % 10**8}"\nendpoint = "{oss_server.endpoint}"\n'
            f'access_key_id = "{OSS_KEY}"\naccess_key_secret = "${{TEST_OSS_SECRET}}"\nstorage_class = "Archive"\n')
    g = guarded_setup(ext4_loop / tmp_path.name, tmp_path, "", tier=tier)
    try:
        g.write({"cold.bin": payload(40_000, 1)})
        g.release()
        g.start_guard()
        started = time.monotonic()
        first = read_in_process(["cat", str(g.hot / "cold.bin")])
        assert first.returncode != 0 and first.stdout == b"" and time.monotonic() - started < 10, first.stderr
        status = g.tiering("status", str(g.hot / "cold.bin"))
        assert "restoring object, requested at" in status.stdout, status.stdout
        deadline = time.monotonic() + 20  # the test server makes an object readable 1 s after its restore
        while (again := read_in_process(["cat", str(g.hot / "cold.bin")])).returncode and time.monotonic() < deadline:
            time.sleep(0.5)
        assert again.stdout == g.files["cold.bin"]
    finally:
        g.stop_guard()
        shutil.rmtree(g.guard_dir, ignore_errors=True)


def test_every_open_on_the_node_counts_as_heat(g):
    g.write({"warm/read.bin": b"r" * 3000, "warm/mapped.bin": b"m" * 3000, "warm/untouched.bin": b"u" * 3000,
             "stub.bin": b"s" * 3000})
    g.release("stub.bin")
    g.start_guard()
    assert "heat from every open" in g.tiering("status").stdout
    assert read_in_process(["cat", str(g.hot / "warm/read.bin")]).returncode == 0
    assert read_in_process([sys.executable, "-c", MMAP_READ, str(g.hot / "warm/mapped.bin")]).returncode == 0
    time.sleep(3)  # the guard's heat log is written every 2 s
    assert g.tiering("recover").returncode == 0  # the catalog's next writer takes the heat log
    conn = sqlite3.connect(g.config.parent / "state/catalog.db")
    try:
        heat = {bytes(p).decode(): h for p, h in conn.execute("SELECT path, heat FROM files")}
    finally:
        conn.close()
    assert heat.get("warm/read.bin", 0) >= 1 and heat.get("warm/mapped.bin", 0) >= 1, heat
    assert heat.get("warm/untouched.bin", 0) == 0, heat


def test_a_file_with_bytes_and_a_stale_stub_mark_is_read_as_it_is(g):
    """A release that failed between marking and truncating leaves a mark on a whole file: never denied."""
    g.write({"m/stub.bin": b"s" * 4000, "m/whole.bin": b"w" * 4000})
    g.release("m/stub.bin")  # the folder is watched
    os.setxattr(g.hot / "m/whole.bin", "user.tiering.stub", b"released 4000 cap blake3:0123456789abcdef")
    g.start_guard()
    out = read_in_process(["cat", str(g.hot / "m/whole.bin")])
    assert (out.returncode, out.stdout) == (0, b"w" * 4000), out.stderr


def test_opening_a_stub_restores_the_ones_after_it_in_its_folder(g):
    g.write({f"shard/{i:02d}.bin": payload(20_000 + i, 1) for i in range(8)} | {"shard/other/x.bin": b"x" * 100})
    g.release()
    g.start_guard()  # [guard] read_ahead: 16 by default
    assert read_in_process(["cat", str(g.hot / "shard/03.bin")]).stdout == g.files["shard/03.bin"]
    deadline = time.monotonic() + 20
    while any((g.hot / f"shard/{i:02d}.bin").stat().st_size == 0 for i in range(4, 8)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for i in range(8):  # the ones after it came back unasked, verified; the ones before it, and other folders, did not
        data = (g.hot / f"shard/{i:02d}.bin").read_bytes() if i >= 3 else None
        assert data == g.files[f"shard/{i:02d}.bin"] if i >= 3 else (g.hot / f"shard/{i:02d}.bin").stat().st_size == 0
    assert (g.hot / "shard/other/x.bin").stat().st_size == 0
