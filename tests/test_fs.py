"""``tiered://`` over a half-released dataset: real files, a posix tier and SeaweedFS."""

from __future__ import annotations

import io
import logging
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tier_config

from tiering.catalog import Catalog
from tiering.config import Config, load_config
from tiering.core.errors import IntegrityError, InvalidKeyError, NotFoundError, StoreError
from tiering.access.tiered import TieredFileSystem
from tiering.mover.ops import Mover
from tiering.stores.keys import encode_key

BLOCK = 64 * 1024


def parquet_bytes() -> tuple[pa.Table, bytes]:
    table = pa.table({"id": pa.array(range(20_000), pa.int64()),
                      "label": pa.array([f"class-{i % 97}" for i in range(20_000)]),
                      "score": pa.array([i / 7 for i in range(20_000)], pa.float64())})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=5_000, compression="none")
    return table, sink.getvalue()


RESIDENT = {"data/resident.bin": os.urandom(10_000), "data/notes.csv": b"a,b\n1,2\n", "data/empty": b""}
ARCHIVED = {"data/archived.bin": os.urandom(70_000)}
RELEASED = {
    "data/big.bin": os.urandom(3 * BLOCK + 123),
    "data/labels.csv": "".join(f"{i},cls-{i % 13},{i * 0.5}\n" for i in range(5_000)).encode(),
    "data/deep/nested/ünï code.bin": os.urandom(5_000),
}
TABLE, RELEASED["data/table.parquet"] = parquet_bytes()
ALL = {**RESIDENT, **ARCHIVED, **RELEASED}


@dataclass
class Dataset:
    cfg: Path
    config: Config
    fs: TieredFileSystem

    def url(self, rel: str) -> str:
        return f"tiered://{rel}"

    def hot(self, rel: str) -> Path:
        return self.config.hot_path / rel

    def mover(self) -> tuple[Mover, Catalog]:
        catalog = Catalog.open(self.config.catalog_path, writer=True)
        return Mover(self.config, catalog), catalog

    def corrupt(self, rel: str, data: bytes) -> None:
        """Replace the capacity object's bytes behind our back, keeping its metadata."""
        mover, catalog = self.mover()
        try:
            store, key = mover.store("cap"), encode_key(rel.encode())
            if hasattr(store, "_obs"):
                import obstore

                attrs = dict(obstore.get(store._obs, store._name(key), options={"head": True}).attributes)
                obstore.put(store._obs, store._name(key), data, attributes=attrs, use_multipart=False)
            else:
                path = store.root / rel
                xattr = os.getxattr(path, "user.tiering.meta") if store._use_xattr else None
                path.write_bytes(data)
                if xattr is not None:
                    os.setxattr(path, "user.tiering.meta", xattr)
        finally:
            mover.close()
            catalog.close()

    def delete_object(self, rel: str) -> None:
        mover, catalog = self.mover()
        try:
            mover.store("cap").delete(encode_key(rel.encode()))
        finally:
            mover.close()
            catalog.close()


def build(tmp_path: Path, kind: str, request, monkeypatch, hot: Path | None = None) -> Dataset:
    cfg = tier_config(kind, tmp_path, request, monkeypatch, hot)
    config = load_config(cfg)
    for rel, data in ALL.items():
        path = config.hot_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    ds = Dataset(cfg, config, TieredFileSystem(config=str(cfg), block_size=BLOCK, skip_instance_cache=True))
    mover, catalog = ds.mover()
    try:
        for rel in ARCHIVED:
            assert mover.archive(rel.encode()).status == "done"
        for rel in RELEASED:
            out = mover.release(rel.encode())
            assert out.status == "done", out
            assert ds.hot(rel).stat().st_size == 0
    finally:
        mover.close()
        catalog.close()
    return ds


@pytest.fixture(params=["posix", "s3"])
def dataset(request, tmp_path, monkeypatch):
    ds = build(tmp_path, request.param, request, monkeypatch)
    yield ds
    ds.fs.close()
    TieredFileSystem.clear_instance_cache()


@pytest.fixture
def local_dataset(request, tmp_path, monkeypatch):
    ds = build(tmp_path, "posix", request, monkeypatch)
    yield ds
    ds.fs.close()
    TieredFileSystem.clear_instance_cache()


