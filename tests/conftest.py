"""Shared fixtures: real servers (SeaweedFS, the OSS test server) and store cases.

``store_case`` is parametrized over every capacity store in ``STORE_KINDS``, so a
test that takes it is a conformance test: it runs against posix, s3 (SeaweedFS)
and oss (the OSS-protocol test server driven by the real ``oss2`` client). Each
store is one ``StoreKind`` entry: its name, how to make a case of it and what it
can do (capability flags); tests choose by flag, never by name, so adding a store
is adding one entry.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.peers.seaweed import SeaweedServer
from tiering.stores import RetryPolicy, open_store
from tiering.stores.base import Store

S3_KEY, S3_SECRET, S3_BUCKET = "tiering-test-key", "tiering-test-secret", "tiering-test"
OSS_KEY, OSS_SECRET, OSS_BUCKET = "oss-test-key", "oss-test-secret", "tiering-oss-test"
KiB, MiB = 1024, 1024 * 1024

#: Quick retries for tests that reach a dead endpoint on purpose.
FAST_RETRY = RetryPolicy(attempts=4, base=0.05, cap=0.5, deadline=3.0)


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"), S3_KEY, S3_SECRET, (S3_BUCKET,))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oss_server(tmp_path_factory):
    from servers.oss import OssServer

    server = OssServer(tmp_path_factory.mktemp("oss"), OSS_KEY, OSS_SECRET, restore_delay=1.0)
    server.start()
    server.create_bucket(OSS_BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_proxy_server(seaweed):
    """A fault-injecting proxy in front of the session's SeaweedFS (``servers.s3_proxy``), its own process."""
    from servers.s3_proxy import S3Proxy

    proxy = S3Proxy(seaweed.endpoint)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_proxy(s3_proxy_server):
    """The session's S3 proxy with no rules, listening; whatever a test sets is cleared after it."""
    s3_proxy_server.clear()
    yield s3_proxy_server
    s3_proxy_server.clear()


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class StoreKind:
    """One capacity store the conformance suite runs against, and what it can do."""

    name: str
    #: Make a case: ``(request, tmp_path, prefix)``; a server it needs comes from ``request``'s fixtures.
    make: Callable[[pytest.FixtureRequest, Path, str], StoreCase]
    #: Large files go in parts (``part_size`` above ``multipart_threshold``).
    multipart: bool
    #: Moves an existing object to another storage class (``SupportsStorageClass``).
    sets_storage_class: bool
    #: Archive classes whose objects must be restored before reading (``SupportsRestore``).
    restore: bool
    #: The server confirms it stored the bytes we hashed (an MD5 ETag, a CRC-64).
    server_checksum: bool
    #: Its own coroutines for small objects (``AsyncTransfers``).
    native_async: bool
    #: A store the server refuses (wrong credentials) still addresses the same objects; a refused
    #: posix store is another folder, with nothing of ours in it.
    refused_sees_same_objects: bool
    #: ``cleanup_incomplete(key)`` finds one key's leftovers; posix finds only dead writers' (key None).
    cleans_up_by_key: bool


@dataclass
class StoreCase:
    """One store under test plus the store-specific ways to break it."""

    name: str
    store: Store
    part_size: int
    threshold: int
    #: Replace an object's bytes behind the store's back, keeping its metadata.
    corrupt: Callable[[str, bytes], None]
    #: A store on the same place that the server will refuse (None: see refusal_reason).
    refused: Callable[[], Store] | None
    #: Open a store on a tier that is down; the expected error class is ``down_error``.
    down: Callable[[], Store]
    down_error: type[Exception]
    refusal_reason: str = ""
    #: Leave an unfinished upload of ``key`` behind, as a writer killed mid-upload would.
    start_incomplete: Callable[[str], None] | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    #: The entry of ``STORE_KINDS`` this case was made from: its capability flags.
    kind: StoreKind | None = None


