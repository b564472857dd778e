"""``migrate``/``sync`` when things go wrong: listings cut short, signals, odd keys, symlinks in the destination.

Real parts only: real folders that cannot be read (a child process without
root's power to bypass permissions), a real posix tier, the session's
SeaweedFS, real subprocesses and real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import S3_BUCKET, S3_KEY, S3_SECRET, is_root, write_config
from test_migrate import _drop_dac, files_under, job, s3_opts, tree

from tiering.core.errors import PathError
from tiering.migrate import migrate
from tiering.migrate.localtree import LocalTree
from tiering.stores import open_store

needs_root = pytest.mark.skipif(not is_root(), reason="making a folder unreadable to root needs root to drop caps")


@pytest.fixture
def prefix(request) -> str:
    return f"safe-{request.node.name[:30].replace('[', '-').replace(']', '')}-{os.getpid()}-{time.time_ns() % 10**6}"


def run_cli(*args: str, drop_dac: bool = False, **kw) -> subprocess.CompletedProcess:
    """``tiering ARGS`` in a child; with ``drop_dac``, one that cannot read past permissions even as root."""
    return subprocess.run([sys.executable, "-m", "tiering", *args], capture_output=True, text=True,
                          preexec_fn=_drop_dac if drop_dac and is_root() else None, **kw)


def summary_of(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


def s3_args(server, side: str = "dst") -> list[str]:
    return [f"--{side}-option={k}={v}" for k, v in s3_opts(server).items()]


def s3(url: str, server):
    return open_store(url, {"endpoint": server.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET})


# -- 15.1: sync --delete deletes nothing unless both listings completed ---------------------------------------


@needs_root
def test_unreadable_source_folder_means_no_deletes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src, ["a", "sub/b", "sub/c", "z"])
    migrate(job(src, dst))
    (dst / "extra").write_text("only at the destination")
    os.chmod(src / "sub", 0)
    out = run_cli("sync", str(src), str(dst), "--delete", "--json", drop_dac=True)
    assert out.returncode == 1, out.stderr
    s = summary_of(out)
    assert s["deleted"] == 0 and s["not_deleted"].startswith("not deleting any files at the destination: the "
                                                              "source listing did not complete (sub/: cannot list")
    assert set(files_under(dst)) == {"a", "sub/b", "sub/c", "z", "extra"}  # sub/* look destination-only: kept


@needs_root
def test_unreadable_destination_folder_means_no_deletes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src, ["a", "z"])
    tree(dst, ["a", "extra", "sub/hidden"])
    os.chmod(dst / "sub", 0)
    out = run_cli("sync", str(src), str(dst), "--delete", "--json", drop_dac=True)
    os.chmod(dst / "sub", 0o755)
    assert out.returncode == 1, out.stderr
    assert "the destination listing did not complete" in summary_of(out)["not_deleted"]
    assert (dst / "extra").exists() and (dst / "sub" / "hidden").exists()


@needs_root
def test_store_listing_that_raises_stops_the_run_and_deletes_nothing(tmp_path):
    """A posix tier whose listing raises part-way: one summary, a nonzero exit, the destination untouched."""
    cfg = write_config(tmp_path, 'url = "capacity"')
    (tmp_path / "capacity").mkdir()
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src, ["a", "m/b", "m/c", "z"])
    assert run_cli("migrate", str(src), "cap", "-c", str(cfg)).returncode == 0
    migrate(job(src, dst))
    (dst / "extra").write_text("x")
    os.chmod(tmp_path / "capacity" / "m", 0)
    out = run_cli("sync", "cap", str(dst), "--delete", "--json", "-c", str(cfg), drop_dac=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    s = summary_of(out)
    assert s["deleted"] == 0 and "the source listing did not complete" in s["not_deleted"]
    stops = [line for line in out.stderr.splitlines() if line.startswith("tiering: stopped")]
    assert len(stops) == 1 and "the source listing failed" in stops[0], out.stderr  # said once, by the stop line
    assert set(files_under(dst)) == {"a", "m/b", "m/c", "z", "extra"}


@pytest.fixture(scope="module")
def own_seaweed(tmp_path_factory):
    """A SeaweedFS of this module's own, to kill mid-listing without disturbing the session's."""
    from bench.peers.seaweed import SeaweedServer

    server = SeaweedServer(tmp_path_factory.mktemp("own-seaweed"), S3_KEY, S3_SECRET, (S3_BUCKET,))
    server.start()
    yield server
    server.stop()


def test_a_store_listing_killed_after_its_first_page_deletes_nothing(tmp_path, own_seaweed):
    """1,010 objects list in two pages; the server dies after the first. The files of the second page that the
    destination holds (in other sizes, so no request is needed to decide) must not be taken for extras."""
    import asyncio
    import dataclasses

    import obstore
    from conftest import FAST_RETRY
    from obstore.store import S3Store

    from tiering.migrate import resolve
    from tiering.migrate.transfer import Job

    names = [f"k{i:04d}" for i in range(1010)]
    client = S3Store(S3_BUCKET, endpoint=own_seaweed.endpoint, access_key_id=S3_KEY, secret_access_key=S3_SECRET,
                     region="us-east-1", client_options={"allow_http": True})

    async def put_all() -> None:
        for i in range(0, len(names), 100):
            await asyncio.gather(*(obstore.put_async(client, f"two-pages/{n}", b"v1") for n in names[i:i + 100]))

    asyncio.run(put_all())
    dst = tmp_path / "dst"
    tree(dst, names[1000:])  # the second page's names, other sizes: "size differs", never "not in the source"
    src = dataclasses.replace(resolve(f"s3://{S3_BUCKET}/two-pages", s3_opts(own_seaweed)), retry=FAST_RETRY)
    seen = []

    def on_item(item) -> None:
        if not seen:
            own_seaweed.kill()  # the first page is listed; the second is yet to be asked for
        seen.append(item)

    try:
        r = migrate(Job(src, resolve(str(dst), {}, side="destination"), dry_run=True), delete=True, on_item=on_item)
    finally:
        own_seaweed.start()
    assert r.exit_status == 3 and r.deleted == 0, r.summary()
    assert "the source listing did not complete" in r.not_deleted and "source listing failed" in r.failures[-1].reason
    assert not [item for item in seen if item.action == "delete"]
    assert set(files_under(dst)) == set(names[1000:])


@needs_root
def test_sync_to_s3_keeps_every_object_when_the_source_listing_is_incomplete(tmp_path, seaweed, prefix):
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src, ["a", "sub/b", "z"])
    migrate(job(src, url, dst_opts=s3_opts(seaweed)))
    os.chmod(src / "sub", 0)
    out = run_cli("sync", str(src), url, "--delete", "--json", *s3_args(seaweed), drop_dac=True)
    assert out.returncode == 1, out.stderr
    assert "the source listing did not complete" in summary_of(out)["not_deleted"]
    assert [i.key for i in s3(url, seaweed).list()] == ["a", "sub/b", "z"]


# -- 16.4: a key that cannot be a local name fails alone ---------------------------------------------------------


def put_raw(server, name: str, body: bytes) -> None:
    """PUT one object under its exact ``name`` with the project's own signed S3 client (obstore refuses some)."""
    import http.client

    from tiering.stores.s3_http import S3Endpoint
    from tiering.stores.sigv4 import S3Credentials

    endpoint = S3Endpoint(server.endpoint, S3_BUCKET, S3Credentials(S3_KEY, S3_SECRET, None, "us-east-1"),
                          virtual_hosted=False)
    path, headers = endpoint.signed("PUT", name, {"content-length": str(len(body))}, body=True)
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.read()
    finally:
        conn.close()


