"""A released file's capacity copy is its only copy: nothing that archives or recovers writes over it or
deletes it, whatever the catalog's record says by the time it looks.

Found with two movers on one PostgreSQL catalog: a run that had read a file's record before another run
released it archived the stub (0 bytes) over the object, and ``recover`` then deleted "its unverified copy"
— the released file's only one. Both are shown here on one writer, by the states they came from: a
stub whose record the catalog lost, and an archive left open across another writer's release.
"""

from __future__ import annotations

import os

from tiering.mover.recover import recover


def released(mover, rel: bytes, data: bytes) -> None:
    path = mover.hot_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    assert mover.release(rel).status == "done"
    assert path.stat().st_size == 0


def test_a_stub_the_catalog_does_not_know_is_never_archived_over_its_copy(mover):
    data = os.urandom(50_000)
    released(mover, b"d/shard.bin", data)
    rec = mover.catalog.get(b"d/shard.bin")
    mover.catalog.forget(b"d/shard.bin")  # the record lost (a catalog restored from an old backup, say)
    assert mover.catalog.get(b"d/shard.bin") is None
    out = mover.archive(b"d/shard.bin")
    assert out.status == "skipped" and "stub" in out.reason, out
    store = mover.store(rec.tier)
    assert store.head(rec.object_key).size == len(data)  # not overwritten by the stub's 0 bytes
    mover.catalog.put(rec)
    assert mover.restore(b"d/shard.bin").status == "done"
    assert mover.hot_path(b"d/shard.bin").read_bytes() == data


def test_recover_keeps_the_object_of_a_file_released_while_an_archive_was_open(mover):
    data = os.urandom(40_000)
    released(mover, b"d/ckpt.pt", data)
    rec = mover.catalog.get(b"d/ckpt.pt")
    # An archive of the same file and key left open, as by a run killed after it had begun.
    mover.catalog.begin("archive", b"d/ckpt.pt", "copying", tier=rec.tier, object_key=rec.object_key)
    outcomes = recover(mover)
    assert [o.status for o in outcomes] == ["done"] and "kept the object" in outcomes[0].reason, outcomes
    assert mover.catalog.get(b"d/ckpt.pt").state == "released" and mover.catalog.open_entries() == []
    assert mover.restore(b"d/ckpt.pt").status == "done"
    assert mover.hot_path(b"d/ckpt.pt").read_bytes() == data


def test_recover_says_so_loudly_when_an_interrupted_archive_wrote_over_a_released_copy(mover, tmp_path):
    data = os.urandom(30_000)
    released(mover, b"x.bin", data)
    rec = mover.catalog.get(b"x.bin")
    entry = mover.catalog.begin("archive", b"x.bin", "copying", tier=rec.tier, object_key=rec.object_key)
    other = tmp_path / "other"
    other.write_bytes(b"")
    from tiering.stores.base import FileMeta
    mover.store(rec.tier).put_file(str(other), rec.object_key, FileMeta.from_stat(other.stat(), rec.object_key))
    [out] = recover(mover)
    assert out.status == "failed" and "wrote over it" in out.reason, out
    assert [e.status for e in mover.catalog.history(b"x.bin") if e.id == entry] == ["failed"]