def _posix_case(tmp_path: Path) -> StoreCase:
    from tiering.core.errors import UserError

    root = tmp_path / "tier"
    root.mkdir()
    store = open_store(str(root))

    def corrupt(key: str, data: bytes) -> None:
        from tiering.stores.keys import decode_key

        path = root / os.fsdecode(decode_key(key))
        xattr = os.getxattr(path, "user.tiering.meta") if store._use_xattr else None
        path.write_bytes(data)
        if xattr is not None:
            os.setxattr(path, "user.tiering.meta", xattr)

    def start_incomplete(key: str) -> None:
        import socket

        dead = subprocess.Popen(["true"])
        dead.wait()
        (root / ".tiering" / "tmp").mkdir(parents=True, exist_ok=True)
        (root / ".tiering" / "tmp" / f"put~{socket.gethostname()}~{dead.pid}~abcd").write_bytes(b"partial")

    case = StoreCase("posix", store, 1 * MiB, 1 * MiB, corrupt, None, lambda: open_store(str(tmp_path / "gone")), UserError,
                     start_incomplete=start_incomplete)
    if is_root():
        ro = tmp_path / "ro"
        ro.mkdir()

        def refused() -> Store:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ro)], check=True)
            subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
            case.cleanup.append(lambda: subprocess.run(["umount", str(ro)], check=False))
            return open_store(str(ro))

        case.refused = refused
    else:
        case.refusal_reason = "posix refusal is a read-only mount, which needs root"
    return case


def _s3_case(server: SeaweedServer, prefix: str) -> StoreCase:
    options = {"endpoint": server.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET,
               "part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "jobs": 4}
    url = f"s3://{S3_BUCKET}/{prefix}"
    store = open_store(url, options)

    def corrupt(key: str, data: bytes) -> None:
        import obstore

        attrs = dict(obstore.get(store._obs, store._name(key), options={"head": True}).attributes)
        obstore.put(store._obs, store._name(key), data, attributes=attrs, use_multipart=False)

    def start_incomplete(key: str) -> None:
        from tiering.stores.s3_uploads import _request
        from tiering.stores.sigv4 import quote_path

        status, _ = _request(server.endpoint, store._creds, "POST", quote_path(S3_BUCKET, store._name(key)),
                             {"uploads": ""}, 5)
        assert status == 200

    return StoreCase(
        "s3", store, 5 * MiB, 5 * MiB, corrupt, start_incomplete=start_incomplete,
        refused=lambda: open_store(url, {**options, "secret_access_key": "wrong-secret"}),
        down=lambda: open_store(url, {**options, "endpoint": f"http://127.0.0.1:{closed_port()}"}, retry=FAST_RETRY),
        down_error=__import__("tiering.core.errors", fromlist=["TierUnavailableError"]).TierUnavailableError,
    )


def _oss_case(server, prefix: str, tmp_path: Path) -> StoreCase:
    from tiering.core.errors import TierUnavailableError

    options = {"endpoint": server.endpoint, "access_key_id": OSS_KEY, "access_key_secret": OSS_SECRET,
               "part_size": 100 * KiB, "multipart_threshold": 256 * KiB, "jobs": 4,
               "checkpoint_dir": str(tmp_path / "oss-checkpoints")}
    url = f"oss://{OSS_BUCKET}/{prefix}"
    store = open_store(url, options)

    def corrupt(key: str, data: bytes) -> None:
        import oss2

        bucket = oss2.Bucket(oss2.Auth(OSS_KEY, OSS_SECRET), server.endpoint, OSS_BUCKET)
        name = f"{prefix}/{key}"
        headers = {k: v for k, v in bucket.head_object(name).headers.items() if k.lower().startswith("x-oss-meta-")}
        bucket.put_object(name, data, headers=headers)

    def start_incomplete(key: str) -> None:
        store._bucket.init_multipart_upload(f"{prefix}/{key}")

    return StoreCase(
        "oss", store, 100 * KiB, 256 * KiB, corrupt, start_incomplete=start_incomplete,
        refused=lambda: open_store(url, {**options, "access_key_secret": "wrong-secret"}),
        down=lambda: open_store(url, {**options, "endpoint": f"http://127.0.0.1:{closed_port()}"}, retry=FAST_RETRY),
        down_error=TierUnavailableError,
    )


STORE_KINDS = (
    StoreKind("posix", lambda request, tmp_path, prefix: _posix_case(tmp_path),
              multipart=False, sets_storage_class=False, restore=False, server_checksum=False, native_async=False,
              refused_sees_same_objects=False, cleans_up_by_key=False),
    StoreKind("s3", lambda request, tmp_path, prefix: _s3_case(request.getfixturevalue("seaweed"), prefix),
              multipart=True, sets_storage_class=True, restore=True, server_checksum=True, native_async=True,
              refused_sees_same_objects=True, cleans_up_by_key=True),
    StoreKind("oss",
              lambda request, tmp_path, prefix: _oss_case(request.getfixturevalue("oss_server"), prefix, tmp_path),
              multipart=True, sets_storage_class=True, restore=True, server_checksum=True, native_async=False,
              refused_sees_same_objects=True, cleans_up_by_key=True),
)


@pytest.fixture(params=STORE_KINDS, ids=[kind.name for kind in STORE_KINDS])
def store_case(request, tmp_path) -> Iterator[StoreCase]:
    kind: StoreKind = request.param
    case = kind.make(request, tmp_path, f"t-{uuid.uuid4().hex[:12]}")
    case.kind = kind
    yield case
    for undo in case.cleanup:
        undo()
    case.store.close()


def write_config(tmp_path: Path, tier_toml: str, hot: Path | None = None) -> Path:
    """A config under ``tmp_path``: hot tier ``hot/`` (or ``hot``), catalog in ``state/``, one capacity tier ``cap``."""
    if hot is None:
        (tmp_path / "hot").mkdir(exist_ok=True)
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot or "hot"}"\n[catalog]\npath = "state/catalog.db"\n'
                   f'[concurrency]\npart_size = "5MiB"\nmultipart_threshold = "5MiB"\n[tiers.cap]\n{tier_toml}\n')
    return cfg