ODD_KEYS = ["d%zz", "%41", ".tiering/x", "n" * 300 + "/f"]  # not canonical (2), reserved, a name too long


def test_keys_that_cannot_be_local_names_fail_alone(tmp_path, seaweed, prefix):
    url = f"s3://{S3_BUCKET}/{prefix}"
    for key in ["a", *ODD_KEYS, "z"]:
        put_raw(seaweed, f"{prefix}/{key}", key.encode())
    out = run_cli("migrate", url, str(tmp_path / "dst"), "--json", *s3_args(seaweed, "src"))
    assert out.returncode == 1, out.stderr
    failed = sorted(line.split(":", 2)[1].strip() for line in out.stderr.splitlines() if line.startswith("failed:"))
    assert failed == sorted(f"copy {k}" for k in ODD_KEYS)
    assert (summary_of(out)["copied"], summary_of(out)["failed"]) == (2, len(ODD_KEYS))
    assert files_under(tmp_path / "dst") == {"a": b"a", "z": b"z"}


# -- 16.2: never through a symlink ------------------------------------------------------------------------------


@pytest.fixture(params=["openat2", "openat-walk"])
def resolver(request, monkeypatch):
    """Both ways of reaching a folder: openat2 (where the kernel has it) and the O_NOFOLLOW walk."""
    from tiering.migrate import beneath

    if request.param == "openat-walk":
        monkeypatch.setattr(beneath._openat2, "available", False)
    elif not beneath._openat2.available:
        pytest.skip("no openat2 here")
    return request.param


