"""Class-aware rules: a rule's ``storage_class`` is the class the object is written in, and a ``transition``
rule moves a capacity copy to another class in place (a copy on the object store, never through the hot
tier), recorded in the catalog, shown with its money by ``plan --explain`` and priced by ``tiering cost``.

Storage classes are kept by the OSS-protocol test server (``servers.oss``) and by SeaweedFS (which stores
an S3 object's ``x-amz-storage-class`` but does not enforce archive classes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from conftest import OSS_BUCKET, OSS_KEY, OSS_SECRET, S3_BUCKET, S3_KEY, S3_SECRET, write_config
from tiering.catalog import Catalog
from tiering.config import load_config
from tiering.core.errors import PolicyError
from tiering.mover.executor import execute, plan_tasks
from tiering.mover.ops import Mover
from tiering.ops.cost import current_cost, explain_money, price_plan
from tiering.ops.workflow import catalog_state, latest_snapshot, plan_now
from tiering.plan import read_inventory
from tiering.plan.explain import explain_path, find_row
from tiering.policy import load_policy
from tiering.stores import open_store
from tiering.stores.base import FileMeta

DAY = 86400
TWO_STEPS = """
[[rules]]
name = "ia-to-archive"
match = 'storage_class == "IA" and atime_age > 90d'
action = "transition"
storage_class = "Archive"

[[rules]]
name = "cold-to-ia"
match = 'state == "resident" and size >= 1000'
action = "release"
storage_class = "IA"