def test_fsspec_open_reads_exact_bytes_of_resident_archived_and_released_files(dataset):
    for rel, data in ALL.items():
        with fsspec.open(dataset.url(rel), config=str(dataset.cfg)) as f:
            assert f.read() == data, rel
    for rel in RELEASED:  # streamed, not restored: the stubs are still stubs
        assert dataset.hot(rel).stat().st_size == 0
    assert dataset.fs.cat_file("data/big.bin", start=BLOCK - 5, end=BLOCK + 5) == RELEASED["data/big.bin"][BLOCK - 5:BLOCK + 5]
    with fsspec.open("tiered://data/labels.csv", "rt", config=str(dataset.cfg)) as f:
        assert f.readline() == "0,cls-0,0.0\n"


def test_leading_slashes_name_the_same_file(local_dataset):
    fs = local_dataset.fs
    assert fs.cat("tiered:///data/big.bin") == fs.cat("tiered://data/big.bin") == fs.cat("/data/big.bin")
    assert fs.info("tiered:///data/big.bin")["name"] == "data/big.bin"


def test_ranged_reads_across_block_boundaries_on_a_released_file(dataset):
    data = RELEASED["data/big.bin"]
    with dataset.fs.open("data/big.bin", block_size=BLOCK) as f:
        assert f.size == len(data)
        for start, length in [(BLOCK - 10, 30), (0, 1), (2 * BLOCK - 1, BLOCK + 2), (len(data) - 7, 100),
                              (5, 3 * BLOCK), (BLOCK, BLOCK), (len(data), 10)]:
            f.seek(start)
            assert f.read(length) == data[start:start + length], (start, length)
            assert f.tell() == min(start + length, len(data))
        f.seek(-20, os.SEEK_END)
        assert f.read() == data[-20:]


def test_ls_info_find_and_glob_show_true_sizes_and_states(dataset):
    fs = dataset.fs
    entries = {e["name"]: e for e in fs.ls("data")}
    assert set(entries) == {"data/resident.bin", "data/notes.csv", "data/empty", "data/archived.bin",
                            "data/big.bin", "data/labels.csv", "data/table.parquet", "data/deep"}
    assert entries["data/deep"]["type"] == "directory"
    for rel, data in ALL.items():
        info = fs.info(rel)
        assert (info["type"], info["size"]) == ("file", len(data)), rel
        want = "released" if rel in RELEASED else "archived" if rel in ARCHIVED else "resident"
        assert info["tiering_state"] == want, rel
        if rel in entries:
            assert entries[rel]["size"] == len(data)
    assert fs.info("data/big.bin")["tiering_tier"] == "cap"
    assert sorted(fs.find("")) == sorted(ALL)
    assert fs.find("data", detail=True)["data/table.parquet"]["size"] == len(RELEASED["data/table.parquet"])
    assert fs.glob("tiered://data/*.csv") == ["data/labels.csv", "data/notes.csv"]
    assert fs.glob("data/**/*.bin") == sorted(r for r in ALL if r.endswith(".bin"))
    assert fs.du("data") == sum(len(d) for d in ALL.values())
    assert fs.exists("data/big.bin") and fs.isfile("data/big.bin") and not fs.isdir("data/big.bin")
    assert fs.isdir("data/deep") and fs.isdir("") and not fs.exists("data/missing")
    assert fs.ls("data/big.bin", detail=False) == ["data/big.bin"]
    assert fs.size("data/labels.csv") == len(RELEASED["data/labels.csv"])
    with pytest.raises(FileNotFoundError):
        fs.info("data/missing")
    with pytest.raises(FileNotFoundError):
        fs.open("data/missing")