def test_a_symlinked_destination_folder_is_never_written_through(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    tree(src, ["a", "sub/f", "sub/deeper/g", "z"])
    outside.mkdir()
    dst.mkdir()
    (dst / "sub").symlink_to(outside)
    out = run_cli("migrate", str(src), str(dst), "--json")
    assert out.returncode == 1, out.stderr
    failures = [line for line in out.stderr.splitlines() if line.startswith("failed:")]
    assert sorted(failures) == [f"failed: copy {k}: {dst / 'sub'} is a symlink: nothing is written through it "
                                f"(it could lead outside {dst})" for k in ("sub/deeper/g", "sub/f")]
    assert list(outside.iterdir()) == []
    assert (dst / "a").read_bytes() == (src / "a").read_bytes() and (dst / "sub").is_symlink()


def test_a_symlink_deeper_down_and_a_symlinked_temp_folder_are_refused_too(tmp_path, resolver):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    tree(src, ["a/b/c/f"])
    outside.mkdir()
    (dst / "a" / "b").mkdir(parents=True)
    (dst / "a" / "b" / "c").symlink_to(outside)
    r = migrate(job(src, dst))
    assert (r.copied, r.failed) == (0, 1) and "a/b/c is a symlink" in r.failures[0].reason
    (dst / "a" / "b" / "c").unlink()
    (dst / ".tiering").symlink_to(outside)
    out = run_cli("migrate", str(src), str(dst))
    assert out.returncode == 2 and ".tiering is a symlink" in out.stderr, out.stderr
    assert list(outside.iterdir()) == []


def test_deletes_leave_symlinks_and_their_targets_alone(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    tree(src, ["keep"])
    tree(outside, ["victim"])
    tree(dst, ["keep", "d/x"])
    (dst / "d" / "x").unlink()
    (dst / "d" / "x").symlink_to(outside / "victim")  # a symlinked file is not listed: left alone
    (dst / "ln").symlink_to(outside)
    r = migrate(job(src, dst), delete=True)
    assert (r.deleted, r.failed) == (0, 0)
    assert (outside / "victim").exists() and (dst / "ln").is_symlink()
    with pytest.raises(PathError, match="ln is a symlink"):
        LocalTree(dst).delete("ln/victim")  # a key through a symlinked folder: refused, not followed
    assert (outside / "victim").exists()


def test_a_symlinked_source_folder_is_not_followed(tmp_path):
    """The source's listing never descends into a symlinked folder nor copies a symlink (documented)."""
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    tree(src, ["a"])
    tree(outside, ["secret"])
    (src / "ln").symlink_to(outside)
    (src / "lf").symlink_to(outside / "secret")
    r = migrate(job(src, dst))
    assert (r.copied, r.failed) == (1, 0) and set(files_under(dst)) == {"a"}


# -- 15.4: SIGINT / SIGTERM print the summary and exit 130 -----------------------------------------------------


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tiering", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_until(ready, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigint_mid_upload_prints_the_json_summary_and_exits_130(tmp_path, seaweed, prefix):
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src, [f"d{i % 5}/f{i:05d}" for i in range(2000)], size=1024)
    proc = start_cli("migrate", str(src), url, "--json", "-j", "2", *s3_args(seaweed))
    store = s3(url, seaweed)
    wait_until(lambda: next(iter(store.list()), None) is not None)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    s = json.loads(stdout.strip().splitlines()[-1])
    published = [i.key for i in store.list()]
    assert s["interrupted"] and 0 < s["copied"] < 2000 and s["failed"] == 0
    assert s["copied"] == len(published)  # what finished was counted, and nothing else started
    assert "tiering: interrupted" in stderr and "Traceback" not in stderr


def test_sigterm_mid_copy_prints_the_summary_line_and_exits_130(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = tree(src, [f"f{i:04d}" for i in range(200)], size=20_000)
    proc = start_cli("sync", str(src), str(dst), "--delete", "--bwlimit", "1MiB", "-j", "2")
    wait_until(lambda: dst.exists() and any(p.name.startswith("f") for p in dst.iterdir()))
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout.startswith("copied ") and stdout.count("\n") == 1
    copied = int(stdout.split()[1])
    assert 0 < copied < len(data) and "not deleting any files" in stderr
    assert all((dst / name).read_bytes() == data[name] for name in os.listdir(dst) if name != ".tiering")


def test_a_name_whose_key_the_store_refuses_fails_alone(tmp_path, seaweed, prefix):
    """A legal 255-byte name of '%' is a 765-byte key: SeaweedFS refuses it, and only that file fails."""
    src, url = tmp_path / "src", f"s3://{S3_BUCKET}/{prefix}"
    tree(src, ["a", "%" * 255, "z"])
    out = run_cli("migrate", str(src), url, "--json", *s3_args(seaweed))
    assert out.returncode == 1, out.stderr
    failed = [line for line in out.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith("failed: copy " + "%25" * 255 + ": "), out.stderr
    assert failed[0].endswith("KeyTooLongError (the store refuses this name)")
    assert [i.key for i in s3(url, seaweed).list()] == ["a", "z"]


def test_a_key_with_a_newline_fails_alone_and_the_rest_of_the_prefix_is_copied(tmp_path, seaweed, prefix, monkeypatch):
    """obstore cannot parse such a name: its listing page is read raw (``s3_listpage``), and only that file fails."""
    url, good = f"s3://{S3_BUCKET}/{prefix}", ["a", "b/c", "m", "n", "z"]
    for key in [*good, "bad\nname", "d\x01e"]:
        put_raw(seaweed, f"{prefix}/{key}", key.encode())
    out = run_cli("migrate", url, str(tmp_path / "dst"), "--json", *s3_args(seaweed, "src"))
    assert out.returncode == 1, out.stderr
    assert sorted(line for line in out.stderr.splitlines() if line.startswith("failed:")) == [
        "failed: copy 'bad\\nname': cannot be copied under this name here: key 'bad\\nname' is not in canonical form "
        "(expected 'bad%0Aname')",
        "failed: copy 'd\\x01e': cannot be copied under this name here: key 'd\\x01e' is not in canonical form "
        "(expected 'd%01e')"]
    assert files_under(tmp_path / "dst") == {k: k.encode() for k in good}
    from tiering.stores import s3_listpage

    monkeypatch.setattr(s3_listpage, "PAGE", 2)  # raw pages of two names: obstore takes over after each
    assert [i.key for i in s3(url, seaweed).list()] == sorted([*good, "bad\nname", "d\x01e"])