@contextlib.contextmanager
def small_hot_tier(tmp_path: Path, size: str):
    """A ``(Mover, Catalog)`` whose hot tier ``tmp_path/hot`` is a tmpfs of ``size`` (a disk that fills up;
    needs root) and whose capacity tier is a folder; the mover is closed and the tmpfs unmounted after."""
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.ops import Mover

    (tmp_path / "capacity").mkdir()
    cfg = write_config(tmp_path, 'url = "capacity"')
    hot = tmp_path / "hot"
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(hot)], check=True)
    try:
        config = load_config(cfg)
        with Catalog.open(config.catalog_path, writer=True) as cat:
            m = Mover(config, cat)
            try:
                yield m, cat
            finally:
                m.close()
    finally:
        subprocess.run(["umount", str(hot)], check=False)


def tier_config(kind: str, tmp_path: Path, request, monkeypatch, hot: Path | None = None) -> Path:
    """``write_config`` with a ``posix`` tier (a folder) or an ``s3`` tier on the session's SeaweedFS."""
    if kind == "posix":
        (tmp_path / "capacity").mkdir()
        return write_config(tmp_path, 'url = "capacity"', hot)
    server = request.getfixturevalue("seaweed")
    monkeypatch.setenv("TEST_S3_SECRET", S3_SECRET)
    return write_config(tmp_path, f'url = "s3://{S3_BUCKET}/{tmp_path.name}"\nendpoint = "{server.endpoint}"\n'
                                  f'access_key_id = "{S3_KEY}"\nsecret_access_key = "${{TEST_S3_SECRET}}"', hot)


