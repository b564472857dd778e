"""Policy files: the shipped policies, the loaded values, and every mistake's one-line error."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tiering.config import load_config
from tiering.core.inventory import CATALOG_FIELDS, SCHEMA
from tiering.policy import (
    PolicyError,
    Safety,
    load_policy,
    needed_columns,
    parse_policy,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "policies").glob("*.toml"))
NOW = 1_700_000_000 * 10**9
DAY = 86400 * 10**9


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiering.toml"
    path.write_text(
        'default_tier = "hdd"\n[hot]\npath = "hot"\n[catalog]\npath = "catalog.db"\n'
        '[tiers.hdd]\nurl = "capacity"\n'
        '[tiers.oss]\nurl = "oss://bucket-a/prefix"\nendpoint = "http://127.0.0.1:9"\n'
        '[tiers.s3]\nurl = "s3://bucket-b/prefix"\nendpoint = "http://127.0.0.1:9"\n'
    )
    return load_config(path, env={})


def policy(text: str, config=None):
    return parse_policy(text, "policies/x.toml", config)


def error(text: str, config=None) -> str:
    with pytest.raises(PolicyError) as caught:
        policy(text, config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def inventory(*rows: tuple[bytes, int, float]) -> pa.RecordBatch:
    """Rows of (path, size, days since atime and mtime)."""
    return pa.RecordBatch.from_pylist(
        [{"path": p, "type": "file", "size": size, "blocks": 0, "mode": 0o644, "uid": 0, "gid": 0, "atime_ns": NOW - int(age * DAY),
              "mtime_ns": NOW - int(age * DAY), "ctime_ns": NOW - int(age * DAY), "ino": i, "nlink": 1}
         for i, (p, size, age) in enumerate(rows)],
        schema=pa.schema([*SCHEMA, *CATALOG_FIELDS]),
    )


# -- the shipped policies ---------------------------------------------------------


def test_the_policies_are_shipped():
    assert [p.name for p in SHIPPED] == ["default.toml", "demo.toml", "ml-training.toml", "watermark.toml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policies_load_and_evaluate(path, config):
    loaded = load_policy(path, config)
    assert loaded.path == path and loaded.description
    conditions = [rule.match for rule in loaded.rules] + list(loaded.classes.values())
    if loaded.watermark:
        conditions += [c for c in (loaded.watermark.match,) if c]
    batch = inventory((b"datasets/imagenet-21k/shards/0001.tar", 1 << 30, 40), (b"tmp/x", 10, 1))
    for condition in conditions:
        mask = condition.mask(batch, NOW).to_pylist()
        assert mask == [condition.evaluate_row(row, NOW) for row in batch.to_pylist()]
    assert needed_columns(*conditions) <= set(SCHEMA.names) | {f.name for f in CATALOG_FIELDS} | {
        "name", "suffix", "dirname", "depth", "atime_age", "mtime_age", "ctime_age"}
    assert all(rule.tier in (None, "hdd") for rule in loaded.rules)


def test_shipped_policies_load_without_a_config():
    assert load_policy(ROOT / "policies" / "default.toml").rules[1].tier is None


def test_ml_training_keeps_active_data_and_recent_checkpoints_hot():
    loaded = load_policy(ROOT / "policies" / "ml-training.toml")
    batch = inventory(
        (b"datasets/imagenet-21k/shards/0001.tar", 1 << 30, 60),     # active dataset: pinned
        (b"datasets/old-set/shards/0001.tar", 1 << 30, 60),          # old shard: released
        (b"runs/r1/checkpoints/step-900/model.pt", 1 << 30, 1),      # recent checkpoint: kept
        (b"runs/r1/checkpoints/step-100/model.pt", 1 << 30, 20),     # old checkpoint: released
        (b"runs/r1/logs/events.out.tfevents.1", 1 << 20, 60),        # logs: kept
    )
    first = []
    for row in batch.to_pylist():
        first.append(next((r.name, r.action) for r in loaded.rules if r.match.evaluate_row(row, NOW)))
    assert first == [("pin-active-dataset", "pin"), ("old-shards", "release"),
                     ("keep-recent-checkpoints", "exclude"), ("old-checkpoints", "release"), ("keep-logs", "exclude")]


def test_watermark_policy_values():
    mark = load_policy(ROOT / "policies" / "watermark.toml").watermark
    assert (mark.high, mark.low, mark.order, mark.action) == (0.85, 0.7, "expression", "release")
    batch = inventory((b"a", 100, 10), (b"b", 200, 10))
    assert mark.weight.values(batch, NOW).to_pylist() == [100 * 10 * 86400.0, 200 * 10 * 86400.0]


# -- loaded values ---------------------------------------------------------------------

FULL = """
description = "all the keys"
[classes]
big = 'size >= 1GiB'
old = 'atime_age > 30d'
cold_big = 'big and old'
[[rules]]
name = "keep"
match = 'pinned'
action = "pin"
[[rules]]
name = "move"
description = "big cold files"
match = 'cold_big'
action = "release"
tier = "oss"
storage_class = "ia"
max_files = 10
max_bytes = "1TiB"
[[rules]]
name = "copy"
match = 'old'
action = "archive"
[watermark]
high = 0.9
low = "75.5%"
order = "heat"
tier = "s3"
storage_class = "standard_ia"
[safety]
min_age = "1h"
skip_hardlinks = false
"""


def test_every_key_is_read(config):
    loaded = policy(FULL, config)
    assert list(loaded.classes) == ["big", "old", "cold_big"]
    keep, move, copy = loaded.rules
    assert (keep.action, keep.tier, keep.max_files) == ("pin", None, None)
    assert (move.tier, move.storage_class, move.max_files, move.max_bytes) == ("oss", "IA", 10, 1 << 40)
    assert move.description == "big cold files" and loaded.rule("move") is move
    assert copy.tier == "hdd"  # the config's default tier
    assert (loaded.watermark.high, loaded.watermark.low, loaded.watermark.order) == (0.9, 0.755, "heat")
    assert (loaded.watermark.tier, loaded.watermark.storage_class) == ("s3", "STANDARD_IA")
    assert loaded.watermark.weight is None and loaded.watermark.match is None
    assert loaded.safety == Safety(min_age=3600.0, skip_hardlinks=False)
    assert move.match.evaluate_row(inventory((b"x", 2 << 30, 40)).to_pylist()[0], NOW) is True
    with pytest.raises(KeyError):
        loaded.rule("nope")


def test_defaults():
    loaded = policy('[[rules]]\nname = "r"\nmatch = "true"\naction = "archive"\n')
    assert loaded.safety == Safety(min_age=1800.0, skip_hardlinks=True)
    assert loaded.watermark is None and loaded.classes == {} and loaded.rules[0].tier is None
    mark = policy('[watermark]\nhigh = "90%"\nlow = "80%"\n').watermark
    assert (mark.order, mark.action, mark.tier) == ("lru", "release", None)
    assert policy('[watermark]\nhigh = 1\nlow = 0.5\nweight = "size"\n').watermark.order == "expression"


def test_classes_may_refer_to_later_classes():
    loaded = policy('[classes]\na = "b and size > 1"\nb = "size < 10"\n[[rules]]\nname = "r"\nmatch = "a"\n'
                    'action = "exclude"\n')
    assert loaded.rules[0].match.explain(inventory((b"x", 5, 0)).to_pylist()[0], NOW) == [
        "a: b: size 5B < 10", "a: size 5B > 1"]


def test_load_policy_reads_files(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[[rules]]\nname = "r"\nmatch = "size > 1"\naction = "archive"\n')
    assert load_policy(path).rules[0].name == "r"
    with pytest.raises(PolicyError, match=r"missing.toml: cannot read the file \(No such file or directory\)"):
        load_policy(tmp_path / "missing.toml")
    path.write_bytes(b"\xff")
    with pytest.raises(PolicyError, match=r"p.toml: not UTF-8 text \(byte 0\); expected a TOML file"):
        load_policy(path)


# -- errors ------------------------------------------------------------------------------

RULE = '[[rules]]\nname = "old-shards"\naction = "release"\nmatch = \'{}\'\n'


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ('path ~ "shards/*" and size >',
         "policies/x.toml: rule 'old-shards': match: column 29: expected a value after '>', found end of expression"),
        ("atme > 30d", "policies/x.toml: rule 'old-shards': match: column 1: unknown field 'atme'; did you mean 'atime'?"),
        ("atime_age > 30dd",
         "policies/x.toml: rule 'old-shards': match: column 13: unknown unit 'dd' in '30dd'; did you mean 'd'?"),
        ('size > "big"', ("policies/x.toml: rule 'old-shards': match: column 8: cannot compare size (a size) with "
                         "\"big\" (text); expected a size like 64KiB or 1.5GiB (or a number of bytes)")),
        ('size ~ "*.tar"', ("policies/x.toml: rule 'old-shards': match: column 1: '~' (glob) needs text on the left, "
                           "found size (a size); text fields are path, name, suffix, dirname, type, state, tier, storage_class")),
        ("shards and size > 1", ("policies/x.toml: rule 'old-shards': match: column 1: unknown class 'shards'; "
                                "did you mean 'shard'?")),
    ],
)
def test_expression_errors_name_file_rule_and_column(match, message):
    assert error('[classes]\nshard = \'path ~ "shards/**"\'\n' + RULE.format(match)) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules = 3", "policies/x.toml: rules: found an integer; expected [[rules]] tables"),
        ("[[rule]]\nname = 'a'", "policies/x.toml: unknown key 'rule'; did you mean 'rules'?"),
        ("description = 'nothing'", ("policies/x.toml: no rules and no watermark; expected at least one [[rules]] "
                                    "table or a [watermark] table")),
        ("[[rules]\n", ("policies/x.toml: invalid TOML: Expected ']]' at the end of an array declaration "
                       "(at line 1, column 8); expected TOML syntax (https://toml.io)")),
        ("[[rules]]\naction = 'archive'\nmatch = 'true'",
         "policies/x.toml: rule 1: name: missing; expected a rule name like \"old-shards\""),
        ("[[rules]]\nname = 'a b'\naction = 'archive'\nmatch = 'true'",
         ("policies/x.toml: rule 1: name: 'a b' is not a valid rule name; expected letters, digits, '-', '_' or '.', "
         "starting with a letter or digit")),
        ("[[rules]]\nname = 'a'\nacton = 'archive'\nmatch = 'true'",
         "policies/x.toml: rule 'a': unknown key 'acton'; did you mean 'action'?"),
        ("[[rules]]\nname = 'a'\naction = 'archve'\nmatch = 'true'",
         "policies/x.toml: rule 'a': action: 'archve' is not a valid action; did you mean 'archive'?"),
        ("[[rules]]\nname = 'a'\naction = 'archive'",
         "policies/x.toml: rule 'a': match: missing; expected a condition such as 'atime_age > 30d'"),
        (("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\n"
         "[[rules]]\nname = 'b'\naction = 'archive'\nmatch = 'true'\n"
         "[[rules]]\nname = 'a'\naction = 'release'\nmatch = 'true'"),
         "policies/x.toml: rule 3: duplicate rule name (rule 1 is also 'a'); expected a unique name per rule"),
        ("[[rules]]\nname = 'a'\naction = 'pin'\nmatch = 'true'\ntier = 'hdd'",
         "policies/x.toml: rule 'a': tier: not used by action 'pin'; expected tier only with action archive or release"),
        ("[[rules]]\nname = 'a'\naction = 'exclude'\nmatch = 'true'\nmax_files = 3",
         ("policies/x.toml: rule 'a': max_files: not used by action 'exclude'; expected caps only on archive, release, "
         "restore rules")),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\nmax_files = 0",
         "policies/x.toml: rule 'a': max_files: 0 is out of range; expected at least 1"),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\nmax_bytes = '10XB'",
         ("policies/x.toml: rule 'a': max_bytes: unknown size unit 'xb' in '10XB'; expected one of B, KiB, MiB, GiB, "
         "TiB, PiB, KB, MB, GB, TB, PB")),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 5",
         "policies/x.toml: rule 'a': match: found an integer (5); expected a condition such as 'atime_age > 30d'"),
        ("[watermark]\nhigh = '185%'\nlow = '70%'",
         ("policies/x.toml: [watermark]: high: invalid percentage '185%'; expected a percentage like \"85%\" or a "
         "fraction like 0.85, above 0 and at most 100%")),
        ("[watermark]\nhigh = 85\nlow = 70",
         ("policies/x.toml: [watermark]: high: invalid percentage 85; expected a percentage like \"85%\" or a "
         "fraction like 0.85, above 0 and at most 100%")),
        ("[watermark]\nhigh = '80%'\nlow = 'half'",
         ("policies/x.toml: [watermark]: low: invalid percentage 'half'; expected a percentage like \"85%\" or a "
         "fraction like 0.85, above 0 and at most 100%")),
        ("[watermark]\nhigh = '80%'\nlow = '90%'",
         "policies/x.toml: [watermark]: low: 90% is not below high (80%); expected low < high"),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\norder = 'expression'",
         "policies/x.toml: [watermark]: weight: missing; expected weight exactly when order = \"expression\""),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\norder = 'lru'\nweight = 'size'",
         ("policies/x.toml: [watermark]: weight: not used by order 'lru'; expected weight exactly when order = "
         "\"expression\"")),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\norder = 'lfu'",
         "policies/x.toml: [watermark]: order: 'lfu' is not a valid order; did you mean 'lru'?"),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\nweight = 'size * path'",
         "policies/x.toml: [watermark]: weight: column 8: cannot multiply path (text)"),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\nmatch = 'size >'",
         "policies/x.toml: [watermark]: match: column 7: expected a value after '>', found end of expression"),
        ("[watermark]\nhigh = '80%'\nlow = '70%'\nhihg = 1",
         "policies/x.toml: [watermark]: unknown key 'hihg'; did you mean 'high'?"),
        ("[safety]\nmin_age = 'soon'\n[watermark]\nhigh = 0.9\nlow = 0.8",
         ("policies/x.toml: [safety]: min_age: 'soon' is not a number with an optional unit; expected a duration like "
         "30, '500ms', '5s', '2m', '1h' or '30d'")),
        ("[safety]\nskip_hardlink = true\n[watermark]\nhigh = 0.9\nlow = 0.8",
         "policies/x.toml: [safety]: unknown key 'skip_hardlink'; did you mean 'skip_hardlinks'?"),
        ("[safety]\nskip_hardlinks = 'yes'\n[watermark]\nhigh = 0.9\nlow = 0.8",
         "policies/x.toml: [safety]: skip_hardlinks: found a string ('yes'); expected true or false (unquoted)"),
        ("classes = 1", "policies/x.toml: classes: found an integer; expected a table [classes]"),
        ("[classes]\nsize = 'true'", ("policies/x.toml: class 'size': the name is a field; expected a name like "
                                     "'checkpoint' (letters, digits, '_'; not a field or keyword)")),
        ("[classes]\nand = 'true'", ("policies/x.toml: class 'and': the name is a keyword; expected a name like "
                                    "'checkpoint' (letters, digits, '_'; not a field or keyword)")),
        ("[classes]\nold-files = 'true'", ("policies/x.toml: class 'old-files': the name is not an identifier; "
                                          "expected a name like 'checkpoint' (letters, digits, '_'; not a field or "
                                          "keyword)")),
        ("[classes]\na = 'b'\nb = 'c or size > 1'\nc = 'a'",
         "policies/x.toml: class 'c': refers to itself (a -> b -> c -> a); expected classes without cycles"),
        ("[classes]\na = 'size >> 1'", "policies/x.toml: class 'a': column 7: expected a value after '>', found '>'"),
        ("[classes]\na = 3", "policies/x.toml: [classes]: a: found an integer (3); expected a string"),
    ],
)
def test_file_errors(text, message):
    assert error(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\ntier = 'os'",
         "policies/x.toml: rule 'a': tier: unknown tier 'os'; did you mean 'oss'?"),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\ntier = 'tape'",
         "policies/x.toml: rule 'a': tier: unknown tier 'tape'; configured tiers: hdd, oss, s3"),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'tier == \"os\"'",
         "policies/x.toml: rule 'a': match: column 9: unknown tier 'os'; did you mean 'oss'?"),
        ("[[rules]]\nname = 'a'\naction = 'archive'\nmatch = 'true'\ntier = 'oss'\nstorage_class = 'Glacier'",
         ("policies/x.toml: rule 'a': storage_class: 'Glacier' is not a valid storage_class; expected one of Standard, "
         "IA, Archive, ColdArchive, DeepColdArchive")),
        ("[watermark]\nhigh = 0.9\nlow = 0.8\ntier = 'nas'",
         "policies/x.toml: [watermark]: tier: unknown tier 'nas'; configured tiers: hdd, oss, s3"),
    ],
)
def test_unknown_tiers_when_checked_against_a_config(text, message, config):
    assert error(text, config) == message
    policy(text.replace("'os'", "'oss'").replace("'tape'", "'hdd'").replace('"os"', '"oss"')
           .replace("'Glacier'", "'Archive'").replace("'nas'", "'hdd'"), config)