def test_pyarrow_reads_a_released_parquet_file(dataset):
    assert pq.read_table("data/table.parquet", filesystem=dataset.fs).equals(TABLE)
    assert pq.read_table("tiered://data/table.parquet", filesystem=dataset.fs).equals(TABLE)
    with dataset.fs.open("data/table.parquet") as f:  # footer first, then column chunks: random access
        pf = pq.ParquetFile(f)
        assert pf.metadata.num_row_groups == 4
        assert pf.read_row_group(2, columns=["label"]).column(0).to_pylist() == TABLE["label"][10_000:15_000].to_pylist()
    import pyarrow.dataset as pads

    assert pads.dataset(["data/table.parquet"], filesystem=dataset.fs, format="parquet").to_table().num_rows == 20_000
    assert dataset.hot("data/table.parquet").stat().st_size == 0


def test_pandas_reads_a_released_csv_through_its_url(dataset):
    pd = pytest.importorskip("pandas")

    frame = pd.read_csv("tiered://data/labels.csv", header=None, storage_options={"config": str(dataset.cfg)})
    expected = pd.read_csv(io.BytesIO(RELEASED["data/labels.csv"]), header=None)
    pd.testing.assert_frame_equal(frame, expected)
    assert len(frame) == 5_000


def test_restore_on_read_leaves_the_file_resident_with_its_bytes(dataset):
    fs = TieredFileSystem(config=str(dataset.cfg), restore_on_read=True, skip_instance_cache=True)
    try:
        rel = "data/deep/nested/ünï code.bin"
        with fs.open(rel) as f:
            assert f.read() == RELEASED[rel]
        assert dataset.hot(rel).read_bytes() == RELEASED[rel]
        assert fs.info(rel)["tiering_state"] == "archived"
        with Catalog.open(dataset.config.catalog_path) as catalog:
            assert catalog.get(rel.encode()).state == "archived"
        with fs.open("data/resident.bin") as f:  # nothing to restore: read in place
            assert f.read() == RESIDENT["data/resident.bin"]
    finally:
        fs.close()


def test_restore_on_read_streams_when_another_process_holds_the_catalog(local_dataset, caplog):
    fs = TieredFileSystem(config=str(local_dataset.cfg), restore_on_read=True, skip_instance_cache=True)
    busy = Catalog.open(local_dataset.config.catalog_path, writer=True, purpose="a long apply")
    try:
        with caplog.at_level(logging.WARNING, logger="tiering.access.tiered"):
            assert fs.cat_file("data/big.bin") == RELEASED["data/big.bin"]
        assert local_dataset.hot("data/big.bin").stat().st_size == 0
        assert "streaming from its capacity tier instead" in caplog.text and "a long apply" in caplog.text
    finally:
        busy.close()
        fs.close()


def test_a_corrupted_capacity_object_gives_a_clear_error_never_wrong_bytes(dataset):
    original = RELEASED["data/labels.csv"]
    dataset.corrupt("data/labels.csv", original[:-1] + b"!")  # same size, same metadata: only the bytes differ
    with pytest.raises(IntegrityError, match="do not match the archived checksum"), \
            fsspec.open("tiered://data/labels.csv", config=str(dataset.cfg)) as f:
        f.read()
    with pytest.raises(IntegrityError, match="do not match"):
        dataset.fs.cat_file("data/labels.csv")

    dataset.corrupt("data/big.bin", b"short")  # a different size: refused before a byte is read
    with pytest.raises(IntegrityError, match="not the archived version"):
        dataset.fs.open("data/big.bin")

    restoring = TieredFileSystem(config=str(dataset.cfg), restore_on_read=True, skip_instance_cache=True)
    try:
        with pytest.raises(StoreError, match="restore on read failed"):
            restoring.open("data/labels.csv")
        assert dataset.hot("data/labels.csv").stat().st_size == 0  # the stub stays
    finally:
        restoring.close()


def test_a_deleted_capacity_object_gives_a_clear_error(dataset):
    dataset.delete_object("data/table.parquet")
    with pytest.raises(NotFoundError, match="is released, but its capacity copy .* is missing"):
        dataset.fs.open("data/table.parquet")
    with pytest.raises(NotFoundError):
        pq.read_table("data/table.parquet", filesystem=dataset.fs)
    assert dataset.fs.info("data/table.parquet")["size"] == len(RELEASED["data/table.parquet"])