def _mover(kind: str, tmp_path: Path, request, monkeypatch, hot: Path | None = None):
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.ops import Mover

    config = load_config(tier_config(kind, tmp_path, request, monkeypatch, hot))
    catalog = Catalog.open(config.catalog_path, writer=True)
    m = Mover(config, catalog)
    yield m
    m.close()
    catalog.close()


@pytest.fixture(params=["posix", "s3"])
def mover(request, tmp_path, monkeypatch):
    """A ``Mover`` over a fresh hot tier and catalog, with a posix or an S3 (SeaweedFS) capacity tier."""
    yield from _mover(request.param, tmp_path, request, monkeypatch)


# --- A networked hot tier: SeaweedFS FUSE mounts of the session's filer (bench/peers/weed_mount.py) ---

#: The filer directory the FUSE fixtures mount; two mounts of it are two client nodes of one filesystem.
FUSE_FILER_PATH = "/fuse-hot"


def _weed_mount(seaweed: SeaweedServer, tmp_path_factory, name: str):
    from bench.peers.weed_mount import WeedMount, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp(f"weedmount-{name}")
    mount = WeedMount(f"127.0.0.1:{seaweed.ports['filer']}", work / "mnt", FUSE_FILER_PATH, work)
    mount.start()
    return mount


@pytest.fixture(scope="session")
def fuse_mount(seaweed, tmp_path_factory):
    """A ``weed mount`` of the session's filer (node A); skipped when not root or without /dev/fuse."""
    mount = _weed_mount(seaweed, tmp_path_factory, "a")
    yield mount
    mount.stop()


@pytest.fixture(scope="session")
def fuse_mount_b(seaweed, fuse_mount, tmp_path_factory):
    """A second ``weed mount`` process of the same filer path as ``fuse_mount`` (node B)."""
    mount = _weed_mount(seaweed, tmp_path_factory, "b")
    yield mount
    mount.stop()


def _fresh_dir(mount, request) -> Path:
    name = f"{request.node.name[:20]}-{uuid.uuid4().hex[:8]}".replace("/", "_").replace("[", "-").replace("]", "")
    path = mount.mountpoint / name
    path.mkdir()
    return path


@pytest.fixture
def fuse_hot(fuse_mount, request) -> Iterator[Path]:
    """A fresh empty directory on the FUSE mount, for one test; removed after it."""
    import shutil

    path = _fresh_dir(fuse_mount, request)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fuse_two_mounts(fuse_mount, fuse_mount_b, request) -> Iterator[tuple[Path, Path]]:
    """``(dir_via_A, dir_via_B)``: one fresh directory of the shared filer path, seen through two mounts."""
    import shutil
    import time

    path_a = _fresh_dir(fuse_mount, request)
    path_b = fuse_mount_b.mountpoint / path_a.name
    deadline = time.monotonic() + 10
    while not path_b.is_dir():  # B's metadata cache learns of A's mkdir from the filer's event stream
        assert time.monotonic() < deadline, f"{path_a.name} made via A never appeared via B"
        time.sleep(0.05)
    yield path_a, path_b
    shutil.rmtree(path_a, ignore_errors=True)


@pytest.fixture
def fuse_mover(request, tmp_path, monkeypatch, fuse_hot):
    """``mover`` with its hot tier on the FUSE mount (``fuse_hot``) and an S3 (SeaweedFS) capacity tier."""
    yield from _mover("s3", tmp_path, request, monkeypatch, hot=fuse_hot)
@pytest.fixture(scope="session")
def ext4_loop(tmp_path_factory) -> Iterator[Path]:
    """A real ext4 filesystem on a loop device (a sparse 1 GiB image), mounted for the session; root only."""
    if not is_root():
        pytest.skip("a loop-mounted ext4 needs root")
    base = tmp_path_factory.mktemp("ext4")
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(1 << 30)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True, check=False)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True, check=False).returncode == 0
    if not mounted:
        pytest.skip(f"cannot make or loop-mount an ext4 image: {made.stderr.strip()[:200]}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)