[safety]
min_age = "0s"
"""


def _oss_workspace(tmp_path: Path, server, monkeypatch) -> tuple[Path, str]:
    monkeypatch.setenv("TEST_OSS_SECRET", OSS_SECRET)
    prefix = f"classes-{tmp_path.name}-{time.time_ns() % 10**9}"
    cfg = write_config(tmp_path, f'url = "oss://{OSS_BUCKET}/{prefix}"\nendpoint = "{server.endpoint}"\n'
                                 f'access_key_id = "{OSS_KEY}"\naccess_key_secret = "${{TEST_OSS_SECRET}}"\n')
    (tmp_path / "policy.toml").write_text(TWO_STEPS)
    return cfg, prefix


def _aged(path: Path, data: bytes, days: float) -> None:
    path.write_bytes(data)
    then = time.time_ns() - int(days * DAY * 1e9)
    os.utime(path, ns=(then, then))


def _server_class(server, prefix: str, key: str) -> str:
    with server.lock:
        return server.buckets[OSS_BUCKET].objects[f"{prefix}/{key}"].storage_class


def _apply(config, catalog, policy):
    plan = plan_now(config, policy, catalog=catalog, rescan=True)
    with contextlib.closing(Mover(config, catalog)) as mover:
        result = execute(mover, plan_tasks(plan), jobs=2)
    return plan, result


def test_a_release_writes_the_rules_class_then_a_transition_moves_the_idle_copy_in_place(tmp_path, oss_server,
                                                                                         monkeypatch):
    cfg, prefix = _oss_workspace(tmp_path, oss_server, monkeypatch)
    config, hot = load_config(cfg), tmp_path / "hot"
    policy = load_policy(tmp_path / "policy.toml", config)
    _aged(hot / "idle.bin", os.urandom(6000), 200)  # nobody read it for 200 days
    _aged(hot / "recent.bin", os.urandom(5000), 10)
    with Catalog.open(config.catalog_path, writer=True) as catalog:
        plan, result = _apply(config, catalog, policy)
        assert result.counts[("release", "done")] == 2, result.failures
        # The mover wrote the objects in the rule's class (not the tier's Standard).
        assert _server_class(oss_server, prefix, "idle.bin") == _server_class(oss_server, prefix, "recent.bin") == "IA"
        assert catalog.get(b"idle.bin").storage_class == "IA"

        # The second step, as plan --explain shows it: the rule, and the money of the move.
        row = find_row(read_inventory(latest_snapshot(config)), catalog_state(config, catalog), b"idle.bin")
        lines = explain_path(row, b"idle.bin", policy, time.time_ns()) + explain_money(config, row, policy,
                                                                                      time.time_ns())
        text = "\n".join(lines)
        assert "rule ia-to-archive (transition): MATCHES" in text, text
        assert "money: transition cap/IA -> cap/Archive in place saves" in text, text
        assert "Archive bills at least 60d" in text and "waits about 1h" in text, text

        report = price_plan(config, current_cost(config, catalog, hot_used=0),
                            plan_now(config, policy, catalog=catalog, rescan=True), catalog)
        by_class = {r.storage_class: r for r in report.rows[1:]}
        assert (by_class["IA"].files, by_class["IA"].plan_files, by_class["Archive"].plan_files) == (2, -1, 1)
        assert by_class["Archive"].plan_per_month < -by_class["IA"].plan_per_month  # cheaper per month

        gets = oss_server.counts["GetObject"]
        plan, result = _apply(config, catalog, policy)
        assert [(t.action, t.path) for t in plan_tasks(plan)] == [("transition", b"idle.bin")]
        assert result.counts[("transition", "done")] == 1, result.failures
        assert _server_class(oss_server, prefix, "idle.bin") == "Archive"
        assert _server_class(oss_server, prefix, "recent.bin") == "IA"
        assert oss_server.counts["GetObject"] == gets  # no byte came through here
        record = catalog.get(b"idle.bin")
        assert (record.state, record.storage_class) == ("released", "Archive")
        assert (hot / "idle.bin").stat().st_size == 0  # still a stub
        # Done is done: the next plan has nothing for it.
        assert len(plan_now(config, policy, catalog=catalog, rescan=True)) == 0


def test_s3_changes_a_class_in_place_keeping_bytes_and_metadata(tmp_path, seaweed):
    options = {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET}
    store = open_store(f"s3://{S3_BUCKET}/classes-{time.time_ns() % 10**9}", options)
    try:
        local = tmp_path / "f.bin"
        local.write_bytes(os.urandom(70_000))
        put = store.put_file(local, "f.bin", FileMeta.from_stat(local.stat(), "f.bin"))
        store.set_storage_class("f.bin", "standard_ia")
        after = asyncio.run(store.head_async("f.bin"))
        assert (after.storage_class, after.size, after.meta) == ("STANDARD_IA", put.size, put.meta)
        store.get_file("f.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    finally:
        store.close()


def test_a_transition_on_s3_is_recorded_and_the_class_shows_on_the_server(tmp_path, seaweed, monkeypatch):
    monkeypatch.setenv("TEST_S3_SECRET", S3_SECRET)
    cfg = write_config(tmp_path, f'url = "s3://{S3_BUCKET}/classes-{time.time_ns() % 10**9}"\n'
                                 f'endpoint = "{seaweed.endpoint}"\naccess_key_id = "{S3_KEY}"\n'
                                 'secret_access_key = "${TEST_S3_SECRET}"\n')
    config = load_config(cfg)
    (tmp_path / "hot" / "a.bin").write_bytes(b"a" * 3000)
    with Catalog.open(config.catalog_path, writer=True) as catalog, contextlib.closing(Mover(config, catalog)) as m:
        assert m.archive(b"a.bin", storage_class="STANDARD_IA").status == "done"
        outcome = asyncio.run(m.transition_async(b"a.bin", "GLACIER_IR"))
        assert outcome.status == "done" and "STANDARD_IA -> GLACIER_IR in place" in outcome.reason, outcome
        assert catalog.get(b"a.bin").storage_class == "GLACIER_IR"
        assert asyncio.run(m.store("cap").head_async("a.bin")).storage_class == "GLACIER_IR"
        assert asyncio.run(m.transition_async(b"a.bin", "GLACIER_IR")).status == "noop"


@pytest.mark.parametrize("rule, message", [
    ('action = "transition"', "storage_class: missing; expected the class to move copies to"),
    ('action = "transition"\nstorage_class = "Archive"\ntier = "cap"', "tier: not used by action 'transition'"),
    ('action = "transition"\nstorage_class = "Glacier"', "storage_class: 'Glacier'"),
])
def test_a_transition_rule_names_a_class_of_the_configured_tiers_and_no_tier(tmp_path, rule, message):
    cfg = write_config(tmp_path, 'url = "oss://bucket/p"\nendpoint = "http://127.0.0.1:9"\n')
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[rules]]\nname = "t"\nmatch = "true"\n{rule}\n')
    with pytest.raises(PolicyError, match=message):
        load_policy(policy, load_config(cfg))


def test_cost_terms_keep_moves_that_save_enough_and_files_idle_past_the_classes_minimum(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_OSS_SECRET", OSS_SECRET)
    cfg = write_config(tmp_path, 'url = "oss://bucket/p"\nendpoint = "http://127.0.0.1:9"\n'
                                 f'access_key_id = "{OSS_KEY}"\naccess_key_secret = "${{TEST_OSS_SECRET}}"\n')
    config, hot = load_config(cfg), tmp_path / "hot"
    (tmp_path / "p.toml").write_text('[[rules]]\nname = "to-ia"\nmatch = "true"\naction = "release"\n'
                                     'storage_class = "IA"\nmin_saving = 0.00001\nidle_past_minimum = true\n'
                                     '[safety]\nmin_age = "0s"\n')
    policy = load_policy(tmp_path / "p.toml", config)
    # Release to OSS IA saves (hot 0.20 - IA 0.0111) per GiB-month: 0.00001 a month takes 56,842 bytes.
    assert "size >= 56842B" in policy.rules[0].match.text and "atime_age >= 30d" in policy.rules[0].match.text
    _aged(hot / "big-idle.bin", os.urandom(100_000), 60)
    _aged(hot / "small-idle.bin", os.urandom(10_000), 60)  # saves too little
    _aged(hot / "big-fresh.bin", os.urandom(100_000), 5)  # read 5 days ago: IA bills 30 days at least
    with Catalog.open(config.catalog_path, writer=True) as catalog:
        plan = plan_now(config, policy, catalog=catalog, rescan=True)
        row = find_row(read_inventory(latest_snapshot(config)), catalog_state(config, catalog), b"big-fresh.bin")
    assert [t.path for t in plan_tasks(plan)] == [b"big-idle.bin"]
    assert "no match: atime_age 5d < 30d" in "\n".join(explain_path(row, b"big-fresh.bin", policy, time.time_ns()))


def test_cost_terms_refuse_a_move_that_never_saves(tmp_path):
    cfg = write_config(tmp_path, 'url = "capacity"\n')
    (tmp_path / "p.toml").write_text('[[rules]]\nname = "a"\nmatch = "true"\naction = "archive"\nmin_saving = 0.1\n')
    with pytest.raises(PolicyError, match="min_saving: not used by action 'archive'.*never saves money"):
        load_policy(tmp_path / "p.toml", load_config(cfg))
