"""The cost model (``[cost]``, ``[tiers.NAME.cost]`` over dated default prices) and ``tiering cost``, on a
real catalog and real tiers: a folder, SeaweedFS S3 and the OSS-protocol test server with storage classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import OSS_BUCKET, OSS_KEY, OSS_SECRET, write_config
from tiering.catalog import Catalog
from tiering.config import describe, load_config
from tiering.config.prices import OSS_PRICES, PRICES_DATE, S3_PRICES
from tiering.core.errors import ConfigError
from tiering.mover.ops import Mover
from tiering.ops.cost import GIB, MONTH, current_cost, price_plan
from tiering.ops.workflow import plan_now
from tiering.policy import load_policy

BIN = Path(sys.executable).with_name("tiering")
ARCHIVE_BIG = ('[[rules]]\nname = "big"\nmatch = \'type == "file" and size >= 5000\'\naction = "archive"\n'
               '{target}[safety]\nmin_age = "0s"\n')


def _file(hot: Path, rel: str, size: int) -> None:
    path = hot / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


# -- the config -------------------------------------------------------------------------------------------------


def test_defaults_are_dated_and_overrides_replace_only_what_they_name(tmp_path):
    cfg = write_config(tmp_path, 'url = "s3://bucket/p"\nstorage_class = "STANDARD_IA"\n'
                                 '[tiers.cap.cost]\nGLACIER = { per_gb_month = 0.004, restore.Bulk = { delay = "6h" } }\n'
                                 '[tiers.cap.cost.STANDARD_IA]\nput_per_1000 = 0.02\n')
    cfg.write_text(cfg.read_text() + '[cost]\ncurrency = "EUR"\nhot_per_gb_month = 0.3\n')
    model = load_config(cfg).cost
    assert (model.currency, model.hot_per_gb_month) == ("EUR", 0.3)
    assert model.class_of("cap", None) == "STANDARD_IA"  # objects with no recorded class: the tier's
    ia = model.price("cap", None)
    assert ia.per_1000("put") == 0.02 and ia.per_gb_month == S3_PRICES["STANDARD_IA"].per_gb_month
    assert ia.min_duration == 30 * 86400
    glacier = model.price("cap", "GLACIER")
    assert glacier.per_gb_month == 0.004 and glacier.restore["Bulk"].delay == 6 * 3600
    assert glacier.restore["Bulk"].per_gb == S3_PRICES["GLACIER"].restore["Bulk"].per_gb  # kept
    assert glacier.restore["Expedited"] == S3_PRICES["GLACIER"].restore["Expedited"]
    assert model.price("cap", "STANDARD") == S3_PRICES["STANDARD"]


def test_config_check_shows_the_resolved_model_as_toml_that_loads_back_the_same(tmp_path):
    (tmp_path / "capacity").mkdir()
    cfg = write_config(tmp_path, 'url = "capacity"\nstorage_class = "nas"\ncost.per_gb_month = 0.01\n')
    config = load_config(cfg)
    text = describe(config)
    assert f"recalled (not fetched) on {PRICES_DATE}" in text
    resolved = tomllib.loads(text)
    assert resolved["cost"] == {"currency": "USD", "hot_per_gb_month": 0.2}
    assert resolved["tiers"]["cap"]["cost"] == {"prices": "posix", "nas": {"per_gb_month": 0.01}}
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_config(again).cost == config.cost


def test_the_oss_defaults_carry_minimum_durations_and_restore_tiers(tmp_path):
    cfg = write_config(tmp_path, 'url = "oss://bucket/p"\nendpoint = "http://127.0.0.1:1"\n')
    model = load_config(cfg).cost
    assert model.class_of("cap", None) == "Standard"
    days = {c: model.price("cap", c).min_duration / 86400 for c in OSS_PRICES}
    assert days == {"Standard": 0, "IA": 30, "Archive": 60, "ColdArchive": 180, "DeepColdArchive": 180}
    assert set(model.price("cap", "ColdArchive").restore) == {"Expedited", "Standard", "Bulk"}
    prices = [model.price("cap", c).per_gb_month for c in OSS_PRICES]
    assert prices == sorted(prices, reverse=True)  # each class cheaper to keep than the one before


@pytest.mark.parametrize("toml, message", [
    ('[cost]\nhot_per_gb_month = "cheap"\n', r"\[cost\] hot_per_gb_month: found a string \('cheap'\); expected a price"),
    ('[cost]\nhot_per_gb_month = -1\n', r"\[cost\] hot_per_gb_month: -1 is not a price; expected a number at least 0"),
    ('[cost]\nhot_per_gb = 1\n', r"\[cost\] unknown key 'hot_per_gb'; did you mean 'hot_per_gb_month'\?"),
    ('[tiers.cap.cost.Archve]\nper_gb_month = 1\n', r"\[tiers.cap.cost\] unknown key or storage class 'Archve'; "
                                                    r"did you mean 'Archive'\?"),
    ('[tiers.cap.cost.IA]\nmin_duration = "soon"\n', r"\[tiers.cap.cost.IA\] min_duration: .*expected a duration"),
    ('[tiers.cap.cost.IA]\nrestore.Fast = { per_gb = 1 }\n', r"\[tiers.cap.cost.IA.restore\] unknown key 'Fast'"),
    ('[tiers.cap.cost.IA]\nrestore.Bulk = { per_gb = true }\n', r"\[tiers.cap.cost.IA.restore.Bulk\] per_gb: found a "
                                                               r"boolean"),
    ('[tiers.cap.cost]\nprices = "azure"\n', r"\[tiers.cap.cost\] prices: 'azure' is not a valid prices; expected "
                                             r"one of oss, s3, posix, none"),
])
def test_a_bad_price_is_one_line_naming_file_and_key(tmp_path, toml, message):
    cfg = write_config(tmp_path, 'url = "oss://bucket/p"\nendpoint = "http://127.0.0.1:1"\n')
    cfg.write_text(cfg.read_text() + toml)
    with pytest.raises(ConfigError, match=f"^{tmp_path}/tiering.toml: {message}") as caught:
        load_config(cfg)
    assert "\n" not in str(caught.value)


# -- the report, on real tiers ----------------------------------------------------------------------------------


def test_the_catalog_priced_by_tier_and_class_and_a_plan_priced_action_by_action(mover, tmp_path):
    m, hot = mover, mover.config.hot_path
    for i, size in enumerate((6000, 7000, 8000, 100)):
        _file(hot, f"d/f{i}.bin", size)
    assert m.archive(b"d/f0.bin").status == "done"
    assert m.release(b"d/f1.bin").status == "done"
    report = current_cost(m.config, m.catalog, hot_used=3 * GIB)
    hot_row, cap = report.rows
    price = m.config.cost.price("cap", None)
    assert (hot_row.tier, hot_row.bytes, hot_row.per_month) == ("hot", 3 * GIB, 3 * 0.2)
    assert (cap.tier, cap.files, cap.bytes) == ("cap", 2, 13000)
    assert cap.per_month == pytest.approx(13000 / GIB * price.per_gb_month) and cap.priced

    policy = tmp_path / "policy.toml"
    policy.write_text(ARCHIVE_BIG.format(target=""))
    plan = plan_now(m.config, load_policy(policy, m.config), rescan=True)
    assert sorted(r["path"] for r in plan.rows()) == [b"d/f2.bin"]  # f0 archived already, f1 released, f3 small
    price_plan(m.config, report, plan, m.catalog)
    hot_row, cap = report.rows
    assert (cap.plan_files, cap.plan_bytes) == (1, 8000) and hot_row.plan_bytes == 0  # archive keeps the hot copy
    assert cap.plan_per_month == pytest.approx(8000 / GIB * price.per_gb_month)
    assert cap.one_time == pytest.approx(price.per_1000("put") / 1000)
    summary = report.summary()
    assert summary["with_plan"] and summary["planned_actions"] == 1
    assert summary["after_plan_per_month"] == pytest.approx(summary["per_month"] + summary["plan_per_month"], abs=1e-6)


def test_a_release_frees_hot_money_and_a_restore_costs_its_retrieval(tmp_path, request, monkeypatch):
    from conftest import _mover

    gen = _mover("posix", tmp_path, request, monkeypatch)
    m = next(gen)
    try:
        hot = m.config.hot_path
        _file(hot, "a.bin", 9000)
        _file(hot, "b.bin", 5000)
        assert m.archive(b"a.bin").status == "done"
        assert m.release(b"b.bin").status == "done"
        policy = tmp_path / "policy.toml"
        policy.write_text('[[rules]]\nname = "back"\nmatch = \'state == "released"\'\naction = "restore"\n'
                          '[[rules]]\nname = "free"\nmatch = \'state == "archived"\'\naction = "release"\n'
                          '[safety]\nmin_age = "0s"\n')
        plan = plan_now(m.config, load_policy(policy, m.config), rescan=True)
        assert sorted((r["action"], r["path"]) for r in plan.rows()) == [("release", b"a.bin"), ("restore", b"b.bin")]
        report = price_plan(m.config, current_cost(m.config, m.catalog, hot_used=GIB), plan, m.catalog)
        hot_row, cap = report.rows
        assert hot_row.plan_bytes == 5000 - 9000  # a stub counts its true size
        assert hot_row.plan_per_month == pytest.approx(-4000 / GIB * 0.2)
        assert cap.plan_bytes == 0 and cap.one_time == 0.0  # a folder tier: no request or retrieval charges
    finally:
        next(gen, None)


def test_an_oss_tier_is_priced_per_storage_class_with_minimum_and_risk(tmp_path, oss_server, monkeypatch):
    monkeypatch.setenv("TEST_OSS_SECRET", OSS_SECRET)
    cfg = write_config(tmp_path, f'url = "oss://{OSS_BUCKET}/cost-{tmp_path.name}-{os.getpid()}"\n'
                                 f'endpoint = "{oss_server.endpoint}"\naccess_key_id = "{OSS_KEY}"\n'
                                 'access_key_secret = "${TEST_OSS_SECRET}"\nstorage_class = "IA"\n')
    config = load_config(cfg)
    hot = config.hot_path
    _file(hot, "old.bin", 10_000)
    _file(hot, "new/shard.bin", 20_000)
    old = os.stat(hot / "old.bin")
    os.utime(hot / "old.bin", ns=(old.st_atime_ns, old.st_mtime_ns - 200 * 86400 * 10**9))  # unchanged for 200 d
    _file(hot, "ia.bin", 4000)
    with Catalog.open(config.catalog_path, writer=True) as catalog:
        m = Mover(config, catalog)
        try:
            assert m.archive(b"ia.bin").status == "done"  # the tier's own class
            report = current_cost(config, catalog, hot_used=0)
            ia = {r.storage_class: r for r in report.rows[1:]}["IA"]
            assert (ia.files, ia.bytes) == (1, 4000)
            assert ia.per_month == pytest.approx(4000 / GIB * OSS_PRICES["IA"].per_gb_month)
            policy = tmp_path / "policy.toml"
            policy.write_text(ARCHIVE_BIG.format(target='storage_class = "ColdArchive"\n'))
            plan = plan_now(config, load_policy(policy, config), rescan=True)
            price_plan(config, report, plan, catalog)
        finally:
            m.close()
    cold = {r.storage_class: r for r in report.rows[1:]}["ColdArchive"]
    price = OSS_PRICES["ColdArchive"]
    assert (cold.files, cold.plan_files, cold.plan_bytes) == (0, 2, 30_000)
    assert cold.min_commitment == pytest.approx(30_000 / GIB * price.per_gb_month * 180 * 86400 / MONTH)
    assert (cold.at_risk_files, cold.at_risk_bytes) == (1, 20_000)  # the file changed today; not the 200-day one
    bulk = price.restore["Bulk"]  # no restore_tier configured: the class's first listed tier, Expedited
    first = next(iter(price.restore.values()))
    assert cold.readback_once == pytest.approx(2 * (price.per_1000("get") + first.per_1000) / 1000
                                               + 30_000 / GIB * first.per_gb)
    assert bulk.per_gb < first.per_gb


# -- the command ------------------------------------------------------------------------------------------------


def _tiering(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_tiering_cost_prints_a_table_one_json_line_and_a_parquet_row_per_tier_class(tmp_path):
    (tmp_path / "capacity").mkdir()
    cfg = write_config(tmp_path, 'url = "capacity"\n')
    policy = tmp_path / "policy.toml"
    policy.write_text(ARCHIVE_BIG.format(target=""))
    cfg.write_text(f'policy = "{policy}"\n' + cfg.read_text() + '[cost]\nhot_per_gb_month = 0.5\n')
    _file(tmp_path / "hot", "big.bin", 50_000)
    _file(tmp_path / "hot", "small.bin", 10)
    assert _tiering("archive", "-c", str(cfg), str(tmp_path / "hot" / "small.bin")).returncode == 0

    table = _tiering("cost", "-c", str(cfg), "--rescan")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["tier", "class", "files", "bytes", "USD/month"] and "change/mo" in lines[0]
    assert lines[1].startswith("hot ") and lines[2].startswith("cap ")
    assert lines[-1].startswith("total: ") and "after the plan (1 actions)" in lines[-1]
    assert "recalled (not fetched)" in table.stderr

    out = tmp_path / "cost.parquet"
    done = _tiering("cost", "-c", str(cfg), "--json", "--parquet", str(out), "-q")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    [line] = done.stdout.splitlines()
    summary = json.loads(line)
    assert summary["planned_actions"] == 1 and summary["currency"] == "USD"
    by_tier = {row["tier"]: row for row in summary["tiers"]}
    assert by_tier["cap"]["files"] == 1 and by_tier["cap"]["plan_bytes"] == 50_000
    assert by_tier["hot"]["per_gb_month"] == 0.5 and by_tier["hot"]["files"] is None
    rows = pq.read_table(out).to_pylist()
    assert [(r["tier"], r["bytes"], r["plan_bytes"]) for r in rows] == [
        ("hot", by_tier["hot"]["bytes"], 0), ("cap", 10, 50_000)]

    only_now = json.loads(_tiering("cost", "-c", str(cfg), "--json", "--no-plan").stdout)
    assert not only_now["with_plan"] and only_now["plan_per_month"] == 0


def test_tiering_cost_in_a_bad_environment_is_one_line_and_its_exit_status(tmp_path):
    (tmp_path / "capacity").mkdir()
    cfg = write_config(tmp_path, 'url = "capacity"\n')
    cfg.write_text(cfg.read_text() + '[cost]\nhot_per_gb_month = "a lot"\n')
    bad = _tiering("cost", "-c", str(cfg))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "hot_per_gb_month" in bad.stderr
    cfg.write_text(cfg.read_text().replace('"a lot"', "1").replace('path = "hot"', 'path = "nowhere"'))
    missing = _tiering("cost", "-c", str(cfg))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    gone = _tiering("cost", "-c", str(tmp_path / "no.toml"))
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1


def test_plan_explain_shows_the_saving_per_month_the_minimum_and_the_risk(tmp_path):
    (tmp_path / "capacity").mkdir()
    cfg = write_config(tmp_path, 'url = "capacity"\ncost = { per_gb_month = 0.25, min_duration = "30d", '
                                 'get_per_1000 = 1000, retrieval_per_gb = 0.5 }\n')
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "cold"\nmatch = \'size >= 1000\'\naction = "release"\n[safety]\nmin_age = "0s"\n')
    cfg.write_text(cfg.read_text() + '[cost]\nhot_per_gb_month = 1.0\n')
    hot = tmp_path / "hot"
    with open(hot / "new.bin", "wb") as f:
        f.truncate(2 * 2**30)  # sparse: 2 GiB to the scan, nothing on disk
    with open(hot / "old.bin", "wb") as f:
        f.truncate(2**30)
    os.utime(hot / "old.bin", (0, time.time() - 40 * 86400))
    (hot / "tiny.bin").write_bytes(b"x")
    assert _tiering("scan", "-c", str(cfg), "-q").returncode == 0

    def explain(name: str) -> list[str]:
        done = _tiering("plan", "-c", str(cfg), "--policy", str(policy), "--explain", str(hot / name))
        assert done.returncode == 0, done.stderr
        return [line.strip() for line in done.stdout.splitlines() if "money:" in line]

    saving, minimum, back = explain("new.bin")
    assert saving == "money: release to cap saves 1.50 USD/month (hot tier 2.00 freed, cap 0.500 added)"
    assert minimum.startswith("money: cap bills at least 30d (0.500 USD) even if it leaves early; AT RISK: changed ")
    assert minimum.endswith(" ago, sooner than the minimum")
    assert back == "money: reading it back once costs 2.00 USD"  # 1 GET at 1000/1,000 + 2 GiB at 0.5
    old = explain("old.bin")
    assert old[0].startswith("money: release to cap saves 0.750 USD/month") and "unchanged for 40d" in old[1]
    assert explain("tiny.bin") == []  # no rule moves it: no money lines

    assert _tiering("release", "-c", str(cfg), "-q", str(hot / "tiny.bin")).returncode == 0
    assert _tiering("scan", "-c", str(cfg), "-q").returncode == 0
    policy.write_text('[[rules]]\nname = "back"\nmatch = \'state == "released"\'\naction = "restore"\n')
    assert explain("tiny.bin") == ["money: restoring from cap costs 1.00 USD once; the hot tier then costs "
                                   "0 USD/month more"]  # a GET at 1000/1,000; 1 byte is (nearly) free