def test_writes_are_refused(local_dataset):
    fs = local_dataset.fs
    for mode in ("wb", "ab", "xb", "r+b", "w"):
        with pytest.raises(PermissionError, match="read-only"):
            fs.open("data/resident.bin", mode)
    with pytest.raises(PermissionError, match="read-only"), \
            fsspec.open("tiered://data/new.txt", "w", config=str(local_dataset.cfg)) as f:
        f.write("x")
    for call in (lambda: fs.rm("data/resident.bin"), lambda: fs.mkdir("data/x"), lambda: fs.pipe("data/y", b"y"),
                 lambda: fs.mv("data/resident.bin", "data/z"), lambda: fs.touch("data/t"),
                 lambda: fs.copy("data/resident.bin", "data/c")):
        with pytest.raises(PermissionError, match="read-only"):
            call()
    assert local_dataset.hot("data/resident.bin").read_bytes() == RESIDENT["data/resident.bin"]
    assert sorted(fs.find("")) == sorted(ALL)


def test_paths_escaping_the_hot_tier_are_refused(local_dataset, tmp_path):
    fs = local_dataset.fs
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.txt", local_dataset.hot("data/escape"))
    os.symlink("resident.bin", local_dataset.hot("data/alias"))  # inside: followed
    for path in ("tiered://../secret.txt", "data/../../secret.txt", "/../secret.txt", "data/escape", ".."):
        with pytest.raises(InvalidKeyError, match="hot tier"):
            fs.open(path)
        with pytest.raises(InvalidKeyError):
            fs.info(path)
    with pytest.raises(InvalidKeyError):
        fs.ls("data/../..")
    listed = {e["name"]: e for e in fs.ls("data")}
    assert listed["data/escape"]["type"] == "other"
    assert fs.cat("data/alias") == RESIDENT["data/resident.bin"]
    assert fs.cat("data/deep/../resident.bin") == RESIDENT["data/resident.bin"]


def test_a_stub_the_catalog_does_not_describe_is_refused(local_dataset):
    stub = local_dataset.hot("data/orphan")
    stub.write_bytes(b"")
    os.setxattr(stub, "user.tiering.stub", b'{"state":"released","size":5}')
    assert local_dataset.fs.info("data/orphan")["tiering_state"] == "unrecorded-stub"
    os.removexattr(stub, "user.tiering.stub")
    os.setxattr(stub, "user.tiering.state", b"released")  # a stub from before the one-attribute mark
    assert local_dataset.fs.info("data/orphan")["tiering_state"] == "unrecorded-stub"
    with pytest.raises(IntegrityError, match="tiering recover"):
        local_dataset.fs.open("data/orphan")
    assert local_dataset.fs.cat("data/empty") == b""  # a plain empty file is just empty


def test_a_stub_written_after_release_is_read_in_place(local_dataset):
    local_dataset.hot("data/big.bin").write_bytes(b"new contents")
    assert local_dataset.fs.info("data/big.bin")["tiering_state"] == "dirty"
    assert local_dataset.fs.cat("data/big.bin") == b"new contents"


def test_many_threads_share_one_instance(dataset):
    fs, errors = dataset.fs, []

    def reader(i: int) -> None:
        try:
            for rel, data in list(ALL.items())[i % len(ALL):] * 2:
                with fs.open(rel, block_size=BLOCK // 4) as f:
                    f.seek(len(data) // 3)
                    assert f.read() == data[len(data) // 3:]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_instance_survives_pickling_and_close(local_dataset):
    fs = pickle.loads(pickle.dumps(local_dataset.fs))
    assert fs.cat("data/big.bin") == RELEASED["data/big.bin"]
    fs.close()
    fs.close()
    assert fs.cat("data/big.bin") == RELEASED["data/big.bin"]  # reopens what it needs
    fs.close()


def test_a_forked_worker_opens_its_own_catalog_and_stores(local_dataset):
    fs = local_dataset.fs
    assert fs.cat("data/big.bin") == RELEASED["data/big.bin"]  # the parent has its handles open
    pid = os.fork()
    if pid == 0:  # a dataloader worker
        ok = fs.cat("data/labels.csv") == RELEASED["data/labels.csv"] and fs.size("data/big.bin") == 3 * BLOCK + 123
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert fs.cat("data/labels.csv") == RELEASED["data/labels.csv"]
