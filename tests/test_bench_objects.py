"""The object sweep runs through the Store layer and cleans up after itself."""

from __future__ import annotations

from bench.objects import objects_for, sweep


def test_sweep_measures_every_point_and_leaves_nothing(store_case, tmp_path):
    seen = []
    points = list(sweep(store_case.store, [4096, 65536], [1, 4], total_bytes=256 * 1024, workdir=tmp_path, on_point=seen.append))
    assert points == seen
    assert [(p.op, p.object_size, p.concurrency) for p in points] == [
        (op, size, conc) for size in (4096, 65536) for conc in (1, 4) for op in ("put", "get")
    ]
    for p in points:
        assert p.objects == objects_for(p.object_size, 256 * 1024)
        assert p.seconds > 0 and p.ops_per_s > 0 and p.mb_per_s > 0
        assert 0 < p.lat_p50 <= p.lat_p99
    assert list(store_case.store.list()) == []


def test_objects_for_bounds():
    assert objects_for(64 * 1024, 64 * 1024 * 1024) == 1024
    assert objects_for(1 << 30, 1 << 20) == 8
    assert objects_for(1, 1 << 30) == 10_000
