"""``tiering migrate`` / ``sync`` on real files, a real SeaweedFS, the OSS test server and a Dask LocalCluster."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import OSS_BUCKET, OSS_KEY, OSS_SECRET, S3_BUCKET, S3_KEY, S3_SECRET, is_root

from tiering.core.errors import FatalError
from tiering.migrate import Filter, Job, migrate, resolve
from tiering.migrate.listing import Entry, join
from tiering.migrate.request import make_job
from tiering.stores import open_store
from tiering.stores.checksum import checksum_bytes

MTIME = 1_600_000_000_123_456_789
NAMES = ["a.txt", "a b/ünï.txt", "deep/er/x.bin", "deep/er/y.jpg", "z/new\nline.dat", "big.bin"]


def tree(root: Path, names=NAMES, size: int = 3000) -> dict[str, bytes]:
    """Files with distinct contents, mode 0640 and a fixed mtime; returns relpath -> bytes."""
    data = {}
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = os.urandom(size * (40 if name == "big.bin" else 1) + i)
        path.write_bytes(body)
        os.chmod(path, 0o640)
        if is_root():
            os.chown(path, 1234, 5678)
        os.utime(path, ns=(MTIME, MTIME + i))
        data[name] = body
    return data


def s3_opts(server) -> dict[str, str]:
    return {"endpoint": server.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET,
            "part_size": "5MiB", "multipart_threshold": "5MiB"}


def job(src, dst, src_opts=None, dst_opts=None, **kw) -> Job:
    return Job(resolve(str(src), src_opts or {}), resolve(str(dst), dst_opts or {}, side="destination"), **kw)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiering", *args], capture_output=True, text=True,
                          env=env or os.environ, **kw)


@pytest.fixture
def prefix(request) -> str:
    return f"mig-{request.node.name[:30].replace('[', '-').replace(']', '')}-{os.getpid()}-{time.time_ns() % 10**6}"


# -- round trips -----------------------------------------------------------------


def test_local_s3_local_round_trip_keeps_bytes_and_metadata(tmp_path, seaweed, prefix):
    src, back, url = tmp_path / "src", tmp_path / "back", f"s3://{S3_BUCKET}/{prefix}"
    data = tree(src)
    up = migrate(job(src, url, dst_opts=s3_opts(seaweed)), jobs=4)
    assert (up.copied, up.failed) == (len(data), 0)
    store = open_store(url, {k: v for k, v in s3_opts(seaweed).items() if "size" not in k and "threshold" not in k})
    info = store.head("a b/ünï.txt")
    assert info.meta.checksum == checksum_bytes(data["a b/ünï.txt"]) and info.meta.mode & 0o777 == 0o640
    down = migrate(job(url, back, src_opts=s3_opts(seaweed)), jobs=4)
    assert (down.copied, down.failed) == (len(data), 0)
    assert files_under(back) == data
    for i, name in enumerate(NAMES):
        st = os.stat(back / name)
        assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, MTIME + i)
        if is_root():
            assert (st.st_uid, st.st_gid) == (1234, 5678)
    again = [migrate(job(src, url, dst_opts=s3_opts(seaweed))), migrate(job(url, back, src_opts=s3_opts(seaweed)))]
    assert [(r.copied, r.skipped) for r in again] == [(0, len(data))] * 2
    assert not (back / ".tiering").exists()


def test_s3_to_s3_and_local_to_oss(tmp_path, seaweed, oss_server, prefix):
    src = tmp_path / "src"
    data = tree(src, NAMES[:4])
    a, b = f"s3://{S3_BUCKET}/{prefix}/a", f"s3://{S3_BUCKET}/{prefix}/b"
    migrate(job(src, a, dst_opts=s3_opts(seaweed)))
    r = migrate(job(a, b, s3_opts(seaweed), s3_opts(seaweed)))
    assert (r.copied, r.failed) == (4, 0)
    head = open_store(b, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY,
                          "secret_access_key": S3_SECRET}).head("deep/er/x.bin")
    assert head.meta.checksum == checksum_bytes(data["deep/er/x.bin"]) and head.meta.mtime_ns == MTIME + 2
    oss = {"endpoint": oss_server.endpoint, "access_key_id": OSS_KEY, "access_key_secret": OSS_SECRET,
           "checkpoint_dir": str(tmp_path / "ckpt")}
    url = f"oss://{OSS_BUCKET}/{prefix}"
    assert migrate(job(src, url, dst_opts=oss)).copied == 4
    assert migrate(job(url, tmp_path / "back", src_opts=oss)).copied == 4
    assert files_under(tmp_path / "back") == data


def test_local_to_local_copies_verified_and_resumes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = tree(src)
    assert migrate(job(src, dst)).copied == len(data)
    assert files_under(dst) == data
    (src / "a.txt").write_bytes(b"changed")
    r = migrate(job(src, dst))
    assert (r.copied, r.skipped) == (1, len(data) - 1)
    assert (dst / "a.txt").read_bytes() == b"changed"


# -- choosing files ----------------------------------------------------------------


def test_filters_by_glob_size_and_age(tmp_path):
    src = tmp_path / "src"
    tree(src)
    now = time.time_ns()
    os.utime(src / "a.txt", ns=(now, now))  # young; the others are from 2020
    cases = {
        Filter(include=("*.jpg", "*.txt")): {"a.txt", "a b/ünï.txt", "deep/er/y.jpg"},
        Filter(exclude=("deep/",)): {"a.txt", "a b/ünï.txt", "z/new\nline.dat", "big.bin"},
        Filter(min_size=10_000): {"big.bin"},
        Filter(max_size=3001): {"a.txt", "a b/ünï.txt"},
        Filter(max_age=3600.0, now_ns=now): {"a.txt"},
        Filter(min_age=3600.0, now_ns=now, exclude=("*.bin",)): {"a b/ünï.txt", "deep/er/y.jpg", "z/new\nline.dat"},
    }
    for i, (filt, expected) in enumerate(cases.items()):
        dst = tmp_path / f"dst{i}"
        r = migrate(job(src, dst, filter=filt))
        assert set(files_under(dst)) == expected, filt
        assert (r.copied, r.excluded) == (len(expected), len(NAMES) - len(expected))


def test_dry_run_changes_nothing(tmp_path, seaweed, prefix):
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src)
    seen = []
    r = migrate(job(src, url, dst_opts=s3_opts(seaweed), dry_run=True), on_item=seen.append)
    assert r.copied == len(NAMES) and len(seen) == len(NAMES)
    store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
    assert list(store.list()) == []
    migrate(job(src, tmp_path / "dst", dry_run=True))
    assert not (tmp_path / "dst").exists()
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "extra").write_text("x")
    out = cli("sync", str(src), str(tmp_path / "dst"), "--delete", "--dry-run")
    assert out.returncode == 0 and "would delete extra" in out.stdout and "would copy a.txt" in out.stdout
    assert files_under(tmp_path / "dst") == {"extra": b"x"}


def test_checksum_finds_same_size_same_mtime_changes(tmp_path, seaweed, prefix):
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src, ["f1", "f2"])
    migrate(job(src, url, dst_opts=s3_opts(seaweed)))
    st = os.stat(src / "f1")
    body = os.urandom(st.st_size)
    (src / "f1").write_bytes(body)
    os.utime(src / "f1", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert migrate(job(src, url, dst_opts=s3_opts(seaweed))).copied == 0  # size + mtime cannot tell
    r = migrate(job(src, url, dst_opts=s3_opts(seaweed), checksum=True))
    assert (r.copied, r.skipped) == (1, 1)
    store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
    assert store.head("f1").checksum == checksum_bytes(body)


# -- interruption ----------------------------------------------------------------------


@pytest.mark.parametrize("to", ["s3", "local"])
def test_sigkill_mid_run_leaves_nothing_partial_and_rerun_finishes(tmp_path, seaweed, prefix, to):
    src = tmp_path / "src"
    data = tree(src, [f"d{i % 7}/f{i:04d}" for i in range(300)], size=20_000)
    opts = [f"--dst-option={k}={v}" for k, v in s3_opts(seaweed).items()] if to == "s3" else []
    dst = f"s3://{S3_BUCKET}/{prefix}" if to == "s3" else str(tmp_path / "dst")
    args = ["migrate", str(src), dst, *opts, "--jobs", "4"]
    proc = subprocess.Popen([sys.executable, "-m", "tiering", *args, "--bwlimit", "2MiB"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = settled(lambda: published(dst, seaweed, data))
    assert 0 < len(visible) < len(data)  # it was killed mid-run, and what is visible is whole
    out = cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    assert '"skipped": %d' % len(visible) in out.stdout
    assert published(dst, seaweed, data) == set(data)
    if to == "local":
        assert not (tmp_path / "dst" / ".tiering").exists()  # the killed run's temp files are gone


def settled(look, quiet: float = 1.0, timeout: float = 30.0):
    """``look()`` once it has given the same answer for ``quiet`` seconds: a PUT the server had whole when
    its client was killed may still be published a moment later."""
    deadline = time.monotonic() + timeout
    last, since = look(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        now = look()
        if now != last:
            last, since = now, time.monotonic()
    return last


def published(dst: str, server, data: dict[str, bytes]) -> set[str]:
    """Names visible at the destination, each checked to hold exactly the source's bytes."""
    if dst.startswith("s3://"):
        store = open_store(dst, {"endpoint": server.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
        seen = {info.key: store.head(info.key) for info in store.list()}
        assert all(info.meta.checksum == checksum_bytes(data[key]) for key, info in seen.items())
        return set(seen)
    found = files_under(Path(dst))
    found = {k: v for k, v in found.items() if not k.startswith(".tiering/")}
    assert all(body == data[name] for name, body in found.items())
    return set(found)


# -- sync --delete -----------------------------------------------------------------------


def test_sync_delete_removes_extras_but_never_after_errors(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src, ["keep.txt", "sub/b.txt", "conflict"])
    migrate(job(src, dst))
    (dst / "extra.txt").write_text("x")
    (dst / "old").mkdir()
    (dst / "old" / "gone.txt").write_text("x")
    (dst / "protected.log").write_text("x")
    r = migrate(job(src, dst, filter=Filter(exclude=("*.log",))), delete=True)
    assert (r.deleted, r.failed) == (2, 0)
    assert set(files_under(dst)) == {"keep.txt", "sub/b.txt", "conflict", "protected.log"}
    assert not (dst / "old").exists()
    # An error (a folder where the source has a file) means nothing is deleted.
    (dst / "extra.txt").write_text("x")
    (dst / "conflict").unlink()
    (dst / "conflict").mkdir()
    (dst / "conflict" / "inside").write_text("x")
    out = cli("sync", str(src), str(dst), "--delete")
    assert out.returncode == 1
    assert "failed: copy conflict" in out.stderr and "not deleting 3 files" in out.stderr
    assert (dst / "extra.txt").exists() and (dst / "conflict" / "inside").exists()


def test_sync_delete_refuses_an_empty_source(tmp_path):
    (tmp_path / "src").mkdir()
    tree(tmp_path / "dst", ["a", "b"])
    r = migrate(job(tmp_path / "src", tmp_path / "dst"), delete=True)
    assert r.deleted == 0 and "source has no files" in r.not_deleted
    assert set(files_under(tmp_path / "dst")) == {"a", "b"}


# -- bad input ------------------------------------------------------------------------------


def _drop_dac() -> None:
    """In the child: lose root's power to read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file_fails_alone(tmp_path, seaweed, prefix):
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src, ["ok1", "secret", "ok2"])
    for name in ("ok1", "secret", "ok2"):
        os.chown(src / name, os.getuid(), os.getgid())  # ours, so only "secret" is unreadable
    os.chmod(src / "secret", 0)
    opts = [f"--dst-option={k}={v}" for k, v in s3_opts(seaweed).items()]
    out = subprocess.run([sys.executable, "-m", "tiering", "migrate", str(src), url, *opts], capture_output=True,
                         text=True, preexec_fn=_drop_dac if is_root() else None)
    assert out.returncode == 1
    assert [line for line in out.stderr.splitlines() if line.startswith("failed:")] == [
        f"failed: copy secret: {src / 'secret'}: Permission denied"]
    store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
    assert [i.key for i in store.list()] == ["ok1", "ok2"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    tree(src, ["f"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OSS_"))}
    cases = {
        (str(src), str(src)): "source and destination are the same",
        (str(src), str(src / "inner")): "is inside the source",
        (str(src / "sub"), str(src)): "is inside the destination",
        (str(src), "ftp://host/x"): "unknown URL scheme 'ftp'",
        (str(src), "s3://bucket/x"): "no credentials",
        (str(tmp_path / "nope"), str(tmp_path / "out")): "no such folder",
    }
    for (a, b), message in cases.items():
        out = cli("migrate", a, b, env=env)
        assert (out.returncode, out.stdout) == (2, ""), (a, b, out.stderr)
        assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert set(files_under(src)) == {"f"} and not (tmp_path / "out").exists()


def test_join_refuses_listings_out_of_order():
    src = iter([Entry("b", 1), Entry("a", 1)])
    with pytest.raises(FatalError, match="key order"):
        list(join(src, iter([])))


def test_bwlimit_holds_the_rate(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(4):
        (tmp_path / "src" / f"f{i}").write_bytes(os.urandom(512 * 1024))
    start = time.monotonic()
    migrate(make_job(str(tmp_path / "src"), str(tmp_path / "dst"), bwlimit="1MiB"), jobs=4)
    assert time.monotonic() - start >= 0.9  # 2 MiB at 1 MiB/s with a one-second burst


# -- Dask ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_address():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2, dashboard_address=None,
                                  silence_logs=40) as cluster:
        yield cluster.scheduler_address.replace("tcp://", "dask://")


def test_dask_cluster_gives_the_same_result_as_threads(tmp_path, seaweed, prefix, dask_address):
    from tiering.mover.distributed import open_executor

    src = tmp_path / "src"
    tree(src, [f"d{i % 13}/f{i:05d}" for i in range(3000)], size=512)
    results = {}
    for name in ("threads", dask_address):
        url = f"s3://{S3_BUCKET}/{prefix}/{'dask' if 'dask' in name else name}"
        executor = open_executor(name)
        try:
            r = migrate(job(src, url, dst_opts=s3_opts(seaweed)), jobs=8, executor=executor)
        finally:
            executor.close()
        store = open_store(url, {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})
        results[name] = ((r.copied, r.failed, r.bytes), [(i.key, i.size, i.etag) for i in store.list()])
    assert results["threads"] == results[dask_address]
    assert results["threads"][0] == (3000, 0, sum(512 + i for i in range(3000)))


def test_dask_offloads_mover_transfers(tmp_path, dask_address):
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.distributed import open_executor
    from tiering.mover.executor import Task, execute
    from tiering.mover.ops import Mover

    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    cfg = tmp_path / "tiering.toml"
    cfg.write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n[tiers.cap]\nurl = "cap"\n')
    tree(tmp_path / "hot", ["a", "b/c"])
    config = load_config(cfg)
    catalog = Catalog.open(config.catalog_path, writer=True)
    mover, executor = Mover(config, catalog), open_executor(dask_address)
    try:
        result = execute(mover, [Task(b"a", "archive"), Task(b"b/c", "archive")], jobs=2, executor=executor)
        assert (result.failed, result.bytes_moved) == (0, 3001 + 3000)
        assert catalog.get(b"b/c").state == "archived"
    finally:
        executor.close()
        mover.close()
        catalog.close()
    assert set(files_under(tmp_path / "cap")) >= {"a", "b/c"}


def test_a_destination_folder_removed_mid_run_is_made_again(tmp_path):
    """Folders are made once per run and remembered; one deleted behind our back comes back on the next file."""
    from tiering.migrate.localtree import LocalTree
    from tiering.stores.base import FileMeta

    tree = LocalTree(tmp_path / "dst")
    tree.prepare()
    for name in ("a/b/one", "a/b/two"):
        tmp = tree.temp_path()
        tmp.write_bytes(name.encode())
        tree.commit(tmp, name, FileMeta(len(name), time.time_ns(), 0o100640, os.getuid(), os.getgid(), name))
        if name.endswith("one"):
            shutil.rmtree(tmp_path / "dst" / "a")
    assert (tmp_path / "dst" / "a" / "b" / "two").read_bytes() == b"a/b/two"
    assert not (tmp_path / "dst" / "a" / "b" / "one").exists()
    assert oct((tmp_path / "dst" / "a" / "b" / "two").stat().st_mode & 0o777) == "0o640"
